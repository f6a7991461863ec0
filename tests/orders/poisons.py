"""The hostile inputs of issue 13, in one place, for the tests at every layer they must be
stopped at (this module holds no tests):

- WEBHOOK_POISONS: webhook bodies Shopify's signature would cover (what a compromised or buggy
  sender could sign), each built from a real-shaped paid order (sandboxes/shopify/orders.py);
  before issue 13, the first ones were accepted and published, and then stopped the projector.
- FACT_POISONS: the same defects in a message already on Kafka (a fact of a foreign or older
  producer, an event relayed before the rules existed): a change to the JSON of a
  ShopifyOrderReceived or an OrderReceived event (both carry the order under "order").
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from sandboxes.shopify.orders import random_paid_order

SKUS = ["A", "B", "C"]
INT64_MAX = 2**63 - 1


def paid_order(order_id: int, skus: list[str] | None = None) -> dict[str, Any]:
    return random_paid_order(order_id, skus or SKUS, random.Random(order_id))


def _set_amount(obj: dict[str, Any], field: str, value: Any, currency: str | None = None) -> None:
    """An amount and its *_set.shop_money twin (the twin is what the normalizer reads)."""
    obj[field] = value
    shop = obj.setdefault(f"{field}_set", {}).setdefault("shop_money", {})
    shop["amount"] = value
    shop["currency_code"] = currency or shop.get("currency_code") or "USD"


def _changed(change: Callable[[dict[str, Any]], None]) -> Callable[[int, list[str] | None], bytes]:
    def body(order_id: int, skus: list[str] | None = None) -> bytes:
        order = paid_order(order_id, skus)
        change(order)
        return json.dumps(order).encode()
    return body


def _first_line(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda order: change(order["line_items"][0])


def _duplicated_id(order_id: int, skus: list[str] | None = None) -> bytes:
    """The order's id twice: 'last wins' would make it another order."""
    text = json.dumps(paid_order(order_id, skus))
    return (text[:-1] + f', "id": {order_id + 1}}}').encode()


def _nested(order_id: int, skus: list[str] | None = None) -> bytes:
    return b'{"id": ' + str(order_id).encode() + b', "note_attributes": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"


def _lone_surrogate(order_id: int, skus: list[str] | None = None) -> bytes:
    text = json.dumps(paid_order(order_id, skus))
    return text.replace('"name": "', '"name": "\\ud800', 1).encode()


# name -> (body of an order with this id, the normalizer's error code)
WEBHOOK_POISONS: dict[str, tuple[Callable[[int, list[str] | None], bytes], str]] = {
    "a NUL in the name": (_changed(lambda o: o.update(name="#1\u0000")), "invalid_order"),
    "a NUL in a SKU": (_changed(_first_line(lambda li: li.update(sku="A\u0000B"))), "invalid_order"),
    "an amount of 1e16": (_changed(lambda o: _set_amount(o, "total_price", "1e16")), "invalid_order"),
    "an amount of 10000000000000000.00": (
        _changed(lambda o: _set_amount(o, "total_price", "10000000000000000.00")), "invalid_order"),
    "an order id of 2^63": (_changed(lambda o: o.update(id=2**63)), "invalid_order"),
    "a line id of 2^64": (_changed(_first_line(lambda li: li.update(id=2**64))), "invalid_order"),
    "a non-numeric amount": (_changed(lambda o: _set_amount(o, "total_price", "abc")), "invalid_order"),
    "an amount of 1e10000000": (_changed(lambda o: _set_amount(o, "total_tax", "1e10000000")), "invalid_order"),
    "an amount with three places": (_changed(lambda o: _set_amount(o, "total_tax", "0.001")), "invalid_order"),
    "a negative price": (_changed(_first_line(lambda li: _set_amount(li, "price", "-5.00"))), "invalid_order"),
    "a negative quantity": (_changed(_first_line(lambda li: li.update(quantity=-1))), "invalid_order"),
    "a quantity of 2^40": (_changed(_first_line(lambda li: li.update(quantity=2**40))), "invalid_order"),
    '"id": true': (_changed(lambda o: o.update(id=True)), "invalid_order"),
    "a EUR line on a USD order": (
        _changed(_first_line(lambda li: _set_amount(li, "price", "9.90", "EUR"))), "invalid_order"),
    "a currency that is no ISO code": (_changed(lambda o: o.update(currency="usd dollars")), "invalid_order"),
    "a 10,000-character SKU": (_changed(_first_line(lambda li: li.update(sku="S" * 10_000))), "invalid_order"),
    "a lone surrogate in the name": (_lone_surrogate, "invalid_order"),
    "the id twice (duplicated key)": (_duplicated_id, "malformed_json"),
    "JSON nested 10,000 levels deep": (_nested, "malformed_json"),
    "NaN as a number": (lambda i, s=None: json.dumps({**paid_order(i, s), "total_weight": float("nan")}).encode(),
                        "malformed_json"),
}


def _order_field(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda message: message["order"].update(changes)


def _line_field(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda message: message["order"]["line_items"][0].update(changes)


def _total(amount: str) -> Callable[[dict[str, Any]], None]:
    return lambda message: message["order"]["total_price"].update(amount=amount)


def _order_id(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(message: dict[str, Any]) -> None:
        message["order"]["id"] = value
        if "shopify_order_id" in message:
            message["shopify_order_id"] = value
    return change


# name -> a change to a ShopifyOrderReceived's or OrderReceived's JSON (in place)
FACT_POISONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "a NUL in the name": _order_field(name="#1\u0000"),
    "a NUL in a SKU": _line_field(sku="A\u0000B"),
    "an amount of 1e16": _total("10000000000000000.00"),
    "an amount of 1e10000000": _total("1e10000000"),
    "an order id of 2^63": _order_id(2**63),
    '"id": true': _order_id(True),
    "a negative price": lambda m: m["order"]["line_items"][0]["unit_price"].update(amount="-5.00"),
    "a EUR line on a USD order": lambda m: m["order"]["line_items"][0]["unit_price"].update(currency="EUR"),
}


def poisoned(message_json: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    document = json.loads(message_json)
    change(document)
    return json.dumps(document).encode()


def with_duplicated_key(message_json: bytes, key: str, value: Any) -> bytes:
    """The message with `key` (top level) given a second time: pydantic alone would take the last."""
    return message_json[:-1] + f', "{key}": {json.dumps(value)}}}'.encode()
