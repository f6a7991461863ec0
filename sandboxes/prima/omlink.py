"""Prima's OM link in the sandbox: the SOAP web services real Prima installations expose (Progress
OpenEdge's Web Services Adapter, WSDL urn:omlink; contracts/prima/omlink/README.md), on the same
PostgreSQL data as the REST API, behind the same fault switches.

- `GET /wsa/wsa1/wsdl?targetURI=urn:omlink`: contracts/prima/omlink/omlink.wsdl, its soap:address
  set to the URL the WSDL was asked under (so the instance URL is `<sandbox>/wsa/wsa1`).
- `POST /wsa/wsa1`: SOAP 1.1, document/literal: `wsomhandler(pcRequest)` and
  `comwsomhandler(pcCompanyID, pcRequest)` (the Company ID must be `company_id`, else ERROR), each
  answering `pcResponse`, one XML document. A body that is not such an envelope is a SOAP Client
  fault (HTTP 500, as SOAP 1.1 says); a failure inside (the database) a SOAP Server fault.
- Request documents (`<Request RequestType="...">`):
  - `NewOrder`: becomes a sales order of the REST API's store (`Store.create_sales_order`),
    external reference = OrderNumber: lines are Product + matrix codes made SKUs again with the
    sandbox's item matrix (`SANDBOX_MATRIX`), shipping the charge (description = the charge
    code), prices as sent (VatInclusive gives taxes_included; tax is Prima's to work out, so 0
    here). A repeated OrderNumber is refused (RequestStatus="ERROR", "Order number ... already
    exists") as Prima refuses it; so are an unknown product, a bad total or a malformed request,
    each changing nothing. The request document is kept as sent (table `omlink_orders`), for the
    tests to compare with the Shopify order: `GET /_sandbox/omlink/orders/{OrderNumber}`.
  - `OrderStatus`: the order's status in Prima's words (open: New, released_to_warehouse:
    Released, picking: Part Despatched once a despatch note exists, else Picking, despatched:
    Despatched, cancelled: Cancelled), with the latest despatch note's date, carrier and
    tracking; an unknown OrderNumber is ERROR.
  - `ProductAvailableToSell` (ProductFrom..ProductTo, both included, "" open, compared without
    case): one `sku` element per SKU with stock in the allocation warehouse (WH-MAIN), as
    Product + MtrxCode1..4 + AvailableQuantity, ordered by product and matrix codes.
- Faults: the app's switches apply by path: `POST /_sandbox/faults {"path_prefix": "/wsa/wsa1",
  "method": "POST", "commit_then_drop_next": 1}` lets a NewOrder commit and loses its answer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from uuid import uuid4

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from lxml import etree
from pydantic import ValidationError

import contracts
from domain.catalog.matrix import MATRIX, PrimaItemCode, SkuMatrix, SkuNotMapped

from .models import SalesOrderCreate
from .store import ApiError, Store, create_tables

WSDL_PATH = Path(contracts.__file__).parent / "prima" / "omlink" / "omlink.wsdl"
SERVICE_PATH = "/wsa/wsa1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SCHEMA_NS = "urn:omlink:omlink"
ENCODING = "ISO-8859-1"
COMPANY_ID = "01"

# Prima's items as style + matrix, over the sandbox's flat SKUs (store.SEED_ITEMS): a SKU that
# fits neither is a style with no matrix (Product = the SKU).
SANDBOX_MATRIX = SkuMatrix(pattern="{Product}-{MtrxCode1}-{MtrxCode2}", table={
    sku: {"Product": sku} for sku in ("MUG-STONE", "GIFT-WRAP", "CAP-RETIRED", "GIFT-SET-TEE-MUG")})

DDL = """
CREATE TABLE IF NOT EXISTS omlink_orders (
    order_number       text PRIMARY KEY,
    sales_order_number text NOT NULL,
    company_id         text,
    request            text NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now()
);
"""
OM_STATUSES = {"open": "New", "released_to_warehouse": "Released", "picking": "Picking",
               "despatched": "Despatched", "cancelled": "Cancelled"}

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


class Refused(Exception):
    """Prima's RequestStatus="ERROR", with its RequestError."""


