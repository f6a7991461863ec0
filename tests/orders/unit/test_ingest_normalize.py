"""The ingest's normalizer (services/shopify/ingest.py normalize): whatever a validly signed body
holds, the answer is an order or Unparseable with a short reason (issue 8: kept, quarantined,
raised as an exception; issue 13: never a 500, never the input echoed, no customer e-mail in a
reason that reaches a log line, a dead letter or a response)."""

from __future__ import annotations

import json
import random

import pytest

from sandboxes.shopify.orders import random_paid_order
from services.shopify.ingest import Unparseable, normalize, safe_text

EMAIL = "jane.doe@example.com"
ORDER = random_paid_order(7, ["A", "B"], random.Random(7))


def _with(**changes) -> bytes:
    return json.dumps({**ORDER, **changes}).encode()


def _line(**changes) -> dict:
    return {**ORDER["line_items"][0], **changes}


BAD = {
    "not JSON": (b"{not json", "malformed_json"),
    "not UTF-8": (b"\xff\xfe\x00{", "malformed_json"),
    "empty": (b"", "malformed_json"),
    "a list": (b"[]", "invalid_order"),
    "no id": (json.dumps({k: v for k, v in ORDER.items() if k != "id"}).encode(), "invalid_order"),
    "no currency": (_with(currency=None), "invalid_order"),
    "non-numeric amount (decimal.InvalidOperation)": (
        _with(total_price_set={"shop_money": {"amount": "abc", "currency_code": "USD"}}), "invalid_order"),
    "line items not a list": (_with(line_items={"a": 1}), "invalid_order"),
    "negative quantity": (_with(line_items=[_line(quantity=-1)]), "invalid_order"),
    "JSON nested 10,000 deep (RecursionError)": (b'{"a": ' * 10_000 + b"1" + b"}" * 10_000, "malformed_json"),
    "a 1 MB currency with an e-mail (echoed by Money's ValueError)": (
        _with(line_items=[_line(discount_allocations=[{"amount_set": {"shop_money": {
            "amount": "1", "currency_code": EMAIL + "x" * 1_000_000}}}])]), "invalid_order"),
    "an e-mail where a number goes": (_with(total_price_set={"shop_money": {"amount": EMAIL, "currency_code": "USD"}}),
                                     "invalid_order"),
    "an e-mail as a date": (_with(updated_at=EMAIL), "invalid_order"),
}


def test_a_shopify_order_normalizes():
    assert normalize(json.dumps(ORDER).encode()).id == 7


@pytest.mark.parametrize("case", list(BAD))
def test_a_body_that_is_not_an_order_is_unparseable_with_a_short_reason_without_customer_data(case):
    body, code = BAD[case]
    with pytest.raises(Unparseable) as raised:
        normalize(body)
    assert raised.value.code == code
    assert len(str(raised.value)) <= 300
    assert EMAIL not in str(raised.value) and "xxxxxxxxxx" not in str(raised.value)


def test_safe_text_is_bounded_and_masks_e_mail_addresses_and_nul():
    assert safe_text(f"cannot add {EMAIL} to USD") == "cannot add <e-mail> to USD"
    assert safe_text("a\x00b") == "a\\x00b"
    assert len(safe_text("y" * 10_000)) == 200
