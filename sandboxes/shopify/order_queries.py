"""The orders the sandbox's shop holds, and Admin GraphQL's order queries over them.

The shop holds every order it sent a webhook for (`POST /_sandbox/webhooks` of an order topic
records the body before delivering it, whatever happens to the delivery) and every order created
without a webhook (`POST /_sandbox/orders`: a paid order whose webhooks were all lost). Each is kept
as the REST body (the webhook shape, sandboxes/shopify/orders.py builds them); the latest by
`updated_at` wins, as in Shopify, where the order is one record and webhooks are snapshots of it.

Served (Shopify's shapes; the cost and the throttle are admin.py's, as for every query):
- `orders(first/last, after/before, reverse, sortKey, query)`: sortKey UPDATED_AT, CREATED_AT,
  PROCESSED_AT (Shopify's default) or ID, ties by id; cursors like Shopify's (base64 of
  {"last_id", "last_value"}). Search terms: `updated_at`, `created_at`, `processed_at` with
  `>=`, `>`, `<=`, `<` or `=` and a time (quoted or not; a date alone is midnight UTC), `id`
  (also compared), `financial_status`, `name`; OR / AND / `-` as in resolvers.py; a field the
  search does not know is ignored, as on Shopify.
- `ordersCount(query, limit)`: {count, precision} (AT_LEAST when more than `limit`, 10000).
- `order(id)`: the order or null.
- Order: id, legacyResourceId, name, email, currencyCode, presentmentCurrencyCode, taxesIncluded,
  displayFinancialStatus, test, createdAt, updatedAt, processedAt, cancelledAt, cancelReason,
  edited, shippingAddress, refunds (each: id, legacyResourceId, createdAt, updatedAt, note,
  totalRefundedSet, refundLineItems, refundShippingLines, orderAdjustments, transactions; a REST
  order adjustment of kind shipping_refund is a refund shipping line, as GraphQL states it), the MoneyBags subtotalPriceSet, totalDiscountsSet, totalTaxSet, totalPriceSet,
  totalShippingPriceSet and currentSubtotalPriceSet, currentTotalDiscountsSet, currentTotalTaxSet,
  currentTotalPriceSet (the REST current_* when the body has them: an edited order; else the
  originals), lineItems, shippingLines, transactions.
- LineItem: id, sku, title, name, quantity, currentQuantity (REST current_quantity, else
  quantity), variant (a catalogue variant of the sandbox, else one with just its id), product
  (its id), isGiftCard,
  taxable, originalUnitPriceSet, originalTotalSet, discountAllocations, taxLines.
- ShippingLine: id, title, code, originalPriceSet, discountedPriceSet, isRemoved, discountAllocations,
  taxLines. OrderTransaction: id, kind, status, gateway, test, amountSet.
Times are UTC with Z; amounts are Decimal strings as Shopify writes them ("24.9", "100.0").

Registered by `import sandboxes.shopify.order_queries` (admin.py); the control routes by
`control_router` (app.py); the book is `ShopState.orders` (state.py).
"""

from __future__ import annotations

import base64
import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from graphql import GraphQLError

from contracts.shopify.refunds import ShopifyRefund
from sandboxes.shopify.resolvers import Ctx, field, parse_search
from sandboxes.shopify.store import parse_gid

GID_ORDER = "gid://shopify/Order/"
# Topics whose body is the order itself (orders/edited carries an order_edit, refunds/create a refund).
ORDER_BODY_TOPICS = frozenset({"orders/create", "orders/paid", "orders/updated", "orders/cancelled",
                               "orders/fulfilled", "orders/partially_fulfilled"})
COUNT_LIMIT = 10_000
FINANCIAL_STATUSES = {"PENDING", "AUTHORIZED", "PARTIALLY_PAID", "PARTIALLY_REFUNDED", "VOIDED", "PAID", "REFUNDED",
                      "EXPIRED"}
CANCEL_REASONS = {"CUSTOMER", "DECLINED", "FRAUD", "INVENTORY", "STAFF", "OTHER"}