def _code(stored: str) -> PrimaItemCode:
    try:
        return SANDBOX_MATRIX.item_code(stored)
    except SkuNotMapped:
        return PrimaItemCode(stored)


def _answer(request_type: str | None, data: etree._Element | None = None, error: str | None = None) -> str:
    attributes = {"RequestType": request_type or "", "RequestStatus": "ERROR" if error else "OK"}
    if error:
        attributes["RequestError"] = error
    root = etree.Element("Response", attributes)
    if data is not None:
        root.append(data)
    return etree.tostring(root, encoding=ENCODING, xml_declaration=True).decode(ENCODING)


def _soap(body: etree._Element) -> bytes:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"SOAP-ENV": SOAP_ENV})
    etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body").append(body)
    return etree.tostring(envelope, encoding="UTF-8", xml_declaration=True)


def _fault(code: str, message: str) -> Response:
    fault = etree.Element(f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"SOAP-ENV:{code}"
    etree.SubElement(fault, "faultstring").text = message
    return Response(_soap(fault), 500, media_type="text/xml; charset=utf-8")


def _decimal(element: etree._Element, name: str, default: str | None = None) -> Decimal:
    raw = element.get(name, default)
    try:
        return Decimal(raw)
    except (InvalidOperation, TypeError):
        raise Refused(f"{element.tag}/@{name} {raw!r} is not a number") from None


def _required(element: etree._Element, name: str) -> str:
    if not (found := (element.get(name) or "").strip()):
        raise Refused(f"{element.tag}/@{name} is required")
    return found


def _money(amount: Decimal) -> str:
    return f"{amount:f}"


class OmLink:
    def __init__(self, store: Callable[[], Store], despatches: Callable[[], object], company_id: str) -> None:
        self._store = store
        self._despatches = despatches
        self.company_id = company_id
        self._ready = False
        self._lock = asyncio.Lock()

    @property
    def store(self) -> Store:
        return self._store()

    async def _tables(self) -> None:
        async with self._lock:
            if not self._ready:
                await create_tables(self.store.pool, DDL)
                self._ready = True

    async def handle(self, document: str, company_id: str | None) -> str:
        """One request document, one answer document."""
        request_type = None
        try:
            try:
                request = etree.fromstring(_DECLARATION.sub("", document), _PARSER)
            except (etree.XMLSyntaxError, ValueError) as exc:
                raise Refused(f"the request is not well-formed XML: {exc}") from exc
            request_type = request.get("RequestType")
            if request.tag != "Request" or (data := request.find("Data")) is None:
                raise Refused("a request is <Request RequestType=...><Data .../></Request>")
            if company_id is not None and company_id != self.company_id:
                raise Refused(f"unknown company {company_id!r}")
            handler = {"NewOrder": self.new_order, "OrderStatus": self.order_status,
                       "ProductAvailableToSell": self.available_to_sell}.get(request_type or "")
            if handler is None:
                raise Refused(f"unknown RequestType {request_type!r}")
            return _answer(request_type, await handler(data, document, company_id))
        except Refused as refused:
            return _answer(request_type, error=str(refused))

    async def new_order(self, data: etree._Element, document: str, company_id: str | None) -> etree._Element:
        await self._tables()
        number = _required(data, "OrderNumber")
        body = await self._sales_order(number, data)
        try:
            created = await self.store.create_sales_order(f"omlink:{uuid4()}", body)
        except ApiError as exc:
            if exc.code == "duplicate_external_reference":
                raise Refused(f"Order number {number} already exists") from exc
            raise Refused(exc.message) from exc
        so_number = created.order.sales_order_number
        await self.store.pool.execute(
            """INSERT INTO omlink_orders (order_number, sales_order_number, company_id, request) VALUES ($1, $2, $3, $4)
               ON CONFLICT (order_number) DO UPDATE SET sales_order_number = EXCLUDED.sales_order_number,
                   company_id = EXCLUDED.company_id, request = EXCLUDED.request, received_at = now()""",
            number, so_number, company_id, document)
        return etree.Element("Data", OrderNumber=number, PrimaOrderNumber=so_number, OrderStatus="New")

    async def _sales_order(self, number: str, data: etree._Element) -> SalesOrderCreate:
        header = data.find("OrderHeaderData")
        if header is None:
            raise Refused("OrderHeaderData is required")
        lines = []
        for element in data.findall("OrderLineData"):
            code = PrimaItemCode(_required(element, "Product"), *(element.get(n, "") for n in MATRIX))
            try:
                sku = SANDBOX_MATRIX.sku(code)
            except SkuNotMapped as exc:
                raise Refused(f"product {code}: {exc.reason}") from exc
            item = await self.store.get_item(sku)
            if item is None:
                raise Refused(f"product {code} not found")
            quantity, price = _decimal(element, "Quantity"), _decimal(element, "Price")
            discount = _decimal(element, "TrDisc", "0")
            lines.append({"line_number": element.get("OrderLine"), "item_id": item.item_id, "sku": sku,
                          "description": element.get("LineNarrative") or item.description,
                          "quantity": element.get("Quantity"), "unit_price": _money(price),
                          "discount_amount": _money(discount), "tax_amount": "0",
                          "net_amount": _money(quantity * price - discount)})
        charges = data.findall("OrderChargeData")
        if len(charges) > 1:
            raise Refused("one OrderChargeData per order in this sandbox")
        shipping = ({"description": _required(charges[0], "Charge"),
                     "amount": _money(_decimal(charges[0], "ChargeValue")), "discount_amount": "0",
                     "tax_amount": "0"} if charges else None)
        lines_net = sum((Decimal(line["net_amount"]) for line in lines), Decimal(0))
        shipping_net = Decimal(shipping["amount"]) if shipping else Decimal(0)
        addresses = [data.get(f"AddrLine{i}") for i in range(1, 7) if data.get(f"AddrLine{i}")]
        try:
            order_date = date.fromisoformat(_required(header, "OrderDate"))
            return SalesOrderCreate.model_validate({
                "external_reference": number, "order_name": number, "currency": header.get("Currency"),
                "taxes_included": data.get("VatInclusive") == "Yes",
                "order_date": datetime(order_date.year, order_date.month, order_date.day, tzinfo=UTC),
                "customer_email": data.get("Email"), "lines": lines, "shipping": shipping,
                "totals": {"lines_net": _money(lines_net), "shipping_net": _money(shipping_net), "tax": "0",
                           "total": _money(lines_net + shipping_net)},
                "ship_to": {"name": data.get("Name"), "address1": addresses[0] if addresses else None,
                            "address2": ", ".join(addresses[1:]) or None, "zip": data.get("PostCode"),
                            "country_code": data.get("Country"), "phone": data.get("Phone")},
            })
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise Refused(f"the order is not valid: {problems}"[:500]) from exc
        except ValueError as exc:  # the OrderDate
            raise Refused(f"OrderHeaderData/@OrderDate: {exc}") from exc

    async def _held(self, number: str) -> dict | None:
        found = await self.store.find_sales_orders(number)
        return found[0].model_dump(mode="json") if found else None

    async def order_status(self, data: etree._Element, document: str, company_id: str | None) -> etree._Element:
        number = _required(data, "OrderNumber")
        order = await self._held(number)
        if order is None:
            raise Refused(f"Order {number} not found")
        notes = await self._despatches().for_sales_order(order["sales_order_number"]) or []
        status = OM_STATUSES[order["status"]]
        if order["status"] == "picking" and notes:
            status = "Part Despatched"
        answer = etree.Element("Data", OrderNumber=number, OrderStatus=status)
        if notes:
            latest = notes[-1]
            answer.set("DespatchDate", latest["despatched_at"][:10])
            parcel = latest["parcels"][0]
            answer.set("Carrier", parcel["carrier"])
            if parcel.get("tracking_number"):
                answer.set("TrackingNumber", parcel["tracking_number"])
        return answer

    async def available_to_sell(self, data: etree._Element, document: str, company_id: str | None) -> etree._Element:
        low, high = data.get("ProductFrom", "").casefold(), data.get("ProductTo", "").casefold()
        rows = await self.store.pool.fetch("SELECT sku, available FROM stock WHERE warehouse = $1",
                                           self.store.allocation_warehouse)
        found = []
        for row in rows:
            code = _code(row["sku"])
            key = code.product.casefold()
            if (not low or key >= low) and (not high or key <= high):
                found.append((code, row["available"]))
        answer = etree.Element("Data")
        for code, available in sorted(found, key=lambda f: (f[0].product, f[0].matrix)):
            attributes = {"Product": code.product, "MtrxCode1": code.mtrx_code1, "MtrxCode2": code.mtrx_code2}
            attributes |= {n: code.part(n) for n in MATRIX[2:] if code.part(n)}
            etree.SubElement(answer, "sku", attributes, AvailableQuantity=str(available))
        return answer


def add_omlink_routes(app: FastAPI, company_id: str = COMPANY_ID) -> None:
    """Mount OM link on the Prima sandbox app (its store and despatches, set up by its lifespan)."""
    omlink = OmLink(lambda: app.state.store, lambda: app.state.despatches, company_id)
    wsdl = WSDL_PATH.read_text()

    @app.get(f"{SERVICE_PATH}/wsdl")
    async def omlink_wsdl(request: Request, target_uri: str = Query(alias="targetURI")) -> Response:
        if target_uri != "urn:omlink":
            raise ApiError("not_found", f"no web service with targetURI {target_uri!r}", 404)
        address = str(request.url.replace(query="", path=SERVICE_PATH)).rstrip("?")
        served = re.sub(r'(<soap:address location=")[^"]*(")', rf"\g<1>{address}\g<2>", wsdl)
        return Response(served, media_type="text/xml; charset=utf-8")

    @app.post(SERVICE_PATH)
    async def omlink_call(request: Request) -> Response:
        try:
            envelope = etree.fromstring(await request.body(), _PARSER)
        except etree.XMLSyntaxError as exc:
            return _fault("Client", f"the request is not XML: {exc}")
        call = envelope.find(f"{{{SOAP_ENV}}}Body/*")
        if envelope.tag != f"{{{SOAP_ENV}}}Envelope" or call is None:
            return _fault("Client", "not a SOAP 1.1 envelope with a Body")
        operation = etree.QName(call).localname
        if etree.QName(call).namespace != SCHEMA_NS or operation not in ("wsomhandler", "comwsomhandler"):
            return _fault("Client", f"unknown operation {call.tag}")
        arguments = {etree.QName(child).localname: child.text or "" for child in call}
        if "pcRequest" not in arguments or (operation == "comwsomhandler") != ("pcCompanyID" in arguments):
            return _fault("Client", f"{operation} takes {'pcCompanyID and ' if operation == 'comwsomhandler' else ''}"
                                    f"pcRequest")
        try:
            answer = await omlink.handle(arguments["pcRequest"], arguments.get("pcCompanyID"))
        except Exception as exc:  # noqa: BLE001 - as OpenEdge answers when its AppServer fails: a Server fault
            return _fault("Server", f"{type(exc).__name__}: {exc}")
        response = etree.Element(f"{{{SCHEMA_NS}}}{operation}Response", nsmap={"ns1": SCHEMA_NS})
        etree.SubElement(response, f"{{{SCHEMA_NS}}}pcResponse").text = answer
        return Response(_soap(response), media_type="text/xml; charset=utf-8")

    @app.get("/_sandbox/omlink/orders/{order_number}")
    async def omlink_order(order_number: str) -> dict:
        """The NewOrder document as received, and the sales order it made (404: none now)."""
        await omlink._tables()
        row = await omlink.store.pool.fetchrow(
            """SELECT o.request, o.company_id, o.received_at FROM omlink_orders o
               JOIN sales_orders s ON s.sales_order_number = o.sales_order_number
                                  AND s.external_reference = o.order_number
               WHERE o.order_number = $1""", order_number)
        if row is None:
            raise ApiError("not_found", f"no OM link order {order_number}", 404)
        return {"order_number": order_number, "request": row["request"], "company_id": row["company_id"],
                "received_at": row["received_at"].isoformat(), "sales_order": await omlink._held(order_number)}
