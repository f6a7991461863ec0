"""Prima's order codes from configuration (domain/orders/prima_codes.py): charge codes, pay
methods, OrderNumber, VatInclusive, HoldOrder."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domain.orders.prima_codes import CodeNotMapped, OrderCodes, vat_inclusive

CODES = OrderCodes.model_validate({
    "order_channel": "WEB", "order_number_prefix": "SHOP",
    "charges": {"Standard": "DEL-STD", "Express": "DEL-EXP"},
    "payments": {"shopify_payments": {"PayMethod": "CARD", "SubPayMethod": "SHOPIFY"},
                 "paypal": {"PayMethod": "PAYPAL"}},
})


def test_given_a_mapped_shipping_method_when_coded_then_its_charge_code():
    assert CODES.charge_code("Express") == "DEL-EXP"


def test_given_an_unmapped_shipping_method_without_default_then_the_missing_mapping_is_named():
    with pytest.raises(CodeNotMapped) as missing:
        CODES.charge_code("Click & Collect")
    assert (missing.value.what, missing.value.value) == ("charge code", "Click & Collect")
    assert "Click & Collect" in str(missing.value)


def test_given_a_default_charge_when_a_method_is_unmapped_then_the_default():
    assert CODES.model_copy(update={"default_charge": "DEL-OTHER"}).charge_code("Courier") == "DEL-OTHER"


def test_given_payment_gateways_when_coded_then_pay_method_and_sub_pay_method_or_the_gateway_named():
    assert (CODES.pay_method("shopify_payments").PayMethod, CODES.pay_method("shopify_payments").SubPayMethod) == (
        "CARD", "SHOPIFY")
    assert CODES.pay_method("paypal").SubPayMethod == ""
    with pytest.raises(CodeNotMapped, match="'klarna'"):
        CODES.pay_method("klarna")


def test_given_a_shopify_order_when_numbered_then_the_same_number_every_time_and_it_reads_back():
    assert CODES.order_number(5550001) == CODES.order_number(5550001) == "SHOP5550001"
    assert CODES.shopify_order_id("SHOP5550001") == 5550001
    assert CODES.shopify_order_id("POS5550001") is None
    assert CODES.shopify_order_id("SHOP55x") is None


def test_given_an_order_number_longer_than_prima_keeps_then_it_is_refused():
    codes = OrderCodes(order_number_prefix="WEBSHOPIFYIE")
    with pytest.raises(ValueError, match="longer than 30"):
        codes.order_number(10**20)


def test_given_taxes_included_then_vat_inclusive_yes_else_no():
    assert (vat_inclusive(True), vat_inclusive(False)) == ("Yes", "No")


def test_given_hold_rules_then_held_orders_are_the_ones_configured():
    assert CODES.hold_order("IE") == "No"
    assert CODES.model_copy(update={"hold_all_orders": True}).hold_order("IE") == "Yes"
    domestic = OrderCodes(release_countries=frozenset({"IE", "GB"}))
    assert (domestic.hold_order("GB"), domestic.hold_order("US"), domestic.hold_order(None)) == ("No", "Yes", "Yes")


@pytest.mark.parametrize(("config", "error"), [
    ({"order_number_prefix": "SHOP 1"}, "order_number_prefix"),
    ({"charges": {"Standard": ""}}, "at least 1 character"),
    ({"payments": {"paypal": {"SubPayMethod": "X"}}}, "PayMethod"),
    ({"release_countries": ["ie"]}, "release_countries"),
    ({"shipping": {}}, "Extra inputs"),
])
def test_given_bad_configuration_when_loaded_then_it_is_refused_naming_the_entry(config, error):
    with pytest.raises(ValidationError, match=error):
        OrderCodes.model_validate(config)