# --------------------------------------------------------------------------------- the book


def _time(value: Any) -> datetime:
    """A REST time (any offset, or Z) as an aware datetime; a date alone is midnight UTC."""
    if not isinstance(value, str):
        raise ValueError("a time is an ISO 8601 string")
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(value: Any) -> str | None:
    """A REST time as Shopify's GraphQL writes it: UTC, Z (fractions kept when the body has them)."""
    if value in (None, ""):
        return None
    text = _time(value).astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


@dataclass
class HeldOrder:
    """One order of the shop: its REST body as last changed."""

    id: int
    updated_at: datetime
    created_at: datetime
    processed_at: datetime
    body: dict[str, Any]

    @classmethod
    def of(cls, body: Any) -> HeldOrder:
        if not isinstance(body, dict):
            raise ValueError("an order is a JSON object (the REST shape of an order webhook)")
        order_id = body.get("id")
        if not isinstance(order_id, int) or isinstance(order_id, bool) or order_id <= 0:
            raise ValueError("an order has a positive integer id")
        if not isinstance(body.get("line_items"), list) or not body.get("currency"):
            raise ValueError("an order has line_items and a currency")
        try:
            updated = _time(body.get("updated_at"))
            created = _time(body.get("created_at") or body.get("updated_at"))
            processed = _time(body.get("processed_at") or body.get("created_at") or body.get("updated_at"))
        except ValueError as exc:
            raise ValueError(f"order {order_id}: updated_at/created_at must be ISO 8601 times ({exc})") from None
        return cls(order_id, updated, created, processed, body)


class OrderBook:
    """The shop's orders, by id."""

    def __init__(self) -> None:
        self.orders: dict[int, HeldOrder] = {}
        # called with (order id, the order as now held, or None once deleted): fulfillments.py
        self.watchers: list[Callable[[int, HeldOrder | None], None]] = []

    def record(self, body: Any) -> HeldOrder:
        """Hold this order body unless the shop holds a later change of the order."""
        order = HeldOrder.of(body)
        held = self.orders.get(order.id)
        if held is None or order.updated_at >= held.updated_at:
            self.orders[order.id] = order
            for watcher in self.watchers:
                watcher(order.id, order)
            return order
        return held

    def get(self, order_id: int) -> HeldOrder | None:
        return self.orders.get(order_id)

    def delete(self, order_id: int) -> bool:
        if self.orders.pop(order_id, None) is None:
            return False
        for watcher in self.watchers:
            watcher(order_id, None)
        return True

    def reset(self) -> None:
        self.orders.clear()


def record_delivery(book: OrderBook, topic: str, body: Any) -> bool:
    """A webhook the sandbox sends is about an order the shop holds: keep it (True) when the
    topic's body is an order."""
    if topic not in ORDER_BODY_TOPICS:
        return False
    try:
        book.record(body)
    except ValueError:
        return False  # a deliberately broken body (a test of the ingest): nothing for the shop to hold
    return True


# ------------------------------------------------------------------- GraphQL objects


def _decimal(value: Any) -> str:
    """An amount as Shopify's GraphQL Decimal writes it: no padding, at least one decimal place."""
    try:
        text = format(Decimal(str(value)).normalize(), "f")
    except (InvalidOperation, ValueError):
        return str(value)
    return text if "." in text else f"{text}.0"


def _money_bag(obj: dict[str, Any], name: str, currency: str, fallback: str | None = None) -> dict[str, Any] | None:
    twin = obj.get(f"{name}_set")
    if isinstance(twin, dict) and isinstance(twin.get("shop_money"), dict):
        shop = twin["shop_money"]
        presentment = twin.get("presentment_money") if isinstance(twin.get("presentment_money"), dict) else shop
        return {"shopMoney": {"amount": _decimal(shop.get("amount")), "currencyCode": shop.get("currency_code")},
                "presentmentMoney": {"amount": _decimal(presentment.get("amount")),
                                     "currencyCode": presentment.get("currency_code")}}
    if obj.get(name) is not None:
        money = {"amount": _decimal(obj[name]), "currencyCode": currency}
        return {"shopMoney": money, "presentmentMoney": dict(money)}
    if fallback is not None:
        return _money_bag(obj, fallback, currency)
    return None


