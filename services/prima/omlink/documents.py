"""The XML documents this integration sends through Prima's OM link and the answers it reads
(contracts/prima/omlink/README.md has their shapes and examples).

Requests are built with lxml, never by concatenation: values travel as attributes, which lxml
escapes, and the document is serialized in the declared encoding (ISO-8859-1, as integrators'
documents declare it). The rule for text the encoding cannot carry (`encodable`):

- codes (OrderNumber, Product, MtrxCode1..4, Charge, PayMethod, Currency, the e-mail address,
  ...): refused, `NotEncodable` naming the field and the character; such a code would name
  something else in Prima;
- free text (names, address lines, line narratives): each character outside the encoding is
  transliterated with anyascii ("Łódź" -> "Lódz": ó is Latin-1, Ł and ź are not; "北京" -> "BeiJing"; a typographic
  dash -> "-", "€" -> "EUR"), except symbols that carry no letters (emoji, flags, joiners,
  combining marks left over), which are left out (spaces around them closed up: "Zoë 😀 Łukasz"
  -> "Zoë Lukasz"); control characters become a space. Characters the encoding has ("é", "ß",
  "£") are kept as they are.

Answers: `<Response RequestType="..." RequestStatus="OK|ERROR" [RequestError="..."]><Data .../>`.
`read_answer` is lenient where installations may differ (RequestStatus on the root or its Data,
RequestError as an attribute or an element, values as attributes or child elements) and strict
where it matters: no RequestStatus, or XML that does not parse, is `BadAnswer`. The parser
resolves no entities and reads nothing from the network.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from anyascii import anyascii
from lxml import etree

from contracts.prima.sales_orders import CreateSalesOrder
from domain.catalog.matrix import MATRIX, PrimaItemCode, SkuMatrix
from domain.orders.prima_codes import YES, OrderCodes, vat_inclusive

ENCODING = "ISO-8859-1"
NEW_ORDER, ORDER_STATUS, AVAILABILITY = "NewOrder", "OrderStatus", "ProductAvailableToSell"
OK, ERROR = "OK", "ERROR"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=True)
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NO_LETTERS = frozenset({"So", "Sk", "Cf", "Mn", "Me", "Cs", "Co", "Cn"})  # emoji, joiners, marks: no letters
_SPACES = re.compile(r" {2,}")


class NotEncodable(ValueError):
    """A code with a character the declared encoding cannot carry; names the field."""

    def __init__(self, field_name: str, value: str, char: str, encoding: str) -> None:
        super().__init__(f"{field_name} {value!r} has {char!r} (U+{ord(char):04X}), which {encoding} cannot carry; "
                         f"a code is never transliterated")
        self.field = field_name


class NotSendable(ValueError):
    """An order this integration cannot express as a NewOrder (says which line and why)."""


class BadAnswer(ValueError):
    """An answer that is not an OM link response document."""


def _fits(char: str, encoding: str) -> bool:
    try:
        char.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def encodable(field_name: str, value: str, *, free_text: bool, encoding: str = ENCODING) -> str:
    """`value` as the encoding can carry it: free text transliterated, a code refused."""
    if free_text:
        value = _CONTROL.sub(" ", unicodedata.normalize("NFC", value))
        kept = "".join(c if _fits(c, encoding) else "" if unicodedata.category(c) in _NO_LETTERS else anyascii(c)
                       for c in value)
        return _SPACES.sub(" ", kept).strip() if len(kept) < len(value) else kept
    for char in value:
        if _CONTROL.match(char) or not _fits(char, encoding):
            raise NotEncodable(field_name, value, char, encoding)
    return value


@dataclass(frozen=True)
class Payment:
    """How the order was paid, as Shopify says: the gateway, the amount, the transaction."""

    gateway: str
    amount: Decimal
    transaction_id: str | None = None
    authorization: str | None = None


class _Builder:
    def __init__(self, encoding: str) -> None:
        self.encoding = encoding

    def element(self, parent: etree._Element | None, tag: str, attributes: Iterable[tuple[str, object, bool]]
                ) -> etree._Element:
        """An element with its attributes (name, value, free_text); None values are left out."""
        values = {name: encodable(f"{tag}/@{name}", _text(value), free_text=free_text, encoding=self.encoding)
                  for name, value, free_text in attributes if value is not None}
        return etree.Element(tag, values) if parent is None else etree.SubElement(parent, tag, values)

    def document(self, request: etree._Element) -> str:
        """The document as the one string the SOAP operation takes, declared in the encoding."""
        return etree.tostring(request, encoding=self.encoding, xml_declaration=True).decode(self.encoding)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return YES if value else "No"
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def _request(builder: _Builder, request_type: str) -> etree._Element:
    return builder.element(None, "Request", [("RequestType", request_type, False)])


def order_status_request(order_number: str, *, encoding: str = ENCODING) -> str:
    builder = _Builder(encoding)
    request = _request(builder, ORDER_STATUS)
    builder.element(request, "Data", [("OrderNumber", order_number, False)])
    return builder.document(request)


def availability_request(product_from: str, product_to: str, *, encoding: str = ENCODING) -> str:
    """Availability of the products from `product_from` to `product_to` ("" and "": all)."""
    builder = _Builder(encoding)
    request = _request(builder, AVAILABILITY)
    builder.element(request, "Data", [("ProductFrom", product_from, False), ("ProductTo", product_to, False)])
    return builder.document(request)


def new_order_request(command: CreateSalesOrder, payments: Sequence[Payment], *, codes: OrderCodes,
                      matrix: SkuMatrix, warehouse: str | None = None, encoding: str = ENCODING) -> str:
    """The NewOrder for a CreateSalesOrder: lines as Product and matrix codes, shipping as a
    charge code with its value, each payment as a pay method with its transaction.

    Raises SkuNotMapped, CodeNotMapped (the missing mapping named), NotSendable or NotEncodable
    before anything is sent."""
    order = command.sales_order
    builder = _Builder(encoding)
    request = _request(builder, NEW_ORDER)
    ship = order.ship_to
    address = [v for v in (ship.company, ship.address1, ship.address2, ship.city, ship.province_code)
               if v] if ship else []
    data = builder.element(request, "Data", [
        ("OrderNumber", codes.order_number(command.shopify_order_id), False),
        ("TPGUID", command.shopify_order_id, False),
        ("HoldOrder", codes.hold_order(ship.country_code if ship else None), False),
        ("OrderChannel", codes.order_channel, False),
        ("Name", ship.name if ship else None, True),
        *((f"AddrLine{i}", line, True) for i, line in enumerate(address, start=1)),
        ("PostCode", ship.zip if ship else None, False),
        ("Country", ship.country_code if ship else None, False),
        ("Email", order.customer_email, False),
        ("Phone", ship.phone if ship else None, False),
        ("VatInclusive", vat_inclusive(order.taxes_included), False),
    ])
    builder.element(data, "OrderHeaderData", [
        ("Currency", order.currency, False),
        ("OrderDate", order.order_date.date().isoformat(), False),
        ("OrderPaid", YES, False),  # a sales order is created only once payment is captured
        ("SpecialInstructions", f"Shopify order {order.order_name}", True),
    ])
    for line in order.lines:
        code = _line_item(line.line_number, line.kind, line.sku, matrix)
        builder.element(data, "OrderLineData", [
            ("OrderLine", line.line_number, False),
            ("Product", code.product, False),
            *((name, code.part(name), False) for name in MATRIX if code.part(name)),
            ("Quantity", line.quantity, False),
            ("Price", line.unit_price, False),
            ("TrDisc", line.discount_amount, False),
            ("Warehouse", warehouse, False),
            ("LineNarrative", line.description, True),
        ])
    if order.shipping is not None:
        builder.element(data, "OrderChargeData", [
            ("Charge", codes.charge_code(order.shipping.description), False),
            ("ChargeValue", order.shipping.amount - order.shipping.discount_amount, False),
        ])
    for payment in payments:
        method = codes.pay_method(payment.gateway)
        builder.element(data, "OrderPaymentData", [
            ("PayMethod", method.PayMethod, False),
            ("SubPayMethod", method.SubPayMethod or None, False),
            ("TranAmount", payment.amount, False),
            ("TransactionID", payment.transaction_id, False),
            ("AuthRef", payment.authorization, False),
            ("PayProvider", payment.gateway, False),
        ])
    return builder.document(request)


def _line_item(line_number: int, kind: str, sku: str | None, matrix: SkuMatrix) -> PrimaItemCode:
    if kind != "item" or sku is None:
        raise NotSendable(f"line {line_number} is booked to a ledger account (a gift card sold); OM link takes "
                          f"gift vouchers through voucher fields this integration does not send yet")
    return matrix.item_code(sku)


# answers


@dataclass(frozen=True)
class Answer:
    request_type: str | None
    status: str  # OK or ERROR
    error: str | None
    data: etree._Element | None = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.status == OK


def read_answer(text: str) -> Answer:
    if not isinstance(text, str | bytes) or not text:
        raise BadAnswer(f"the answer is empty or not text: {text!r:.200}")
    try:
        root = etree.fromstring(_DECLARATION.sub("", text) if isinstance(text, str) else text, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise BadAnswer(f"the answer is not XML ({exc}): {text[:200]!r}") from exc
    data = root.find("Data")
    carrier = root if root.get("RequestStatus") is not None else data
    status = (carrier.get("RequestStatus") if carrier is not None else None) or ""
    if status.upper() not in (OK, ERROR):
        raise BadAnswer(f"the answer has no RequestStatus OK or ERROR: {text[:200]!r}")
    error = carrier.get("RequestError") if carrier is not None else None
    if error is None and (element := root.find(".//RequestError")) is not None:
        error = "".join(element.itertext())
    return Answer(root.get("RequestType"), status.upper(), (error or "").strip() or None, data)


def value(element: etree._Element, name: str) -> str | None:
    """A value of an answer's element: its attribute, or its child element's text."""
    if (found := element.get(name)) is not None:
        return found
    child = element.find(name)
    return None if child is None else "".join(child.itertext())


@dataclass(frozen=True)
class OrderStatusAnswer:
    order_number: str
    status: str  # as Prima says it: Despatched, Part Despatched, Cancelled, ...
    details: dict[str, str]  # every other value the installation gives (despatch date, carrier, tracking)


def read_order_status(answer: Answer, order_number: str) -> OrderStatusAnswer | None:
    """The order's status; None when Prima answered ERROR (it does not know the order)."""
    if not answer.ok:
        return None
    if answer.data is None or not (status := (value(answer.data, "OrderStatus") or "").strip()):
        raise BadAnswer(f"OrderStatus for {order_number!r} answered OK without an OrderStatus")
    number = value(answer.data, "OrderNumber") or order_number
    if number != order_number:
        raise BadAnswer(f"OrderStatus for {order_number!r} answered about {number!r}")
    details = {k: v for k, v in answer.data.attrib.items() if k not in ("OrderNumber", "OrderStatus")}
    details |= {child.tag: "".join(child.itertext()) for child in answer.data
                if isinstance(child.tag, str) and child.tag not in ("OrderNumber", "OrderStatus")}
    return OrderStatusAnswer(number, status, details)


@dataclass(frozen=True)
class Availability:
    item: PrimaItemCode
    available: int


def read_availability(answer: Answer) -> list[Availability]:
    """The snapshot's rows: one per product and matrix combination."""
    if not answer.ok:
        raise BadAnswer(f"ProductAvailableToSell answered ERROR: {answer.error}")
    rows = []
    for sku in answer.data.iter("sku") if answer.data is not None else ():
        product = (value(sku, "Product") or "").strip()
        quantity = (value(sku, "AvailableQuantity") or "").strip()
        try:
            available = Decimal(quantity)
        except ArithmeticError:
            available = None
        if not product or available is None or available != available.to_integral_value():
            raise BadAnswer(f"a sku element without a Product or a whole AvailableQuantity: "
                            f"{etree.tostring(sku, encoding='unicode')[:200]}")
        rows.append(Availability(PrimaItemCode(product, *((value(sku, n) or "").strip() for n in MATRIX)),
                                 int(available)))
    return rows
