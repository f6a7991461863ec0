"""An Admin GraphQL order (the selection of contracts/shopify_admin/operations/ReconcileOrders.graphql)
in the REST shape of an order webhook body: the one place where the two shapes meet.

The order reconciler reads orders through GraphQL (REST Admin is legacy), while webhooks carry
the REST representation. Mapping the GraphQL order to that shape here lets the ingest's own
normalizer (services/shopify/ingest.py `normalize`, i.e. ShopifyOrder.from_webhook) build the
order fact from either, so an order read by the reconciler is the same fact as its webhook.

REST field          <- GraphQL field
id                  <- legacyResourceId
name, email, test, taxes_included, created_at, updated_at, processed_at, cancelled_at  <- the same, camelCase
order_number        <- the digits of `name` when it is Shopify's default "#1001" (GraphQL has no
                       order number; any other name format gives none rather than a guess)
currency / presentment_currency  <- currencyCode / presentmentCurrencyCode
financial_status    <- displayFinancialStatus, lower case (PARTIALLY_REFUNDED -> partially_refunded)
cancel_reason       <- cancelReason, lower case
shipping_address    <- shippingAddress: name (else first and last name), company, address1, address2,
                       city, province_code <- provinceCode, zip, country_code <- countryCodeV2, phone
<x> and <x>_set     <- <x>Set.shopMoney (subtotal_price, total_discounts, total_tax, total_price,
                       current_subtotal_price, current_total_tax, current_total_price)
line_items[]        <- lineItems.nodes: id (of the GID), sku, title (also as name), quantity,
                       current_quantity, gift_card <- isGiftCard, variant_id <- variant.legacyResourceId,
                       product_id <- product.legacyResourceId (neither: a custom line),
                       price <- originalUnitPriceSet, discount_allocations[].amount <- allocatedAmountSet,
                       tax_lines[] {title, rate, price <- priceSet}
shipping_lines[]    <- shippingLines.nodes: id, title, code, price <- originalPriceSet,
                       discount_allocations, tax_lines
transactions[]      <- transactions: id, kind and status lower case, gateway, amount <- amountSet
refunds[]           <- Order.refunds (ReconcileOrderRefunds.graphql): id, created_at, note,
                       refund_line_items {id, line_item_id, quantity, restock_type lower case,
                       subtotal <- subtotalSet, total_tax <- totalTaxSet}, refund_shipping_lines {id,
                       shipping_line_id, subtotal_amount <- subtotalAmountSet, tax_amount <- taxAmountSet},
                       order_adjustments {id, kind refund_discrepancy (GraphQL states shipping refunds as
                       refund shipping lines), reason lower case, amount, tax_amount}, transactions

Not mapped, because Admin GraphQL does not state it: a tip line's tip_payment_gateway (a tip read
here is a line without a product, as a custom line is).

Amounts stay the strings Shopify sent ("24.9" in GraphQL is "24.90" in REST: the same Decimal).
Nothing is checked here: a node that is not an order Shopify could send fails in the normalizer,
with the same errors as a webhook body.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_DEFAULT_NAME = re.compile(r"^#(\d{1,18})$")
_GID = re.compile(r"^gid://shopify/[A-Za-z]+/(\d{1,19})(?:\?.*)?$")

ORDER_AMOUNTS = {  # REST field: GraphQL field
    "subtotal_price": "subtotalPriceSet",
    "total_discounts": "totalDiscountsSet",
    "total_tax": "totalTaxSet",
    "total_price": "totalPriceSet",
    "current_subtotal_price": "currentSubtotalPriceSet",
    "current_total_tax": "currentTotalTaxSet",
    "current_total_price": "currentTotalPriceSet",
}


def legacy_id(value: Any) -> Any:
    """The number of a Shopify GID ("gid://shopify/LineItem/42" -> 42); anything else as it is
    (the normalizer then says what is wrong with it)."""
    if isinstance(value, str):
        match = _GID.match(value)
        if match:
            return int(match[1])
        if value.isdigit():
            return int(value)
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _money(target: dict[str, Any], field: str, money_bag: Any) -> None:
    """Set REST `field` and `field_set` from a MoneyBag's shopMoney; nothing when it is absent
    (the normalizer reports a missing amount)."""
    shop = money_bag.get("shopMoney") if isinstance(money_bag, dict) else None
    if not isinstance(shop, dict):
        return
    target[field] = shop.get("amount")
    target[f"{field}_set"] = {"shop_money": {"amount": shop.get("amount"), "currency_code": shop.get("currencyCode")}}


def _allocations(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for allocation in node.get("discountAllocations") or ():
        rest: dict[str, Any] = {}
        _money(rest, "amount", (allocation or {}).get("allocatedAmountSet"))
        out.append(rest)
    return out


def _tax_lines(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for tax in node.get("taxLines") or ():
        tax = tax or {}
        rest: dict[str, Any] = {"title": tax.get("title"), "rate": tax.get("rate")}
        _money(rest, "price", tax.get("priceSet"))
        out.append(rest)
    return out


def rest_line_item(node: dict[str, Any]) -> dict[str, Any]:
    """A LineItem node (ReconcileOrders or ReconcileOrderLines) as a REST line item."""
    variant = node.get("variant") or {}
    product = node.get("product") or {}
    line: dict[str, Any] = {
        "id": legacy_id(node.get("id")),
        "sku": node.get("sku"),
        "title": node.get("title"),
        "name": node.get("title"),
        "quantity": node.get("quantity"),
        "current_quantity": node.get("currentQuantity"),
        "gift_card": bool(node.get("isGiftCard")),
        "variant_id": legacy_id(variant.get("legacyResourceId")) if variant else None,
        "product_id": legacy_id(product.get("legacyResourceId")) if product else None,
        "discount_allocations": _allocations(node),
        "tax_lines": _tax_lines(node),
    }
    _money(line, "price", node.get("originalUnitPriceSet"))
    return line


def _shipping_line(node: dict[str, Any]) -> dict[str, Any]:
    line: dict[str, Any] = {
        "id": legacy_id(node.get("id")),
        "title": node.get("title"),
        "code": node.get("code"),
        "discount_allocations": _allocations(node),
        "tax_lines": _tax_lines(node),
    }
    _money(line, "price", node.get("originalPriceSet"))
    return line


def _transaction(node: dict[str, Any]) -> dict[str, Any]:
    transaction: dict[str, Any] = {"id": legacy_id(node.get("id")), "kind": _lower(node.get("kind")),
                                   "status": _lower(node.get("status")), "gateway": node.get("gateway")}
    _money(transaction, "amount", node.get("amountSet"))
    return transaction


def _address(node: Any) -> dict[str, Any] | None:
    if not isinstance(node, dict):
        return None
    name = node.get("name") or " ".join(p for p in (node.get("firstName"), node.get("lastName")) if p) or None
    return {"name": name, "company": node.get("company"), "address1": node.get("address1"),
            "address2": node.get("address2"), "city": node.get("city"), "province_code": node.get("provinceCode"),
            "zip": node.get("zip"), "country_code": node.get("countryCodeV2"), "phone": node.get("phone")}


def _amounts(target: dict[str, Any], node: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    for rest_field, graphql_field in fields.items():
        _money(target, rest_field, node.get(graphql_field))
    return target


def rest_refund(node: dict[str, Any]) -> dict[str, Any]:
    """A Refund node (ReconcileOrderRefunds) as a refund listed in an order's REST body."""
    return {
        "id": legacy_id(node.get("legacyResourceId") or node.get("id")),
        "created_at": node.get("createdAt"),
        "note": node.get("note"),
        "refund_line_items": [_amounts({
            "id": legacy_id(n.get("id")), "line_item_id": legacy_id((n.get("lineItem") or {}).get("id")),
            "quantity": n.get("quantity"), "restock_type": _lower(n.get("restockType"))},
            n, {"subtotal": "subtotalSet", "total_tax": "totalTaxSet"}) for n in _nodes(node.get("refundLineItems"))],
        "refund_shipping_lines": [_amounts({
            "id": legacy_id(n.get("id")), "shipping_line_id": legacy_id((n.get("shippingLine") or {}).get("id"))},
            n, {"subtotal_amount": "subtotalAmountSet", "tax_amount": "taxAmountSet"})
            for n in _nodes(node.get("refundShippingLines"))],
        "order_adjustments": [_amounts({
            "id": legacy_id(n.get("id")), "kind": "refund_discrepancy", "reason": _lower(n.get("reason"))},
            n, {"amount": "amountSet", "tax_amount": "taxAmountSet"}) for n in _nodes(node.get("orderAdjustments"))],
        "transactions": [_transaction(n) for n in _nodes(node.get("transactions"))],
    }