def _zero(currency: str) -> dict[str, Any]:
    money = {"amount": "0.0", "currencyCode": currency}
    return {"shopMoney": money, "presentmentMoney": dict(money)}


def _tax_lines(obj: dict[str, Any], currency: str) -> list[dict[str, Any]]:
    return [{"title": t.get("title") or "Tax", "rate": t.get("rate"), "ratePercentage": None,
             "priceSet": _money_bag(t, "price", currency) or _zero(currency)}
            for t in obj.get("tax_lines") or () if isinstance(t, dict)]


def _allocations(obj: dict[str, Any], currency: str) -> list[dict[str, Any]]:
    return [{"allocatedAmountSet": _money_bag(a, "amount", currency) or _zero(currency)}
            for a in obj.get("discount_allocations") or () if isinstance(a, dict)]


class _Node:
    """A GraphQL object of the sandbox's orders: `data` holds its fields by GraphQL name."""

    __slots__ = ("data", "num", "typename")

    def __init__(self, typename: str, num: int, data: dict[str, Any]) -> None:
        self.typename, self.num, self.data = typename, num, data


class _VariantRef:
    """An order line's variant that is not in the sandbox's catalogue: its id only."""

    typename = "ProductVariant"

    def __init__(self, num: int, sku: str | None, title: str | None) -> None:
        self.num, self.sku, self.title = num, sku, title
        self.gid = f"gid://shopify/ProductVariant/{num}"


class _ProductRef:
    """An order line's product: its id only."""

    typename = "Product"

    def __init__(self, num: int) -> None:
        self.num = num
        self.gid = f"gid://shopify/Product/{num}"


