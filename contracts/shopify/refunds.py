"""Shopify refunds and order edits, normalized from webhook bodies (REST representation), and the
facts the ingest publishes for them on shopify.orders.v1 (keyed by the order id, so that an
order's webhooks, refunds and edits keep their order).

- refunds/create: the refund (../shared/reference/shopify-samples/refund.json is one):
  refund_line_items (quantity, subtotal, total_tax, restock_type: no_restock, cancel, return,
  legacy_restock), refund_shipping_lines (newer versions), order_adjustments (kind
  shipping_refund or refund_discrepancy, signed as Shopify states them: a shipping refund is
  negative) and the refund's transactions. Amounts in shop money (the `*_set.shop_money` twin
  where sent). A refund line that states no subtotal or tax (older versions, the sample) takes
  them from its line_item (price x quantity less its discount, and its tax lines, in proportion
  to the units refunded); an old `restock: true` without restock_type is a legacy_restock.
- orders/edited: Shopify's order_edit body, which names the lines and the units an edit added or
  removed (the order as it stands follows in orders/updated). A body that is a whole order
  instead is taken as one (ShopifyOrderReceived).
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.money import Money
from contracts.validation import Code, Id, Lines, Quantity, Text

REFUND_WEBHOOK_TOPIC = "refunds/create"
EDIT_WEBHOOK_TOPIC = "orders/edited"
RestockType = Literal["no_restock", "cancel", "return", "legacy_restock"]
CENT = Decimal("0.01")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class RefundLineItem(_Frozen):
    id: Id | None = None
    line_item_id: Id
    quantity: Quantity
    subtotal: Money  # after discounts; tax inside when the order's prices include it
    total_tax: Money
    restock_type: RestockType


class RefundShippingLine(_Frozen):
    id: Id | None = None
    shipping_line_id: Id | None = None
    subtotal: Money
    tax: Money


class OrderAdjustment(_Frozen):
    id: Id | None = None
    kind: Code  # shipping_refund, refund_discrepancy
    reason: Text | None = None
    amount: Money  # signed as Shopify states it
    tax_amount: Money


class RefundTransaction(_Frozen):
    id: Id | None = None
    kind: Code
    status: Code
    gateway: Code | None = None
    amount: Money | None = None


def _list(obj: dict[str, Any], field: str) -> list[dict[str, Any]]:
    value = obj.get(field) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"{field!r} must be a list of objects")
    return value


def _shop_currency(body: dict[str, Any]) -> str | None:
    """The shop currency a refund body states: a shop_money twin, else a transaction's."""
    stack: list[Any] = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            shop = value.get("shop_money")
            if isinstance(shop, dict) and shop.get("currency_code"):
                return str(shop["currency_code"])
            stack.extend(v for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend(value)
    for transaction in _list(body, "transactions"):
        if transaction.get("currency"):
            return str(transaction["currency"])
    return None


class ShopifyRefund(_Frozen):
    id: Id
    order_id: Id
    created_at: datetime
    note: Text | None = None
    refund_line_items: Lines(RefundLineItem) = ()
    refund_shipping_lines: Lines(RefundShippingLine) = ()
    order_adjustments: Lines(OrderAdjustment) = ()
    transactions: Lines(RefundTransaction) = ()

    @classmethod
    def from_webhook(cls, body: dict[str, Any], currency: str | None = None) -> ShopifyRefund:
        """Normalize a refunds/create body (or a refund listed in an order body, whose shop
        currency is `currency`). Raises pydantic.ValidationError or ValueError when the body is
        not a refund Shopify could have sent."""
        if not isinstance(body, dict):
            raise ValueError("a refund webhook body is a JSON object")
        if set(body) == {"refund"} and isinstance(body["refund"], dict):
            body = body["refund"]  # the REST envelope ({"refund": {...}}), as the public fixture has it
        currency = currency or _shop_currency(body)
        if not currency:
            raise ValueError("the refund states no shop currency (no shop_money and no transaction currency)")

        def money(obj: dict[str, Any], field: str, default: Decimal | None = None) -> Money:
            twin = obj.get(f"{field}_set")
            if isinstance(twin, dict) and isinstance(twin.get("shop_money"), dict):
                shop = twin["shop_money"]
                return Money(amount=Decimal(str(shop["amount"])), currency=shop["currency_code"])
            value = obj.get(field)
            if value is None:
                if default is None:
                    raise ValueError(f"missing amount {field!r}")
                return Money(amount=default, currency=currency)
            return Money(amount=Decimal(str(value)), currency=currency)

        def refund_line(rl: dict[str, Any]) -> RefundLineItem:
            quantity = rl["quantity"]
            line = rl.get("line_item") if isinstance(rl.get("line_item"), dict) else {}
            if "subtotal" in rl or "subtotal_set" in rl:
                subtotal = money(rl, "subtotal")
            else:  # older versions: from the line item, in proportion to the units refunded
                ordered = line.get("quantity") or quantity or 1
                share = Decimal(quantity) / Decimal(ordered)
                price = money(line, "price").amount
                discount = sum((money(a, "amount").amount for a in _list(line, "discount_allocations")), Decimal(0)) \
                    or money(line, "total_discount", Decimal(0)).amount
                subtotal = Money(amount=(price * quantity - discount * share).quantize(CENT, ROUND_HALF_EVEN),
                                 currency=currency)
            if "total_tax" in rl or "total_tax_set" in rl:
                tax = money(rl, "total_tax")
            else:
                ordered = line.get("quantity") or quantity or 1
                share = Decimal(quantity) / Decimal(ordered)
                tax = Money(amount=sum((money(t, "price").amount * share for t in _list(line, "tax_lines")),
                                       Decimal(0)).quantize(CENT, ROUND_HALF_EVEN), currency=currency)
            restock = rl.get("restock_type") or ("legacy_restock" if body.get("restock") else "no_restock")
            return RefundLineItem(id=rl.get("id"), line_item_id=rl.get("line_item_id") or line.get("id"),
                                  quantity=quantity, subtotal=subtotal, total_tax=tax, restock_type=restock)

        return cls(
            id=body["id"],
            order_id=body["order_id"],
            created_at=body.get("created_at") or body.get("processed_at"),
            note=body.get("note") or None,
            refund_line_items=tuple(refund_line(rl) for rl in _list(body, "refund_line_items")),
            refund_shipping_lines=tuple(
                RefundShippingLine(id=sl.get("id"), shipping_line_id=sl.get("shipping_line_id"),
                                   subtotal=money(sl, "subtotal_amount") if ("subtotal_amount" in sl
                                                                             or "subtotal_amount_set" in sl)
                                   else money(sl, "subtotal", Decimal(0)),
                                   tax=money(sl, "tax_amount") if ("tax_amount" in sl or "tax_amount_set" in sl)
                                   else money(sl, "tax", Decimal(0)))
                for sl in _list(body, "refund_shipping_lines")),
            order_adjustments=tuple(
                OrderAdjustment(id=a.get("id"), kind=str(a.get("kind") or "adjustment"), reason=a.get("reason"),
                                amount=money(a, "amount"), tax_amount=money(a, "tax_amount", Decimal(0)))
                for a in _list(body, "order_adjustments")),
            transactions=tuple(
                RefundTransaction(id=t.get("id"), kind=str(t.get("kind", "")).lower(),
                                  status=str(t.get("status", "")).lower(), gateway=t.get("gateway"),
                                  amount=money(t, "amount") if t.get("amount") is not None else None)
                for t in _list(body, "transactions")),
        )


class ShopifyRefundReceived(_Frozen):
    """A refunds/create webhook accepted by the ingest (signature verified, body normalized)."""

    message_type: Literal["ShopifyRefundReceived"] = "ShopifyRefundReceived"
    webhook_id: Code
    event_id: Code | None = None
    topic: Literal["refunds/create"] = "refunds/create"
    shop_domain: Code
    api_version: Code | None = None
    triggered_at: datetime | None = None
    received_at: datetime
    raw_payload_id: UUID
    refund: ShopifyRefund

    @property
    def shopify_order_id(self) -> int:
        return self.refund.order_id


class LineDelta(_Frozen):
    id: Id  # the line item
    delta: int = Field(ge=0, le=1_000_000_000)


class ShopifyOrderEdit(_Frozen):
    id: Id
    order_id: Id
    created_at: datetime | None = None
    additions: Lines(LineDelta) = ()
    removals: Lines(LineDelta) = ()

    @classmethod
    def from_webhook(cls, body: dict[str, Any]) -> ShopifyOrderEdit:
        """Normalize an orders/edited body ({"order_edit": {...}})."""
        if not isinstance(body, dict) or not isinstance(body.get("order_edit"), dict):
            raise ValueError("an orders/edited body is a JSON object with an order_edit")
        edit = body["order_edit"]
        lines = edit.get("line_items") if isinstance(edit.get("line_items"), dict) else {}
        return cls(id=edit["id"], order_id=edit["order_id"], created_at=edit.get("created_at"),
                   additions=tuple(LineDelta(id=d["id"], delta=d.get("delta", 0)) for d in _list(lines, "additions")),
                   removals=tuple(LineDelta(id=d["id"], delta=d.get("delta", 0)) for d in _list(lines, "removals")))


class ShopifyOrderEditReceived(_Frozen):
    """An orders/edited webhook (order_edit body) accepted by the ingest."""

    message_type: Literal["ShopifyOrderEditReceived"] = "ShopifyOrderEditReceived"
    webhook_id: Code
    event_id: Code | None = None
    topic: Literal["orders/edited"] = "orders/edited"
    shop_domain: Code
    api_version: Code | None = None
    triggered_at: datetime | None = None
    received_at: datetime
    raw_payload_id: UUID
    edit: ShopifyOrderEdit

    @property
    def shopify_order_id(self) -> int:
        return self.edit.order_id

