"""OM link documents (services/prima/omlink/documents.py): the NewOrder, OrderStatus and
ProductAvailableToSell requests built with lxml in ISO-8859-1, the rule for characters outside
it, and the answers read."""

from __future__ import annotations

from decimal import Decimal

import pytest
from lxml import etree

from domain.catalog.matrix import PrimaItemCode, SkuNotMapped
from domain.orders.prima_codes import CodeNotMapped
from services.prima.omlink.documents import (
    BadAnswer,
    NotEncodable,
    NotSendable,
    Payment,
    availability_request,
    encodable,
    new_order_request,
    order_status_request,
    read_answer,
    read_availability,
    read_order_status,
)
from tests.prima.omlink_orders import card_payment, config, paid_order

CONFIG = config()


def new_order(command, payments=None, **config_changes) -> str:
    c = config(**config_changes) if config_changes else CONFIG
    return new_order_request(command, [card_payment(command)] if payments is None else payments,
                             codes=c.order_codes, matrix=c.sku_matrix, warehouse=c.line_warehouse,
                             encoding=c.encoding)


def parsed(document: str) -> etree._Element:
    """The document as Prima reads it: bytes in the declared encoding."""
    assert document.startswith("<?xml version='1.0' encoding='ISO-8859-1'?>")
    return etree.fromstring(document.encode("ISO-8859-1"))


def test_given_a_paid_order_when_sent_as_new_order_then_every_line_shipping_and_payment_is_in_prima_terms():
    command = paid_order(5550001)
    request = parsed(new_order(command))
    assert request.tag == "Request" and request.get("RequestType") == "NewOrder"
    data = request.find("Data")
    assert dict(data.attrib) == {
        "OrderNumber": "SHOP5550001", "TPGUID": "5550001", "HoldOrder": "No", "OrderChannel": "WEB",
        "Name": "Siobhán Ó Dálaigh", "AddrLine1": "12 Sráid an Mhuilinn", "AddrLine2": "Flat 3",
        "AddrLine3": "Dublin", "AddrLine4": "D", "PostCode": "D08 XY12", "Country": "IE",
        "Email": "siobhan@example.ie", "Phone": "+353 1 555 0100", "VatInclusive": "Yes"}
    assert dict(data.find("OrderHeaderData").attrib) == {
        "Currency": "EUR", "OrderDate": "2026-11-30", "OrderPaid": "Yes", "SpecialInstructions": "Shopify order #1"}
    assert [dict(line.attrib) for line in data.findall("OrderLineData")] == [
        {"OrderLine": "1", "Product": "TEE", "MtrxCode1": "BLK", "MtrxCode2": "M", "Quantity": "2", "Price": "20.00",
         "TrDisc": "4.00", "LineNarrative": "Organic tee, black, M"},
        {"OrderLine": "2", "Product": "MUG-STONE", "Quantity": "1", "Price": "12.50", "TrDisc": "0.00",
         "LineNarrative": "Stoneware mug"},
    ]
    assert dict(data.find("OrderChargeData").attrib) == {"Charge": "DEL-STD", "ChargeValue": "4.95"}
    assert dict(data.find("OrderPaymentData").attrib) == {
        "PayMethod": "CARD", "SubPayMethod": "SHOPIFY", "TranAmount": "53.45", "TransactionID": "txn-5550001",
        "AuthRef": "AUTH-77", "PayProvider": "shopify_payments"}


def test_given_the_same_order_twice_then_the_same_document_and_order_number():
    command = paid_order(5550002)
    assert new_order(command) == new_order(command.model_copy(update={"command_id": paid_order(1).command_id}))


def test_given_prices_excluding_tax_and_a_line_warehouse_then_vat_inclusive_no_and_each_line_has_the_warehouse():
    command = paid_order(5550003)
    command = command.model_copy(update={"sales_order": command.sales_order.model_copy(
        update={"taxes_included": False})})
    data = parsed(new_order(command, line_warehouse="WEB1")).find("Data")
    assert data.get("VatInclusive") == "No"
    assert {line.get("Warehouse") for line in data.findall("OrderLineData")} == {"WEB1"}


def test_given_markup_characters_in_text_then_they_are_escaped_not_interpreted():
    command = paid_order(5550004, name='Tom & "Jerry" <admin/>', city="Cork</Data><Data OrderNumber='X'>")
    document = new_order(command)
    data = parsed(document).find("Data")
    assert data.get("Name") == 'Tom & "Jerry" <admin/>'
    assert data.get("AddrLine3") == "Cork</Data><Data OrderNumber='X'>"
    assert len(parsed(document).findall("Data")) == 1
    assert "&amp;" in document and "&lt;admin/&gt;" in document


def test_given_text_outside_latin1_then_free_text_is_transliterated_and_latin1_letters_kept():
    command = paid_order(5550005, name="Zoë 😀 Łukasz", city="Łódź — 北京")
    document = new_order(command)
    document.encode("ISO-8859-1")  # nothing outside the declared encoding, not even as a reference
    assert "&#" not in document
    data = parsed(document).find("Data")
    assert data.get("Name") == "Zoë Lukasz"
    assert data.get("AddrLine3") == "Lódz - BeiJing"


@pytest.mark.parametrize(("value", "expected"), [
    ("Café Düsseldorf £5", "Café Düsseldorf £5"),
    ("O’Brien", "O'Brien"),
    ("🇮🇪 Dublin", "Dublin"),
    ("line\x0bbreak", "line break"),
    ("e\u0301", "é"),  # a combining accent composed first
    ("50 €", "50 EUR"),
])
def test_given_free_text_when_made_encodable_then_the_documented_rule(value, expected):
    assert encodable("Name", value, free_text=True) == expected


