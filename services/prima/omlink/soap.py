"""The SOAP client of Prima's OM link: zeep, built from the WSDL the instance serves
(`<instance URL>/wsdl?targetURI=urn:omlink`), over httpx.

One call sends one request document and returns Prima's answer document (both strings), through
`wsomhandler`, or `comwsomhandler` with the Company ID when one is configured. The parameter
names are read from the WSDL (the one string input of wsomhandler; of comwsomhandler's two, the
one named like "company" takes the Company ID), so an installation whose WSDL names them
otherwise works unchanged. Operations are posted to the configured instance URL, not to the
WSDL's soap:address (which often names a host inside the retailer's network).

Failures are classified as the REST client classifies them (services/prima/client.py), so the
port's callers see one vocabulary:
- `PrimaUnavailable` (transient: worth retrying): a transport error (refused, reset, timed out,
  an answer cut off), an HTTP 5xx, 408 or 429 without a SOAP answer, a SOAP Server fault
  (OpenEdge's answer when its AppServer is down or busy);
- `PrimaRejected`: a SOAP Client fault (Prima could not take the request as sent: 400) or
  another HTTP 4xx;
- `PrimaBadResponse`: a 200 whose body is not the SOAP answer the WSDL describes.
Prima's own refusal of a request (RequestStatus="ERROR") is an answer, not a failure: the adapter
reads it (documents.read_answer).
"""

from __future__ import annotations

import asyncio
from typing import Any, Self

import httpx
import zeep
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError
from zeep.proxy import AsyncServiceProxy
from zeep.transports import AsyncTransport

from services.prima.client import (
    PrimaBadResponse,
    PrimaRejected,
    PrimaUnavailable,
    is_transient,
)
from services.prima.omlink.config import OmLinkConfig

HANDLER, COMPANY_HANDLER = "wsomhandler", "comwsomhandler"


class OmLinkSoap:
    def __init__(self, config: OmLinkConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._transport = transport
        self._service: Any = None
        self._names: dict[str, tuple[str, ...]] = {}
        self._http: httpx.AsyncClient | None = None
        self._loading = asyncio.Lock()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Read the WSDL (once; again after a failure). PrimaUnavailable while it cannot be read."""
        async with self._loading:
            if self._service is None:
                self._service = await asyncio.to_thread(self._load)

    def _load(self) -> Any:
        timeout = self.config.timeout_seconds
        if self._http is None:  # kept across a failed load: one pool of connections
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout), transport=self._transport)
        transport = AsyncTransport(client=self._http, wsdl_client=httpx.Client(timeout=httpx.Timeout(timeout)))
        try:
            client = zeep.AsyncClient(self.config.wsdl_url, transport=transport)
        except (httpx.TransportError, TransportError) as exc:
            raise PrimaUnavailable(f"the OM link WSDL at {self.config.wsdl_url} could not be read: "
                                   f"{type(exc).__name__}: {exc}") from exc
        except (ZeepError, ValueError) as exc:
            raise PrimaBadResponse(f"{self.config.wsdl_url} is not the OM link WSDL: {exc}") from exc
        finally:
            transport.wsdl_client.close()
        for binding in client.wsdl.bindings.values():
            try:
                self._names = {op: tuple(name for name, _ in binding.get(op).input.body.type.elements)
                               for op in (HANDLER, COMPANY_HANDLER)}
            except (ValueError, AttributeError):
                continue
            # AsyncClient.create_service would give a synchronous proxy (zeep 4.3): bind it here
            return AsyncServiceProxy(client, binding, address=self.config.service_url)
        raise PrimaBadResponse(f"{self.config.wsdl_url} has no binding with {HANDLER} and {COMPANY_HANDLER}")

    def _arguments(self, document: str) -> tuple[str, dict[str, str]]:
        company = self.config.company_id
        if company is None:
            (request,) = self._names[HANDLER]
            return HANDLER, {request: document}
        names = self._names[COMPANY_HANDLER]
        company_names = [n for n in names if "compan" in n.lower()]
        if len(names) != 2 or len(company_names) != 1:
            raise PrimaBadResponse(f"{COMPANY_HANDLER} in the WSDL takes {names}, not a company and a request")
        (request,) = [n for n in names if n != company_names[0]]
        return COMPANY_HANDLER, {company_names[0]: company, request: document}

    async def call(self, document: str) -> str:
        """Send one request document; Prima's answer document. Raises as the module says."""
        await self.connect()
        operation, arguments = self._arguments(document)
        try:
            answer = await getattr(self._service, operation)(**arguments)
        except httpx.TransportError as exc:
            raise PrimaUnavailable(f"OM link {operation}: {type(exc).__name__}: {exc}") from exc
        except Fault as fault:
            code = (fault.code or "").rpartition(":")[2]
            if code == "Server" or code == "Receiver":
                raise PrimaUnavailable(f"OM link {operation}: SOAP fault {fault.code}: {fault.message}") from fault
            raise PrimaRejected(400, "soap_fault", f"{fault.code}: {fault.message}") from fault
        except TransportError as exc:
            status = exc.status_code or 0
            if status == 200:
                raise PrimaBadResponse(f"OM link {operation}: {exc.message[:300]}") from exc
            if not status or is_transient(status):
                raise PrimaUnavailable(f"OM link {operation} answered HTTP {status}: {exc.message[:300]}") from exc
            raise PrimaRejected(status, f"http_{status}", exc.message[:300]) from exc
        except ZeepError as exc:
            raise PrimaBadResponse(f"OM link {operation}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(answer, str):
            raise PrimaBadResponse(f"OM link {operation} answered {type(answer).__name__}, not one XML string")
        return answer