def _nodes(connection: Any) -> list[dict[str, Any]]:
    nodes = connection.get("nodes") if isinstance(connection, dict) else None
    return [n for n in nodes or () if isinstance(n, dict)]


def rest_order(node: dict[str, Any], more_line_items: Sequence[dict[str, Any]] = (),
               refunds: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The order webhook body (REST shape) of an Admin GraphQL Order node; `more_line_items`:
    LineItem nodes read after the node's first page of lines (ReconcileOrderLines); `refunds`:
    the order's Refund nodes (ReconcileOrderRefunds)."""
    name = node.get("name")
    default = _DEFAULT_NAME.match(name) if isinstance(name, str) else None
    body: dict[str, Any] = {
        "id": legacy_id(node.get("legacyResourceId") or node.get("id")),
        "admin_graphql_api_id": node.get("id"),
        "name": name,
        "order_number": int(default[1]) if default else None,
        "email": node.get("email"),
        "currency": node.get("currencyCode"),
        "presentment_currency": node.get("presentmentCurrencyCode"),
        "taxes_included": node.get("taxesIncluded"),
        "financial_status": _lower(node.get("displayFinancialStatus")),
        "test": node.get("test"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "processed_at": node.get("processedAt"),
        "cancelled_at": node.get("cancelledAt"),
        "cancel_reason": _lower(node.get("cancelReason")),
        "shipping_address": _address(node.get("shippingAddress")),
        "line_items": [rest_line_item(n) for n in [*_nodes(node.get("lineItems")), *more_line_items]],
        "shipping_lines": [_shipping_line(n) for n in _nodes(node.get("shippingLines"))],
        "transactions": [_transaction(t) for t in node.get("transactions") or () if isinstance(t, dict)],
        "refunds": [rest_refund(r) for r in refunds if isinstance(r, dict)],
    }
    for rest_field, graphql_field in ORDER_AMOUNTS.items():
        _money(body, rest_field, node.get(graphql_field))
    return body
