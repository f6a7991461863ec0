"""The order reconciler's queries, without I/O: each document it sends stays under the 1000 points
a single Shopify query may cost with the page sizes it sends them with (computed by the Shopify
sandbox's calculator of Shopify's published cost rules), its search syntax, and the mapping of an
Admin GraphQL order to the REST shape the ingest normalizes (contracts/shopify/admin_orders.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from graphql import parse
from graphql.utilities import get_operation_ast

from contracts.shopify.admin_orders import legacy_id, rest_order
from contracts.shopify_admin import admin_schema, document
from sandboxes.shopify.cost import MAX_QUERY_COST, CostCalculator
from services.shopify import reconciler
from services.shopify.ingest import normalize


def requested_cost(name: str, variables: dict) -> int:
    calculator = CostCalculator(admin_schema(), {}, variables)
    cost = calculator.requested(get_operation_ast(parse(document(name))))
    assert calculator.errors == [] and calculator.input_errors == []
    return cost


@pytest.mark.parametrize("name,variables,expected", [
    ("ReconcileOrders", {"first": reconciler.PAGE_SIZE, "lines": reconciler.LINES_PER_PAGE, "query": "x"},
     reconciler.ORDERS_PAGE_COST),
    ("ReconcileOrderLines", {"id": "gid://shopify/Order/1", "first": reconciler.MORE_LINES_PAGE},
     reconciler.MORE_LINES_COST),
    ("ReconcileOrderRefunds", {"id": "gid://shopify/Order/1"}, reconciler.REFUNDS_COST),
    ("ReconcileOrdersCount", {"query": "x"}, reconciler.COUNT_COST),
    ("ReconcileOrderIds", {"first": reconciler.IDS_PER_QUERY, "query": "x"}, 2 + reconciler.IDS_PER_QUERY),
])
def test_each_reconciler_query_costs_what_the_reconciler_expects_and_less_than_shopifys_limit(name, variables,
                                                                                              expected):
    assert requested_cost(name, variables) == expected <= MAX_QUERY_COST


def test_one_more_order_a_page_would_cost_more_than_shopify_allows():
    variables = {"first": reconciler.PAGE_SIZE + 1, "lines": reconciler.LINES_PER_PAGE, "query": "x"}
    assert requested_cost("ReconcileOrders", variables) > MAX_QUERY_COST


def test_the_search_is_shopifys_syntax_to_the_second_in_utc():
    since = datetime(2026, 11, 2, 11, 45, 7, 900_000, tzinfo=timezone(timedelta(hours=1)))
    assert reconciler.updated_since_query(since) == "updated_at:>='2026-11-02T10:45:07Z'"
    assert reconciler.ids_query([1001, 1002]) == "id:1001 OR id:1002"


def money(amount: str, currency: str = "USD") -> dict:
    return {"shopMoney": {"amount": amount, "currencyCode": currency}}


def graphql_node() -> dict:
    """An Admin GraphQL Order as ReconcileOrders selects it (amounts as GraphQL writes them)."""
    return {
        "id": "gid://shopify/Order/820982911946154508", "legacyResourceId": "820982911946154508", "name": "#1001",
        "email": "jon@example.com", "currencyCode": "USD", "presentmentCurrencyCode": "USD", "taxesIncluded": False,
        "displayFinancialStatus": "PAID", "test": False, "createdAt": "2026-11-02T10:00:00Z",
        "updatedAt": "2026-11-02T10:05:00Z", "processedAt": "2026-11-02T10:00:00Z", "cancelledAt": None,
        "cancelReason": None, "shippingAddress": None,
        "subtotalPriceSet": money("20.0"), "totalDiscountsSet": money("0.0"), "totalTaxSet": money("1.6"),
        "totalPriceSet": money("26.6"), "currentSubtotalPriceSet": money("20.0"), "currentTotalTaxSet": money("1.6"),
        "currentTotalPriceSet": money("26.6"),
        "lineItems": {"pageInfo": {"hasNextPage": False, "endCursor": "x"}, "nodes": [{
            "id": "gid://shopify/LineItem/866550311766439020", "sku": "TEE-BLK-M", "title": "Tee", "quantity": 2,
            "currentQuantity": 2, "isGiftCard": False, "variant": {"legacyResourceId": "808950810"}, "product": None,
            "originalUnitPriceSet": money("10.0"), "discountAllocations": [],
            "taxLines": [{"title": "State Tax", "rate": 0.08, "priceSet": money("1.6")}]}]},
        "shippingLines": {"pageInfo": {"hasNextPage": False}, "nodes": [{
            "id": "gid://shopify/ShippingLine/1", "title": "Standard", "code": "STANDARD",
            "originalPriceSet": money("5.0"), "discountAllocations": [], "taxLines": []}]},
        "transactions": [{"id": "gid://shopify/OrderTransaction/2", "kind": "SALE", "status": "SUCCESS",
                          "gateway": "shopify_payments", "amountSet": money("26.6")}],
        "refunds": [],
    }


def test_a_graphql_order_is_the_rest_body_it_maps_to_and_normalizes_like_a_webhook():
    body = rest_order(graphql_node())
    assert (body["id"], body["order_number"], body["financial_status"]) == (820982911946154508, 1001, "paid")
    assert body["line_items"][0]["id"] == 866550311766439020 and body["line_items"][0]["variant_id"] == 808950810
    assert body["total_price_set"] == {"shop_money": {"amount": "26.6", "currency_code": "USD"}}
    order = normalize(json.dumps(body).encode())
    assert order.total_price.amount == Decimal("26.60") and order.line_items[0].tax_lines[0].amount.amount == Decimal("1.6")
    assert [(t.kind, t.status, t.gateway) for t in order.transactions] == [("sale", "success", "shopify_payments")]
    assert order.updated_at == datetime(2026, 11, 2, 10, 5, tzinfo=UTC)


def test_a_name_that_is_not_shopifys_default_gives_no_order_number_rather_than_a_guess():
    node = graphql_node() | {"name": "SHOP-1001"}
    assert rest_order(node)["order_number"] is None


def test_a_line_without_variant_and_product_is_a_custom_line_and_a_gift_card_stays_one():
    node = graphql_node()
    line = node["lineItems"]["nodes"][0]
    node["lineItems"]["nodes"] += [line | {"id": "gid://shopify/LineItem/2", "variant": None, "sku": None},
                                   line | {"id": "gid://shopify/LineItem/3", "isGiftCard": True, "taxLines": []}]
    node["subtotalPriceSet"] = node["currentSubtotalPriceSet"] = money("60.0")
    order = normalize(json.dumps(rest_order(node)).encode())
    assert [li.kind for li in order.line_items] == ["product", "custom", "gift_card"]


def test_a_gid_gives_its_number_and_anything_else_is_left_for_the_normalizer_to_refuse():
    assert legacy_id("gid://shopify/LineItem/42") == 42 and legacy_id("42") == 42
    assert legacy_id("gid://shopify/InventoryLevel/1?inventory_item_id=2") == 1
    assert legacy_id("not-an-id") == "not-an-id" and legacy_id(None) is None