def _address(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    name = value.get("name") or " ".join(p for p in (value.get("first_name"), value.get("last_name")) if p) or None
    return {"name": name, "firstName": value.get("first_name"), "lastName": value.get("last_name"),
            "company": value.get("company"), "address1": value.get("address1"), "address2": value.get("address2"),
            "city": value.get("city"), "province": value.get("province"), "provinceCode": value.get("province_code"),
            "zip": value.get("zip"), "country": value.get("country"), "countryCodeV2": value.get("country_code"),
            "phone": value.get("phone")}


def _bag(money: Any) -> dict[str, Any]:
    """A MoneyBag of a contract Money."""
    value = {"amount": _decimal(money.amount), "currencyCode": money.currency}
    return {"shopMoney": value, "presentmentMoney": dict(value)}


def _refunds(body: dict[str, Any], currency: str, lines: list[_Node], shipping: list[_Node]) -> list[_Node]:
    """The REST refunds of an order body as GraphQL Refunds (amounts as the refund states them,
    or derived from its line as Shopify's older refunds leave them: contracts/shopify/refunds.py)."""
    by_line = {line.num: line for line in lines}
    out = []
    for i, raw in enumerate(body.get("refunds") or (), start=1):
        if not isinstance(raw, dict):
            continue
        refund = ShopifyRefund.from_webhook({"order_id": body["id"], **raw}, currency)
        refund_lines = [_Node("RefundLineItem", rl.id or n, {
            "id": f"gid://shopify/RefundLineItem/{rl.id}" if rl.id else None,
            "lineItem": by_line.get(rl.line_item_id) or _Node("LineItem", rl.line_item_id, {
                "id": f"gid://shopify/LineItem/{rl.line_item_id}"}),
            "quantity": rl.quantity, "restockType": rl.restock_type.upper(),
            "restocked": rl.restock_type != "no_restock", "subtotalSet": _bag(rl.subtotal),
            "totalTaxSet": _bag(rl.total_tax)}) for n, rl in enumerate(refund.refund_line_items, start=1)]
        shipping_refunds = [(sl.id, sl.shipping_line_id, sl.subtotal, sl.tax) for sl in refund.refund_shipping_lines]
        adjustments = []
        for a in refund.order_adjustments:
            if a.kind == "shipping_refund":  # GraphQL states a shipping refund as a refund shipping line
                shipping_refunds.append((a.id, None, a.amount.model_copy(update={"amount": abs(a.amount.amount)}),
                                         a.tax_amount.model_copy(update={"amount": abs(a.tax_amount.amount)})))
            else:
                adjustments.append(_Node("OrderAdjustment", a.id or len(adjustments) + 1, {
                    "id": f"gid://shopify/OrderAdjustment/{a.id}", "reason": "REFUND_DISCREPANCY",
                    "amountSet": _bag(a.amount), "taxAmountSet": _bag(a.tax_amount)}))
        default_line = shipping[0] if shipping else None
        refund_shipping = [_Node("RefundShippingLine", rid or n, {
            "id": f"gid://shopify/RefundShippingLine/{rid or n}",
            "shippingLine": next((s for s in shipping if s.num == line_id), default_line),
            "subtotalAmountSet": _bag(subtotal), "taxAmountSet": _bag(tax)})
            for n, (rid, line_id, subtotal, tax) in enumerate(shipping_refunds, start=1)]
        transactions = [_Node("OrderTransaction", t.id or n, {
            "id": f"gid://shopify/OrderTransaction/{t.id}", "kind": t.kind.upper(), "status": t.status.upper(),
            "gateway": t.gateway, "test": bool(body.get("test")),
            "amountSet": _bag(t.amount) if t.amount else _zero(currency)})
            for n, t in enumerate(refund.transactions, start=1)]
        refunded = sum((t.amount.amount for t in refund.transactions
                        if t.amount and t.kind == "refund" and t.status == "success"), Decimal(0))
        created = _iso(raw.get("created_at") or raw.get("processed_at"))
        out.append(_Node("Refund", refund.id or i, {
            "id": f"gid://shopify/Refund/{refund.id}", "legacyResourceId": str(refund.id), "createdAt": created,
            "updatedAt": created, "note": refund.note,
            "totalRefundedSet": {"shopMoney": {"amount": _decimal(refunded), "currencyCode": currency},
                                 "presentmentMoney": {"amount": _decimal(refunded), "currencyCode": currency}},
            "refundLineItems": refund_lines, "refundShippingLines": refund_shipping, "orderAdjustments": adjustments,
            "transactions": transactions}))
    return out


def _line_item(line: dict[str, Any], currency: str, ctx: Ctx) -> _Node:
    variant = None
    if isinstance(line.get("variant_id"), int):
        variant = ctx.store.variant(f"gid://shopify/ProductVariant/{line['variant_id']}") or \
            _VariantRef(line["variant_id"], line.get("sku"), line.get("variant_title"))
    quantity = line.get("quantity")
    current = line.get("current_quantity", quantity)
    unit = _money_bag(line, "price", currency) or _zero(currency)
    total = Decimal(unit["shopMoney"]["amount"]) * (quantity or 0)
    return _Node("LineItem", line.get("id") or 0, {
        "id": f"gid://shopify/LineItem/{line.get('id')}",
        "sku": line.get("sku") or None,
        "title": line.get("title") or line.get("name") or "",
        "name": line.get("name") or line.get("title") or "",
        "quantity": quantity,
        "currentQuantity": current if current is not None else quantity,
        "variant": variant,
        "product": _ProductRef(line["product_id"]) if isinstance(line.get("product_id"), int) else None,
        "isGiftCard": bool(line.get("gift_card")),
        "taxable": bool(line.get("taxable", bool(line.get("tax_lines")))),
        "originalUnitPriceSet": unit,
        "originalTotalSet": {"shopMoney": {"amount": _decimal(total), "currencyCode": currency},
                             "presentmentMoney": {"amount": _decimal(total), "currencyCode": currency}},
        "discountAllocations": _allocations(line, currency),
        "taxLines": _tax_lines(line, currency),
    })


def _shipping_line(line: dict[str, Any], currency: str) -> _Node:
    price = _money_bag(line, "price", currency) or _zero(currency)
    discounted = _money_bag(line, "discounted_price", currency) or price
    return _Node("ShippingLine", line.get("id") or 0, {
        "id": f"gid://shopify/ShippingLine/{line.get('id')}" if line.get("id") is not None else None,
        "title": line.get("title") or "Shipping",
        "code": line.get("code"),
        "originalPriceSet": price,
        "discountedPriceSet": discounted,
        "isRemoved": False,
        "discountAllocations": _allocations(line, currency),
        "taxLines": _tax_lines(line, currency),
    })


def _transaction(t: dict[str, Any], currency: str, test: bool) -> _Node:
    return _Node("OrderTransaction", t.get("id") or 0, {
        "id": f"gid://shopify/OrderTransaction/{t.get('id')}",
        "kind": str(t.get("kind", "")).upper(),
        "status": str(t.get("status", "")).upper(),
        "gateway": t.get("gateway"),
        "test": bool(t.get("test", test)),
        "amountSet": _money_bag(t, "amount", currency) or _zero(currency),
    })


def graphql_order(held: HeldOrder, ctx: Ctx) -> _Node:
    """The REST body as the Admin GraphQL Order it is."""
    body = held.body
    currency = body["currency"]
    status = str(body.get("financial_status") or "").upper()
    reason = str(body.get("cancel_reason") or "").upper()
    data: dict[str, Any] = {
        "id": f"{GID_ORDER}{held.id}",
        "legacyResourceId": str(held.id),
        "name": body.get("name") or f"#{body.get('order_number', held.id)}",
        "email": body.get("email") or body.get("contact_email"),
        "currencyCode": currency,
        "presentmentCurrencyCode": body.get("presentment_currency") or currency,
        "taxesIncluded": bool(body.get("taxes_included")),
        "displayFinancialStatus": status if status in FINANCIAL_STATUSES else None,
        "test": bool(body.get("test")),
        "createdAt": _iso(body.get("created_at") or body.get("updated_at")),
        "updatedAt": _iso(body.get("updated_at")),
        "processedAt": _iso(body.get("processed_at") or body.get("created_at") or body.get("updated_at")),
        "cancelledAt": _iso(body.get("cancelled_at")),
        "cancelReason": (reason if reason in CANCEL_REASONS else "OTHER") if body.get("cancelled_at") else None,
        "edited": any("current_quantity" in li for li in body.get("line_items") or () if isinstance(li, dict)),
        "shippingAddress": _address(body.get("shipping_address")),
        "lineItems": [_line_item(li, currency, ctx) for li in body.get("line_items") or () if isinstance(li, dict)],
        "shippingLines": [_shipping_line(sl, currency) for sl in body.get("shipping_lines") or ()
                          if isinstance(sl, dict)],
        "transactions": [_transaction(t, currency, bool(body.get("test"))) for t in body.get("transactions") or ()
                         if isinstance(t, dict)],
    }
    data["refunds"] = _refunds(body, currency, data["lineItems"], data["shippingLines"])
    for name in ("subtotal_price", "total_discounts", "total_tax", "total_price"):
        data[_camel(name) + "Set"] = _money_bag(body, name, currency) or _zero(currency)
    data["totalShippingPriceSet"] = (_money_bag(body, "total_shipping_price", currency)
                                     or _shipping_total(body, currency))
    for name in ("subtotal_price", "total_discounts", "total_tax", "total_price"):
        data["current" + _camel(name)[0].upper() + _camel(name)[1:] + "Set"] = (
            _money_bag(body, f"current_{name}", currency) or data[_camel(name) + "Set"])
    return _Node("Order", held.id, data)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _shipping_total(body: dict[str, Any], currency: str) -> dict[str, Any]:
    total = Decimal(0)
    for line in body.get("shipping_lines") or ():
        bag = _money_bag(line, "price", currency) if isinstance(line, dict) else None
        total += Decimal(bag["shopMoney"]["amount"]) if bag else 0
    money = {"amount": _decimal(total), "currencyCode": currency}
    return {"shopMoney": money, "presentmentMoney": dict(money)}


ORDER_FIELDS = ("id", "legacyResourceId", "name", "email", "currencyCode", "presentmentCurrencyCode", "taxesIncluded",
                "displayFinancialStatus", "test", "createdAt", "updatedAt", "processedAt", "cancelledAt",
                "cancelReason", "edited", "shippingAddress", "subtotalPriceSet", "totalDiscountsSet", "totalTaxSet", "totalPriceSet",
                "totalShippingPriceSet", "currentSubtotalPriceSet", "currentTotalDiscountsSet", "currentTotalTaxSet",
                "currentTotalPriceSet")
LINE_ITEM_FIELDS = ("id", "sku", "title", "name", "quantity", "currentQuantity", "variant", "product", "isGiftCard",
                    "taxable",
                    "originalUnitPriceSet", "originalTotalSet", "discountAllocations", "taxLines")
SHIPPING_LINE_FIELDS = ("id", "title", "code", "originalPriceSet", "discountedPriceSet", "isRemoved",
                        "discountAllocations", "taxLines")
TRANSACTION_FIELDS = ("id", "kind", "status", "gateway", "test", "amountSet")
REFUND_FIELDS = ("id", "legacyResourceId", "createdAt", "updatedAt", "note", "totalRefundedSet")
REFUND_LINE_FIELDS = ("id", "lineItem", "quantity", "restockType", "restocked", "subtotalSet", "totalTaxSet")
REFUND_SHIPPING_FIELDS = ("id", "shippingLine", "subtotalAmountSet", "taxAmountSet")
ADJUSTMENT_FIELDS = ("id", "reason", "amountSet", "taxAmountSet")

for _type, _names in (("Order", ORDER_FIELDS), ("LineItem", LINE_ITEM_FIELDS), ("ShippingLine", SHIPPING_LINE_FIELDS),
                      ("OrderTransaction", TRANSACTION_FIELDS), ("Refund", REFUND_FIELDS),
                      ("RefundLineItem", REFUND_LINE_FIELDS), ("RefundShippingLine", REFUND_SHIPPING_FIELDS),
                      ("OrderAdjustment", ADJUSTMENT_FIELDS)):
    for _name in _names:
        if _name not in ("taxLines",):
            field(_type, _name)(lambda o, _a, _c, key=_name: o.data[key])


@field("LineItem", "taxLines")
def _line_tax_lines(line: _Node, args: dict[str, Any], _ctx: Ctx) -> list[dict[str, Any]]:
    taxes = line.data["taxLines"]
    return taxes[: args["first"]] if args.get("first") is not None else taxes


field("ShippingLine", "taxLines")(lambda o, _a, _c: o.data["taxLines"])


@field("Order", "transactions")
def _order_transactions(order: _Node, args: dict[str, Any], _ctx: Ctx) -> list[_Node]:
    found = order.data["transactions"]
    return found[: args["first"]] if args.get("first") is not None else found


@field("Order", "refunds")
def _order_refunds(order: _Node, args: dict[str, Any], _ctx: Ctx) -> list[_Node]:
    found = order.data["refunds"]
    return found[: args["first"]] if args.get("first") is not None else found


def _connection_of(name: str) -> Any:
    def resolve(obj: _Node, args: dict[str, Any], _ctx: Ctx) -> dict[str, Any]:
        items = obj.data[name]
        return _page(items, [(item.num,) for item in items], args)
    return resolve


for _name in ("refundLineItems", "refundShippingLines", "orderAdjustments", "transactions"):
    field("Refund", _name)(_connection_of(_name))


@field("Order", "lineItems")
def _order_lines(order: _Node, args: dict[str, Any], _ctx: Ctx) -> dict[str, Any]:
    lines = order.data["lineItems"]
    return _page(lines, [(line.num,) for line in lines], args)


@field("Order", "shippingLines")
def _order_shipping_lines(order: _Node, args: dict[str, Any], _ctx: Ctx) -> dict[str, Any]:
    lines = order.data["shippingLines"]
    return _page(lines, [(line.num,) for line in lines], args)


# ------------------------------------------------------------------------- the queries

SORT_KEYS = {
    "ID": lambda o: (o.id,),
    "UPDATED_AT": lambda o: (o.updated_at, o.id),
    "CREATED_AT": lambda o: (o.created_at, o.id),
    "PROCESSED_AT": lambda o: (o.processed_at, o.id),
}
_COMPARISON = re.compile(r"^(>=|<=|>|<|=)?\s*['\"]?(.*?)['\"]?$")
TIME_FIELDS = {"updated_at": lambda o: o.updated_at, "created_at": lambda o: o.created_at,
               "processed_at": lambda o: o.processed_at}
TEXT_FIELDS = {"financial_status": lambda o: o.body.get("financial_status"), "name": lambda o: o.body.get("name")}


def _compare(op: str, left: Any, right: Any) -> bool:
    return {">=": left >= right, ">": left > right, "<=": left <= right, "<": left < right, "=": left == right}[op]


def _term_matches(order: HeldOrder, term: Any) -> bool:
    name = term.field
    if name in TIME_FIELDS or name == "id":
        match = _COMPARISON.match(term.value)
        op, operand = (match[1] or "="), match[2]
        try:
            if name == "id":
                number = parse_gid(operand)
                right: Any = number[1] if number else int(operand)
                hit = _compare(op, order.id, right)
            else:
                hit = _compare(op, TIME_FIELDS[name](order), _time(operand))
        except ValueError as exc:
            raise GraphQLError(f"Invalid search value '{term.value}' for field '{name}'",
                               extensions={"code": "BAD_REQUEST"}) from exc
        return hit != term.negated
    if name in TEXT_FIELDS:
        return term.test(TEXT_FIELDS[name](order))
    return True  # as on Shopify: a field the search does not know is ignored


def search_orders(book: OrderBook, query: str | None) -> list[HeldOrder]:
    groups = parse_search(query)
    orders = list(book.orders.values())
    if not groups:
        return orders
    return [o for o in orders if any(all(_term_matches(o, t) for t in group) for group in groups)]


def _cursor(key: tuple[Any, ...]) -> str:
    """Shopify's cursor shape: base64 of {"last_id", "last_value"} (the sort value)."""
    last_value = key[0].isoformat() if isinstance(key[0], datetime) else key[0]
    raw = json.dumps({"last_id": key[-1], "last_value": last_value}, separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str, sample: tuple[Any, ...]) -> tuple[Any, ...]:
    try:
        value = json.loads(base64.b64decode(cursor.encode(), validate=True))
        last_id, last_value = int(value["last_id"]), value["last_value"]
        if len(sample) == 1:
            return (last_id,)
        return (datetime.fromisoformat(last_value), last_id)
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphQLError("Invalid cursor for current pagination sort.", extensions={"code": "BAD_REQUEST"}) from exc


def _page(items: list[Any], keys: list[tuple[Any, ...]], args: dict[str, Any]) -> dict[str, Any]:
    """A Relay connection page of `items` (ordered by `keys`, ascending) for first/last,
    after/before and reverse."""
    reverse = bool(args.get("reverse"))
    sample = keys[0] if keys else (0,)
    if reverse:
        items, keys = items[::-1], keys[::-1]
    negate = (lambda k: tuple(_Desc(x) for x in k)) if reverse else (lambda k: k)
    ordered = [negate(k) for k in keys]
    start, end = 0, len(items)
    if args.get("after"):
        start = bisect_right(ordered, negate(_decode_cursor(args["after"], sample)))
    if args.get("before"):
        end = bisect_left(ordered, negate(_decode_cursor(args["before"], sample)))
    end = max(start, end)
    lo, hi = start, end
    if args.get("first") is not None:
        hi = min(hi, lo + args["first"])
    if args.get("last") is not None:
        lo = max(lo, hi - args["last"])
    page = items[lo:hi]
    cursors = [_cursor(k) for k in keys[lo:hi]]
    return {
        "edges": [{"cursor": c, "node": o} for c, o in zip(cursors, page, strict=True)],
        "nodes": page,
        "pageInfo": {"hasNextPage": hi < len(items), "hasPreviousPage": lo > 0,
                     "startCursor": cursors[0] if cursors else None, "endCursor": cursors[-1] if cursors else None},
    }


class _Desc:
    """Reverses the order of a key component (for reverse: true)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return other.value < self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


def book_of(ctx: Ctx) -> OrderBook:
    return ctx.state.orders


@field("QueryRoot", "orders")
def _orders(_o: Any, args: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    sort_key = args.get("sortKey") or "PROCESSED_AT"
    key_of = SORT_KEYS.get(sort_key)
    if key_of is None:
        raise GraphQLError(f"orders: sortKey {sort_key} is not served by the Shopify sandbox "
                           f"(served: {', '.join(SORT_KEYS)})", extensions={"code": "NOT_IMPLEMENTED_IN_SANDBOX"})
    found = sorted(search_orders(book_of(ctx), args.get("query")), key=key_of)
    keys = [key_of(o) for o in found]
    page = _page(found, keys, args)
    nodes = [graphql_order(o, ctx) for o in page["nodes"]]
    page["nodes"] = nodes
    page["edges"] = [{"cursor": e["cursor"], "node": n} for e, n in zip(page["edges"], nodes, strict=True)]
    return page


@field("QueryRoot", "ordersCount")
def _orders_count(_o: Any, args: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    limit = args.get("limit") if args.get("limit") is not None else COUNT_LIMIT
    count = len(search_orders(book_of(ctx), args.get("query")))
    return {"count": min(count, limit), "precision": "AT_LEAST" if count > limit else "EXACT"}


@field("QueryRoot", "order")
def _order(_o: Any, args: dict[str, Any], ctx: Ctx) -> _Node | None:
    parsed = parse_gid(args.get("id"))
    if parsed is None or parsed[0] != "Order":
        return None
    held = book_of(ctx).get(parsed[1])
    return graphql_order(held, ctx) if held else None


# ------------------------------------------------------------------------- controls


def _summary(order: HeldOrder) -> dict[str, Any]:
    return {"id": order.id, "name": order.body.get("name"), "updated_at": _iso(order.body.get("updated_at")),
            "financial_status": order.body.get("financial_status")}


def control_router(state: Any) -> APIRouter:
    """/_sandbox/orders: the shop's orders without webhooks (no auth, like every control)."""
    router = APIRouter()

    @router.post("/_sandbox/orders")
    async def create_orders(request: Request) -> JSONResponse:
        """Create or change orders in the shop WITHOUT sending any webhook: every webhook of these
        orders is lost. Nothing is held when one of them is not an order (422 naming it)."""
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            body = None
        specs = body.get("orders") if isinstance(body, dict) else None
        if not isinstance(specs, list) or not specs:
            return JSONResponse({"detail": 'body: {"orders": [<order in the REST shape of an order webhook>, ...]}'},
                                status_code=422)
        try:
            checked = [HeldOrder.of(spec) for spec in specs]
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        held = [state.orders.record(order.body) for order in checked]
        return JSONResponse({"orders": [_summary(o) for o in held]})

    @router.get("/_sandbox/orders")
    async def list_orders() -> JSONResponse:
        orders = sorted(state.orders.orders.values(), key=lambda o: (o.updated_at, o.id))
        return JSONResponse([_summary(o) for o in orders])

    @router.delete("/_sandbox/orders/{order_id}")
    async def delete_order(order_id: int) -> JSONResponse:
        """The order is deleted in Shopify (orderDelete): the shop no longer has it."""
        if not state.orders.delete(order_id):
            return JSONResponse({"detail": f"the shop holds no order {order_id}"}, status_code=404)
        return JSONResponse({"deleted": order_id})

    return router
