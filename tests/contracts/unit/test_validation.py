"""The one set of rules for every fact (contracts/validation.py), as the contract models apply
it: the ingest (ShopifyOrder), the Prima poller (PrimaStockLevel, PrimaItemChanged) and every
consumer's decode path (services/platform/kafka.py decode_record) refuse the same inputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from contracts.money import Money
from contracts.prima.inventory import BundleComponent, PrimaItemChanged, PrimaStockLevel
from contracts.topics import SHOPIFY_ORDERS
from contracts.validation import (
    MAX_AMOUNT,
    Amount,
    Code,
    Id,
    InvalidJSON,
    Quantity,
    Text,
    parse_json,
)
from services.platform.kafka import Record, Undecodable, decode_record
from tests.orders.builders import received, us_tax_exclusive
from tests.orders.poisons import FACT_POISONS, poisoned, with_duplicated_key

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def refused(tp, value) -> bool:
    try:
        TypeAdapter(tp).validate_python(value)
    except ValidationError:
        return True
    return False


@pytest.mark.parametrize("value", [0, -1, 2**63, True, "x"])
def test_an_id_is_positive_within_int64_and_never_a_boolean(value):
    assert refused(Id, value)


def test_an_id_at_the_edges_of_int64_is_taken():
    assert TypeAdapter(Id).validate_python(1) == 1
    assert TypeAdapter(Id).validate_python(2**63 - 1) == 2**63 - 1


@pytest.mark.parametrize("value", ["1e16", "10000000000000000", "1e10000000", "NaN", "Infinity", "0.001", "abc", True])
def test_an_amount_is_finite_with_two_places_within_numeric_18_2(value):
    assert refused(Amount, value)


def test_the_largest_amount_numeric_18_2_holds_is_taken_and_travels_as_a_string():
    adapter = TypeAdapter(Amount)
    assert adapter.validate_python(str(MAX_AMOUNT)) == MAX_AMOUNT
    assert adapter.dump_json(Decimal("1.50")) == b'"1.50"'


def test_money_has_at_most_its_currencys_minor_units_and_an_iso_code():
    assert Money(amount=Decimal(1200), currency="JPY").amount == 1200
    assert Money(amount=Decimal("1200.00"), currency="JPY").amount == 1200  # trailing zeros are no yen fractions
    with pytest.raises(ValidationError, match="JPY has at most 0"):
        Money(amount=Decimal("1200.5"), currency="JPY")
    with pytest.raises(ValidationError):
        Money(amount=Decimal(1), currency="usd")


@pytest.mark.parametrize("value", [-1, 10**9 + 1, True, 1.5])
def test_a_quantity_is_a_whole_number_not_negative_within_integer(value):
    assert refused(Quantity, value)


@pytest.mark.parametrize("tp,value", [(Text, "a\x00b"), (Code, "a\x00"), (Code, "s" * 256), (Text, "t" * 2001),
                                      (Code, "\ud800")])
def test_text_has_no_nul_no_lone_surrogate_and_a_bounded_length(tp, value):
    assert refused(tp, value)


@pytest.mark.parametrize("text,reason", [
    (b'{"a": 1, "a": 2}', "same key twice"),
    (b'{"a": NaN}', "NaN"),
    (b'{"a": -Infinity}', "Infinity"),
    (b'{"a": 1e999}', "too large"),
    (b"", "not JSON"),
    (None, "no body"),
    (b"[" * 65 + b"]" * 65, "nested more than 64"),
    (b"[" * 100_000 + b"]" * 100_000, "nested more than"),
    (b'{"a": ' + b"9" * 5000 + b"}", "too long"),
    (b"\xff", "not UTF-8"),
    (b'{"a": ', "not JSON"),
])
def test_json_is_refused_with_a_reason_that_does_not_quote_it(text, reason):
    with pytest.raises(InvalidJSON, match=reason) as raised:
        parse_json(text)
    assert len(str(raised.value)) < 120


def test_json_within_the_rules_parses():
    assert parse_json(b"[" * 64 + b"]" * 64) is not None
    assert parse_json('{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


@pytest.mark.parametrize("changes", [
    {"sku": "A\x00"}, {"available": 2**40}, {"change_id": 2**63}, {"change_id": True}, {"warehouse": "w" * 300},
])
def test_a_prima_stock_level_follows_the_rules(changes):
    fields = {"sku": "A", "warehouse": "WH-MAIN", "available": -3, "change_id": 7, "changed_at": NOW, "polled_at": NOW}
    assert PrimaStockLevel(**fields).available == -3  # Prima's available may be negative: oversold
    with pytest.raises(ValidationError):
        PrimaStockLevel(**{**fields, **changes})


@pytest.mark.parametrize("changes", [{"description": "x\x00"}, {"components": ({"sku": "B", "quantity": 0},)},
                                     {"item_id": "i" * 300}])
def test_a_prima_item_follows_the_rules(changes):
    fields = {"sku": "K", "item_id": "ITM-K", "description": "Kit", "item_type": "bundle", "active": True,
              "components": (BundleComponent(sku="B", quantity=2),), "updated_at": NOW, "polled_at": NOW,
              "change_id": 3}
    assert PrimaItemChanged(**fields).components[0].quantity == 2
    with pytest.raises(ValidationError):
        PrimaItemChanged(**{**fields, **changes})


def _record(value: bytes) -> Record:
    return Record(SHOPIFY_ORDERS.name, 0, 0, b"k", value, [("message_type", b"ShopifyOrderReceived")])


ACCEPTS = {"ShopifyOrderReceived": SHOPIFY_ORDERS.messages[0]}
GOOD = received(us_tax_exclusive(2001)).model_dump_json().encode()


def test_a_fact_within_the_rules_decodes():
    assert decode_record(_record(GOOD), ACCEPTS).order.id == 2001


@pytest.mark.parametrize("case", list(FACT_POISONS))
def test_a_consumer_refuses_a_fact_that_breaks_a_rule_before_any_handler_sees_it(case):
    with pytest.raises(Undecodable):
        decode_record(_record(poisoned(GOOD, FACT_POISONS[case])), ACCEPTS)


def test_a_consumer_refuses_a_fact_with_a_duplicated_key():
    with pytest.raises(Undecodable, match="same key twice"):
        decode_record(_record(with_duplicated_key(GOOD, "webhook_id", "another")), ACCEPTS)
    assert json.loads(with_duplicated_key(GOOD, "webhook_id", "another"))["webhook_id"] == "another"
