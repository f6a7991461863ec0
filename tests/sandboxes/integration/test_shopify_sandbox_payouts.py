"""The Shopify sandbox's Shopify Payments (sandboxes/shopify/payouts.py), in process: payouts and
balance transactions seeded from Shopify's own REST samples, served through the integration's
Payouts and PayoutBalanceTransactions documents in Shopify's GraphQL shapes, paged by cursor,
searched, and charged against the cost bucket like every query."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.shopify_admin import document

pytestmark = pytest.mark.integration

TOKEN = "test-token"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "shopify"


def sample() -> dict[str, Any]:
    return {"payout": json.loads((FIXTURES / "payout.json").read_text())["payout"],
            "transactions": json.loads((FIXTURES / "payouts_transactions.json").read_text())["transactions"]}


@pytest.fixture
async def shop():
    from sandboxes.shopify.app import create_app

    app = create_app("http://127.0.0.1:9/webhooks/shopify", "sandbox-secret", access_token=TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shopify.test") as client:
        yield client


async def gql(client: httpx.AsyncClient, name: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/admin/api/2026-07/graphql.json", headers={"X-Shopify-Access-Token": TOKEN},
                                 json={"query": document(name), "variables": variables})
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_shared_sample_is_served_in_shopifys_graphql_shapes(shop):
    seeded = await shop.post("/_sandbox/payouts", json={"payouts": [sample()]})
    assert seeded.status_code == 200, seeded.text
    assert seeded.json()["payouts"][0] == {"id": 623721858, "gid": "gid://shopify/ShopifyPaymentsPayout/623721858",
                                           "status": "PAID", "issued_at": "2019-11-12T00:00:00Z", "currency": "USD",
                                           "net": "41.90", "transactions": 25}

    body = await gql(shop, "Payouts", {"first": 50, "query": "issued_at:>=2019-11-01"})
    account = body["data"]["shopifyPaymentsAccount"]
    [payout] = account["payouts"]["nodes"]
    assert payout["legacyResourceId"] == "623721858" and payout["status"] == "PAID"
    assert payout["net"] == {"amount": "41.90", "currencyCode": "USD"}
    assert payout["summary"]["chargesGross"] == {"amount": "44.52", "currencyCode": "USD"}
    assert payout["summary"]["refundsFee"] == {"amount": "-0.23", "currencyCode": "USD"}
    assert body["extensions"]["cost"]["requestedQueryCost"] == 753  # 1 + 2 + 50 x 15, as the document says

    body = await gql(shop, "PayoutBalanceTransactions", {"first": 160, "query": "payments_transfer_id:623721858"})
    assert body["extensions"]["cost"]["requestedQueryCost"] == 963
    nodes = body["data"]["shopifyPaymentsAccount"]["balanceTransactions"]["nodes"]
    assert len(nodes) == 25
    by_id = {n["id"].rsplit("/", 1)[1]: n for n in nodes}
    refund = by_id["1006917261"]
    assert refund["type"] == "REFUND" and refund["sourceType"] == "REFUND"
    assert refund["amount"] == {"amount": "-3.45", "currencyCode": "USD"}
    assert refund["sourceOrderTransactionId"] == "1006917261"  # BigInt: a string, as Shopify sends it
    assert refund["associatedOrder"] == {"id": "gid://shopify/Order/217130470", "name": "#217130470"}
    assert by_id["726130462"]["type"] == "DISPUTE_WITHDRAWAL"  # REST "dispute", money taken out
    assert by_id["400852343"]["type"] == "RESERVED_FUNDS_WITHDRAWAL"
    assert by_id["250467535"]["type"] == "RESERVED_FUNDS_REVERSAL"
    assert by_id["854848137"]["type"] == "TRANSFER" and by_id["854848137"]["sourceId"] == "623721858"
    assert by_id["758509248"]["net"] == {"amount": "-1.75", "currencyCode": "USD"}  # as given, though it does not add up
    assert by_id["77412310"]["associatedOrder"] is None
    assert by_id["77412310"]["associatedPayout"] == {"id": "gid://shopify/ShopifyPaymentsPayout/623721858",
                                                     "status": "PAID"}


async def test_transactions_page_by_cursor_and_search_by_payout(shop):
    many = {"payout": {"id": 9001, "status": "in_transit", "date": "2026-11-02", "currency": "GBP", "amount": "350.00"},
            "transactions": [{"id": 50_000 + n, "type": "CHARGE", "amount": "1.00", "fee": "0.00", "net": "1.00",
                              "source_order_id": 7000 + n, "processed_at": "2026-11-01T10:00:00Z"}
                             for n in range(350)]}
    other = {"payout": {"id": 9002, "status": "paid", "date": "2026-10-01", "currency": "GBP", "amount": "1.00"},
             "transactions": [{"id": 60_000, "type": "charge", "amount": "1.00"}]}
    assert (await shop.post("/_sandbox/payouts", json={"payouts": [many, other]})).status_code == 200
    # three pages of 963 points: more than a standard plan's bucket of 2000 holds at once
    assert (await shop.post("/_sandbox/plan", json={"plan": "plus"})).status_code == 200

    seen, after, pages = [], None, 0
    while True:
        body = await gql(shop, "PayoutBalanceTransactions",
                         {"first": 160, "after": after, "query": "payments_transfer_id:9001"})
        connection = body["data"]["shopifyPaymentsAccount"]["balanceTransactions"]
        seen += [n["id"] for n in connection["nodes"]]
        pages += 1
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert pages == 3 and len(seen) == 350 == len(set(seen))
    assert all(n.endswith(str(50_000 + i)) for i, n in enumerate(seen))

    recent = await gql(shop, "Payouts", {"first": 50, "query": "issued_at:>=2026-11-01"})
    assert [p["legacyResourceId"] for p in recent["data"]["shopifyPaymentsAccount"]["payouts"]["nodes"]] == ["9001"]
    paid = await gql(shop, "Payouts", {"first": 50, "query": "status:paid"})
    assert [p["legacyResourceId"] for p in paid["data"]["shopifyPaymentsAccount"]["payouts"]["nodes"]] == ["9002"]
    one = await gql(shop, "Payouts", {"first": 50, "query": "id:9001"})
    assert one["data"]["shopifyPaymentsAccount"]["payouts"]["nodes"][0]["status"] == "IN_TRANSIT"

    # a payout moves on (paid, then failed): the next read says so
    assert (await shop.post("/_sandbox/payouts/9001/status", json={"status": "failed"})).json()["status"] == "FAILED"
    again = await gql(shop, "Payouts", {"first": 50, "query": "id:9001"})
    assert again["data"]["shopifyPaymentsAccount"]["payouts"]["nodes"][0]["status"] == "FAILED"


async def test_payout_queries_are_charged_and_throttled_like_every_query(shop):
    assert (await shop.post("/_sandbox/payouts", json={"payouts": [sample()]})).status_code == 200
    await shop.post("/_sandbox/faults", json={"drain_bucket": True})
    body = await gql(shop, "PayoutBalanceTransactions", {"first": 160, "query": "payments_transfer_id:623721858"})
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED" and "data" not in body
    too_big = await gql(shop, "PayoutBalanceTransactions", {"first": 250, "query": "payments_transfer_id:1"})
    assert too_big["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


async def test_a_seed_that_is_not_a_payout_is_refused_whole(shop):
    bad_type = sample()
    bad_type["transactions"][3]["type"] = "gift"
    answer = await shop.post("/_sandbox/payouts", json={"payouts": [bad_type]})
    assert answer.status_code == 422 and "'gift'" in answer.json()["detail"]
    bad_status = {"payout": {"id": 1, "status": "lost", "date": "2026-11-01", "amount": "1.00"}, "transactions": []}
    assert (await shop.post("/_sandbox/payouts", json={"payouts": [sample(), bad_status]})).status_code == 422
    assert (await shop.get("/_sandbox/payouts")).json() == []  # nothing of either was added
    assert (await shop.post("/_sandbox/payouts", json={"payouts": []})).status_code == 422
    assert (await shop.post("/_sandbox/payouts/5/status", json={"status": "paid"})).status_code == 404

    assert (await shop.post("/_sandbox/payouts", json={"payouts": [sample()]})).status_code == 200
    assert (await shop.post("/_sandbox/reset")).status_code == 200
    assert (await shop.get("/_sandbox/payouts")).json() == []
