"""Issue 13, item 1, at the normalizer (services/shopify/ingest.py normalize, on
contracts/validation.py): each hostile body of the issue is Unparseable with a short reason that
does not quote it, so the ingest keeps it quarantined and publishes no fact.

Before the fix a NUL in a name or SKU, an amount of 1e16, an order id of 2^63, "id": true, a
negative price, a EUR line on a USD order, a duplicated key and an amount of 1e10000000 (a 10 MB
fact) were normalized and published."""

from __future__ import annotations

import json

import pytest

from services.shopify.ingest import Unparseable, normalize
from tests.orders.poisons import WEBHOOK_POISONS, paid_order


@pytest.mark.parametrize("case", list(WEBHOOK_POISONS))
def test_given_a_hostile_body_when_normalized_then_it_is_unparseable_with_a_short_reason(case):
    make, code = WEBHOOK_POISONS[case]
    body = make(4242, None)
    with pytest.raises(Unparseable) as raised:
        normalize(body)
    assert raised.value.code == code
    assert len(str(raised.value)) <= 300
    assert "SSSSSSSSSS" not in str(raised.value) and "\x00" not in str(raised.value)


def test_given_the_same_order_without_the_poison_then_it_normalizes():
    order = normalize(json.dumps(paid_order(4242)).encode())
    assert order.id == 4242 and order.line_items


def test_given_a_jpy_order_then_whole_yen_are_taken_and_fractions_of_a_yen_are_not():
    order = paid_order(4243)
    def in_yen(document, amount: str) -> bytes:
        text = json.dumps(document).replace('"USD"', '"JPY"')
        changed = json.loads(text)
        changed["total_price"] = changed["total_price_set"]["shop_money"]["amount"] = amount
        return json.dumps(changed).encode()

    rounded = json.loads(json.dumps(order).replace('"USD"', '"JPY"'))
    for obj in _amount_objects(rounded):
        obj["amount"] = str(int(float(obj["amount"])))
    assert normalize(in_yen(rounded, "1200.00")).total_price.amount == 1200
    with pytest.raises(Unparseable, match="JPY has at most 0 decimal"):
        normalize(in_yen(rounded, "1200.50"))


def _amount_objects(value):
    if isinstance(value, dict):
        if "amount" in value and "currency_code" in value:
            yield value
        for v in value.values():
            yield from _amount_objects(v)
    elif isinstance(value, list):
        for v in value:
            yield from _amount_objects(v)