def test_given_a_code_outside_latin1_then_it_is_refused_naming_the_field():
    with pytest.raises(NotEncodable) as refused:
        encodable("OrderLineData/@Product", "TEE–BLK", free_text=False)
    assert refused.value.field == "OrderLineData/@Product"
    assert "U+2013" in str(refused.value)
    with pytest.raises(NotEncodable, match="Data/@Email"):
        new_order(paid_order(5550006).model_copy(update={"sales_order": paid_order(5550006).sales_order.model_copy(
            update={"customer_email": "zoë@例え.jp"})}))


def test_given_an_unmapped_sku_or_shipping_or_gateway_then_nothing_is_built_and_the_mapping_is_named():
    command = paid_order(5550007)
    bad_line = command.sales_order.lines[0].model_copy(update={"sku": "GIFTCARD"})
    unmapped = command.model_copy(update={"sales_order": command.sales_order.model_copy(
        update={"lines": (bad_line,)})})
    with pytest.raises(SkuNotMapped, match="GIFTCARD"):
        new_order(unmapped)
    with pytest.raises(CodeNotMapped, match="'Next day'"):
        new_order(paid_order(5550008, shipping="Next day"))
    with pytest.raises(CodeNotMapped, match="'klarna'"):
        new_order(command, [Payment("klarna", Decimal("53.45"))])


def test_given_an_account_line_then_it_is_not_sendable_naming_the_line():
    command = paid_order(5550009)
    gift_card = command.sales_order.lines[1].model_copy(update={"kind": "account", "item_id": None, "sku": None,
                                                                 "account": "4000"})
    with pytest.raises(NotSendable, match="line 2"):
        new_order(command.model_copy(update={"sales_order": command.sales_order.model_copy(
            update={"lines": (command.sales_order.lines[0], gift_card)})}))


def test_given_order_status_and_availability_requests_then_their_data():
    status = parsed(order_status_request("SHOP5550001"))
    assert (status.get("RequestType"), dict(status.find("Data").attrib)) == ("OrderStatus",
                                                                              {"OrderNumber": "SHOP5550001"})
    stock = parsed(availability_request("A", "M"))
    assert (stock.get("RequestType"), dict(stock.find("Data").attrib)) == ("ProductAvailableToSell",
                                                                           {"ProductFrom": "A", "ProductTo": "M"})


def test_given_an_ok_order_status_then_its_status_and_despatch_details():
    answer = read_answer('<?xml version="1.0" encoding="ISO-8859-1"?><Response RequestType="OrderStatus" '
                         'RequestStatus="OK"><Data OrderNumber="SHOP1" OrderStatus="Part Despatched" '
                         'Carrier="DPD"><TrackingNumber>155012</TrackingNumber></Data></Response>')
    status = read_order_status(answer, "SHOP1")
    assert (status.status, status.details) == ("Part Despatched", {"Carrier": "DPD", "TrackingNumber": "155012"})


def test_given_an_error_answer_then_prima_does_not_know_the_order_and_its_error_is_read():
    answer = read_answer("<Response RequestType='OrderStatus' RequestStatus='ERROR'>"
                         "<RequestError>Order SHOP2 not found</RequestError></Response>")
    assert (answer.ok, answer.error) == (False, "Order SHOP2 not found")
    assert read_order_status(answer, "SHOP2") is None


def test_given_an_answer_about_another_order_or_without_a_status_then_it_is_a_bad_answer():
    with pytest.raises(BadAnswer, match="about 'SHOP9'"):
        read_order_status(read_answer('<Response RequestStatus="OK"><Data OrderNumber="SHOP9" OrderStatus="New"/>'
                                      '</Response>'), "SHOP1")
    with pytest.raises(BadAnswer, match="without an OrderStatus"):
        read_order_status(read_answer('<Response RequestStatus="OK"><Data/></Response>'), "SHOP1")


@pytest.mark.parametrize("text", ["", "not xml", "<Response/>", "<Response RequestStatus='MAYBE'/>",
                                  '<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><Response>&e;</Response>'])
def test_given_something_that_is_not_an_om_link_answer_then_bad_answer(text):
    with pytest.raises(BadAnswer):
        read_answer(text)


def test_given_an_availability_snapshot_then_one_row_per_product_and_matrix_as_attributes_or_elements():
    answer = read_answer('<Response RequestType="ProductAvailableToSell" RequestStatus="OK"><Data>'
                         '<sku Product="TEE" MtrxCode1="BLK" MtrxCode2="M" AvailableQuantity="25"/>'
                         '<sku><Product>MUG-STONE</Product><MtrxCode1/><AvailableQuantity>-2</AvailableQuantity></sku>'
                         '</Data></Response>')
    assert [(r.item, r.available) for r in read_availability(answer)] == [
        (PrimaItemCode("TEE", "BLK", "M"), 25), (PrimaItemCode("MUG-STONE"), -2)]


@pytest.mark.parametrize("row", ['<sku MtrxCode1="BLK" AvailableQuantity="1"/>', '<sku Product="TEE"/>',
                                 '<sku Product="TEE" AvailableQuantity="2.5"/>',
                                 '<sku Product="TEE" AvailableQuantity="lots"/>'])
def test_given_a_snapshot_row_without_product_or_whole_quantity_then_bad_answer(row):
    with pytest.raises(BadAnswer, match="sku element"):
        read_availability(read_answer(f'<Response RequestStatus="OK"><Data>{row}</Data></Response>'))
