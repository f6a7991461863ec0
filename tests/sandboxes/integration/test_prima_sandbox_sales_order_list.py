"""The Prima sandbox's list of sales orders (GET /v1/sales-orders without external_reference):
every sales order created since a time, keyset paged, which the order reconciler's orphan watch
reads. Real PostgreSQL, a throwaway schema, the sandbox served over HTTP."""

from __future__ import annotations

from copy import deepcopy
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import httpx
import pytest

from sandboxes.prima.app import create_app

pytestmark = pytest.mark.integration

SCHEMA = f"prima_sandbox_list_{uuid4().hex[:8]}"
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ORDER = {
    "order_name": "#1001", "currency": "GBP", "taxes_included": True, "order_date": "2026-11-02T10:00:00Z",
    "customer_email": None,
    "lines": [{"line_number": 1, "item_id": "ITM-0003", "sku": "MUG-STONE", "description": "Stoneware mug",
               "quantity": 1, "unit_price": "12.50", "discount_amount": "0", "tax_amount": "2.08",
               "net_amount": "12.50"}],
    "shipping": None,
    "totals": {"lines_net": "12.50", "shipping_net": "0", "tax": "2.08", "total": "12.50"},
}


@pytest.fixture(scope="module")
async def client(serve_app, database_url):
    try:
        with serve_app(create_app(database_url, KEY, schema=SCHEMA), "the Prima sandbox") as url:
            async with httpx.AsyncClient(base_url=url, timeout=10, headers=AUTH) as http:
                assert (await http.post("/_sandbox/reset")).status_code == 200
                yield http
    finally:
        conn = await asyncpg.connect(database_url)
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.close()


async def create(client: httpx.AsyncClient, reference: str) -> dict:
    body = {**deepcopy(ORDER), "external_reference": reference}
    response = await client.post("/v1/sales-orders", json=body, headers={"Idempotency-Key": f"key-{reference}"})
    assert response.status_code == 201, response.text
    return response.json()


async def test_given_sales_orders_when_listed_by_page_then_each_comes_once_in_creation_order(client):
    before = datetime.now(UTC) - timedelta(seconds=1)
    made = [await create(client, f"list-{uuid4().hex[:6]}-{i}") for i in range(5)]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"created_since": before.isoformat(), "limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/sales-orders", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [o["sales_order_number"] for o in body["sales_orders"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [o["sales_order_number"] for o in made] and pages == 3


async def test_given_a_later_created_since_then_older_sales_orders_are_not_listed(client):
    old = await create(client, f"old-{uuid4().hex[:6]}")
    later = datetime.fromisoformat(old["created_at"]) + timedelta(microseconds=1)
    new = await create(client, f"new-{uuid4().hex[:6]}")
    body = (await client.get("/v1/sales-orders", params={"created_since": later.isoformat()})).json()
    numbers = [o["sales_order_number"] for o in body["sales_orders"]]
    assert new["sales_order_number"] in numbers and old["sales_order_number"] not in numbers


async def test_by_external_reference_it_answers_as_before_and_refuses_paging_with_it(client):
    made = await create(client, f"ref-{uuid4().hex[:6]}")
    found = (await client.get("/v1/sales-orders", params={"external_reference": made["external_reference"]})).json()
    assert found == {"sales_orders": [made]}
    refused = await client.get("/v1/sales-orders", params={"external_reference": made["external_reference"],
                                                            "cursor": "abc"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_cursor"
    bad = await client.get("/v1/sales-orders", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"
