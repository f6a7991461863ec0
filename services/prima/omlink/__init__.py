"""Prima's OM link (SOAP web services, WSDL urn:omlink): the second adapter of the Prima port,
beside the REST client (services/prima/client.py). documents.py builds and reads the XML
documents, soap.py is the zeep client, adapter.py the port's commands and reads, config.py what
one installation needs."""
