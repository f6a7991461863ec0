"""The Shopify sandbox's orders (sandboxes/shopify/order_queries.py): the shop holds the orders it
sent webhooks for and those created without any (lost webhooks), and serves Admin GraphQL's
`orders`, `ordersCount` and `order` over them in Shopify's shapes, with Shopify's search syntax,
sort keys, cursors, cost and throttle. In process (httpx.ASGITransport); the webhook side served
over HTTP to a stand-in receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from contracts.shopify_admin import document
from sandboxes.shopify.app import create_app
from sandboxes.shopify.orders import Line, Shipping, order_body

pytestmark = pytest.mark.integration

TOKEN = "orders-test-token"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
LIST = """query List($first: Int, $last: Int, $after: String, $before: String, $query: String, $reverse: Boolean,
                     $sortKey: OrderSortKeys) {
  orders(first: $first, last: $last, after: $after, before: $before, query: $query, reverse: $reverse,
         sortKey: $sortKey) {
    edges { cursor node { legacyResourceId updatedAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


def body(order_id: int, minutes: int, **kw: Any) -> dict[str, Any]:
    return order_body(order_id, [Line("TEE-BLK-M", "Tee", Decimal("10.00"), 2, Decimal("1.00"),
                                      [("VAT", Decimal("0.2"), Decimal("3.17"))])],
                      Shipping("Post", Decimal("4.00")), taxes_included=True, currency="GBP",
                      updated_at=T0 + timedelta(minutes=minutes), **kw)


class Shop:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.client.post("/admin/api/2026-07/graphql.json", json={"query": query,
                                          "variables": variables or {}}, headers={"X-Shopify-Access-Token": TOKEN})
        assert response.status_code == 200, response.text
        return response.json()

    async def ids(self, **variables: Any) -> tuple[list[int], dict[str, Any]]:
        result = await self.gql(LIST, variables)
        assert "errors" not in result, result
        page = result["data"]["orders"]
        return [int(e["node"]["legacyResourceId"]) for e in page["edges"]], page

    async def hold(self, *bodies: dict[str, Any]) -> httpx.Response:
        return await self.client.post("/_sandbox/orders", json={"orders": list(bodies)})


@pytest.fixture(scope="module")
async def app():
    return create_app("http://127.0.0.1:9/webhooks/shopify", "sandbox-secret", access_token=TOKEN, plan="plus")


@pytest.fixture
async def shop(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shopify.test") as client:
        assert (await client.post("/_sandbox/reset")).status_code == 200
        # ids deliberately not in updated_at order
        shop = Shop(client)
        response = await shop.hold(body(501, 30), body(502, 10), body(503, 20), body(504, 20), body(505, 40))
        assert response.status_code == 200, response.text
        yield shop


async def test_orders_sort_by_updated_at_then_id_and_search_updated_at_as_shopify_does(shop):
    ids, _ = await shop.ids(first=10, sortKey="UPDATED_AT")
    assert ids == [502, 503, 504, 501, 505]
    ids, _ = await shop.ids(first=10, sortKey="UPDATED_AT", query="updated_at:>='2026-11-02T10:20:00Z'")
    assert ids == [503, 504, 501, 505]  # >= includes the boundary
    ids, _ = await shop.ids(first=10, sortKey="UPDATED_AT", query="updated_at:>2026-11-02T10:20:00Z")
    assert ids == [501, 505]
    ids, _ = await shop.ids(first=10, sortKey="ID", query="updated_at:<'2026-11-02T10:20:00+00:00' OR id:505")
    assert ids == [502, 505]
    ids, _ = await shop.ids(first=10, sortKey="ID",
                            query="updated_at:>=2026-11-02 -id:503 financial_status:paid unknown_field:x")
    assert ids == [501, 502, 504, 505]
    ids, _ = await shop.ids(first=10)  # Shopify's default sort: PROCESSED_AT
    assert ids == [502, 503, 504, 501, 505]


async def test_pages_follow_cursors_forwards_and_backwards_and_reversed(shop):
    seen, after, pages = [], None, 0
    while True:
        ids, page = await shop.ids(first=2, after=after, sortKey="UPDATED_AT")
        seen += ids
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [502, 503, 504, 501, 505] and pages == 3
    ids, page = await shop.ids(last=2, sortKey="UPDATED_AT")
    assert ids == [501, 505] and page["pageInfo"]["hasPreviousPage"]
    ids, _ = await shop.ids(last=2, before=page["pageInfo"]["startCursor"], sortKey="UPDATED_AT")
    assert ids == [503, 504]
    ids, page = await shop.ids(first=2, sortKey="UPDATED_AT", reverse=True)
    assert ids == [505, 501]
    ids, _ = await shop.ids(first=2, after=page["pageInfo"]["endCursor"], sortKey="UPDATED_AT", reverse=True)
    assert ids == [504, 503]


async def test_an_order_changed_meanwhile_moves_behind_the_cursor_and_is_read_again(shop):
    ids, page = await shop.ids(first=2, sortKey="UPDATED_AT")
    assert ids == [502, 503]
    changed = body(502, 50)  # a later change of an order already read
    assert (await shop.hold(changed)).status_code == 200
    rest, _ = await shop.ids(first=10, after=page["pageInfo"]["endCursor"], sortKey="UPDATED_AT")
    assert rest == [504, 501, 505, 502]


async def test_the_shop_keeps_the_latest_change_of_an_order(shop):
    older = body(501, 5, financial_status="pending")
    assert (await shop.hold(older)).json()["orders"][0]["updated_at"] == "2026-11-02T10:30:00Z"
    listed = {o["id"]: o for o in (await shop.client.get("/_sandbox/orders")).json()}
    assert listed[501]["financial_status"] == "paid"


async def test_orders_count_and_order_by_id(shop):
    result = await shop.gql(document("ReconcileOrdersCount"), {"query": "updated_at:>='2026-11-02T10:20:00Z'"})
    assert result["data"]["ordersCount"] == {"count": 4, "precision": "EXACT"}
    capped = await shop.gql("{ ordersCount(limit: 2) { count precision } }")
    assert capped["data"]["ordersCount"] == {"count": 2, "precision": "AT_LEAST"}
    found = await shop.gql('{ a: order(id: "gid://shopify/Order/503") { name displayFinancialStatus updatedAt '
                           'totalPriceSet { shopMoney { amount currencyCode } } } '
                           'b: order(id: "gid://shopify/Order/999") { name } }')
    assert found["data"]["a"] == {"name": "#503", "displayFinancialStatus": "PAID", "updatedAt": "2026-11-02T10:20:00Z",
                                  "totalPriceSet": {"shopMoney": {"amount": "23.0", "currencyCode": "GBP"}}}
    assert found["data"]["b"] is None


async def test_an_order_is_served_in_shopifys_shape_with_its_cost(shop):
    result = await shop.gql(document("ReconcileOrders"), {"first": 5, "lines": 10, "query": "id:501"})
    cost = result["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 897 and 0 < cost["actualQueryCost"] < 897
    (node,) = result["data"]["orders"]["nodes"]
    line = node["lineItems"]["nodes"][0]
    assert node["id"] == "gid://shopify/Order/501" and node["currencyCode"] == "GBP" and node["taxesIncluded"] is True
    assert line["id"] == "gid://shopify/LineItem/50101" and line["currentQuantity"] == 2
    assert line["originalUnitPriceSet"] == {"shopMoney": {"amount": "10.0", "currencyCode": "GBP"}}
    assert line["discountAllocations"] == [{"allocatedAmountSet": {"shopMoney": {"amount": "1.0", "currencyCode": "GBP"}}}]
    assert line["taxLines"] == [{"title": "VAT", "rate": 0.2, "priceSet": {"shopMoney": {"amount": "3.17",
                                                                                         "currencyCode": "GBP"}}}]
    assert node["shippingLines"]["nodes"][0]["originalPriceSet"]["shopMoney"]["amount"] == "4.0"


async def test_a_field_the_sandbox_does_not_serve_or_a_bad_argument_is_an_error_never_a_null(shop):
    result = await shop.gql("{ orders(first: 1) { nodes { note } } }")
    assert "Order.note is not served by the Shopify sandbox" in result["errors"][0]["message"]
    result = await shop.gql("{ orders(first: 1, sortKey: TOTAL_PRICE) { nodes { id } } }")
    assert "sortKey TOTAL_PRICE is not served" in result["errors"][0]["message"]
    result = await shop.gql('{ orders(first: 1, after: "bm90LWEtY3Vyc29y") { nodes { id } } }')
    assert result["errors"][0]["message"] == "Invalid cursor for current pagination sort."
    result = await shop.gql('{ orders(first: 1, query: "updated_at:>=yesterday-ish") { nodes { id } } }')
    assert "Invalid search value" in result["errors"][0]["message"]
    assert "you must provide one of first or last" in (await shop.gql("{ orders { nodes { id } } }"))["errors"][0][
        "message"]


async def test_orders_queries_are_throttled_like_the_rest(shop):
    assert (await shop.client.post("/_sandbox/faults", json={"drain_bucket": True})).status_code == 200
    result = await shop.gql(document("ReconcileOrders"), {"first": 5, "lines": 10, "query": "id:501"})
    assert result["errors"][0]["extensions"]["code"] == "THROTTLED" and "data" not in result
    assert result["extensions"]["cost"]["actualQueryCost"] is None


async def test_the_controls_refuse_what_is_not_an_order_and_delete_and_reset_orders(shop):
    bad = await shop.hold(body(701, 1), {"id": "x"})
    assert bad.status_code == 422 and "positive integer id" in bad.json()["detail"]
    no_time = await shop.hold({"id": 702, "line_items": [], "currency": "GBP"})
    assert no_time.status_code == 422 and "ISO 8601" in no_time.json()["detail"]
    assert 701 not in {o["id"] for o in (await shop.client.get("/_sandbox/orders")).json()}  # nothing held
    assert (await shop.client.delete("/_sandbox/orders/503")).json() == {"deleted": 503}
    assert (await shop.client.delete("/_sandbox/orders/503")).status_code == 404
    ids, _ = await shop.ids(first=10)
    assert 503 not in ids
    assert (await shop.client.post("/_sandbox/reset")).status_code == 200
    assert (await shop.client.get("/_sandbox/orders")).json() == []


async def test_an_order_the_sandbox_sends_a_webhook_for_is_an_order_the_shop_holds(serve_app):
    received: list[str] = []
    receiver = FastAPI()

    @receiver.post("/webhooks/shopify")
    async def take(request: Request):
        received.append(request.headers["x-shopify-topic"])
        return {"status": "accepted"}

    with serve_app(receiver, "a webhook receiver") as ingest:
        app = create_app(f"{ingest}/webhooks/shopify", "sandbox-secret", access_token=TOKEN)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shopify.test") as client:
            shop = Shop(client)
            sent = await client.post("/_sandbox/webhooks", json={"topic": "orders/paid", "order": body(601, 1)})
            refund = await client.post("/_sandbox/webhooks", json={"topic": "refunds/create",
                                                                   "order": {"id": 9, "order_id": 601}})
            assert sent.json()["statuses"] == [200] and refund.json()["statuses"] == [200]
            assert received == ["orders/paid", "refunds/create"]
            ids, _ = await shop.ids(first=10)
            assert ids == [601]  # the refund body is not an order
