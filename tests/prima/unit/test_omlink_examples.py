"""contracts/prima/omlink/examples are what the adapter sends and reads: the requests are the
builder's output, the answers read as their names say, the envelopes are zeep's from the WSDL."""

from __future__ import annotations

from pathlib import Path

import zeep
from lxml import etree

from domain.catalog.matrix import PrimaItemCode
from services.prima.omlink.documents import (
    availability_request,
    new_order_request,
    order_status_request,
    read_answer,
    read_availability,
    read_order_status,
)
from tests.prima.omlink_orders import card_payment, config, paid_order

OMLINK = Path(__file__).resolve().parents[3] / "contracts" / "prima" / "omlink"
EXAMPLES = OMLINK / "examples"


def example(name: str) -> str:
    return (EXAMPLES / name).read_bytes().decode("utf-8" if "envelope" in name else "ISO-8859-1")


def canonical(document: str | bytes) -> bytes:
    data = document.encode("ISO-8859-1") if isinstance(document, str) else document
    return etree.tostring(etree.fromstring(data, etree.XMLParser(remove_blank_text=True)), method="c14n")


def test_the_request_examples_are_what_the_builder_sends():
    c = config()
    order = paid_order(5550001, name="Zoë 😀 Ó Dálaigh")
    assert canonical(example("new_order.request.xml")) == canonical(
        new_order_request(order, [card_payment(order)], codes=c.order_codes, matrix=c.sku_matrix))
    assert canonical(example("order_status.request.xml")) == canonical(order_status_request("SHOP5550001"))
    assert canonical(example("product_available_to_sell.request.xml")) == canonical(
        availability_request("", "MZZZZZ"))


def test_the_answer_examples_read_as_their_names_say():
    new_order = read_answer(example("new_order.response.xml"))
    assert (new_order.ok, new_order.data.get("OrderNumber")) == (True, "SHOP5550001")
    refused = read_answer(example("new_order.refused.xml"))
    assert (refused.ok, refused.error) == (False, "Order number SHOP5550001 already exists")
    status = read_order_status(read_answer(example("order_status.response.xml")), "SHOP5550001")
    assert (status.status, status.details["TrackingNumber"]) == ("Despatched", "15501234567890")
    assert read_order_status(read_answer(example("order_status.unknown.xml")), "SHOP5550404") is None
    rows = read_availability(read_answer(example("product_available_to_sell.response.xml")))
    assert [(r.item, r.available) for r in rows] == [
        (PrimaItemCode("MUG-STONE"), 40), (PrimaItemCode("TEE", "BLK", "L"), 12), (PrimaItemCode("TEE", "BLK", "M"), 23)]


def test_the_envelope_examples_are_the_wsdls_messages():
    client = zeep.Client(str(OMLINK / "omlink.wsdl"))
    request = order_status_request("SHOP5550001")
    for operation, arguments in (("wsomhandler", {}), ("comwsomhandler", {"pcCompanyID": "01"})):
        made = client.create_message(client.service, operation, pcRequest=request, **arguments)
        assert canonical(example(f"{operation}.request.envelope.xml").encode()) == canonical(
            etree.tostring(made))
    answer = client.service._binding.get("wsomhandler").process_reply(
        etree.fromstring(example("wsomhandler.response.envelope.xml").encode()))
    assert read_order_status(read_answer(answer), "SHOP5550001").status == "New"
