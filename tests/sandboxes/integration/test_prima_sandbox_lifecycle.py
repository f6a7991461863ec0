"""The Prima sandbox's sales-order lifecycle (sandboxes/prima/lifecycle.py, as
contracts/prima/openapi.yaml documents it): statuses moved by the warehouse control, amendments
and cancellations that stop at the cut-off, credit memos one per external reference; each
idempotent by Idempotency-Key, and a refused request changes nothing. Real PostgreSQL, a
throwaway schema, the sandbox served over HTTP."""

from __future__ import annotations

from copy import deepcopy
from uuid import uuid4

import asyncpg
import httpx
import pytest

from sandboxes.prima.app import create_app

pytestmark = pytest.mark.integration

SCHEMA = f"prima_sandbox_lifecycle_{uuid4().hex[:8]}"
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MUG = {"line_number": 1, "item_id": "ITM-MUG", "sku": "MUG", "description": "Mug", "quantity": 2,
       "unit_price": "12.50", "discount_amount": "0.00", "tax_amount": "4.17", "net_amount": "25.00"}
ORDER = {
    "order_name": "#1001", "currency": "GBP", "taxes_included": True, "order_date": "2026-11-02T10:00:00Z",
    "customer_email": None, "lines": [MUG], "shipping": None,
    "totals": {"lines_net": "25.00", "shipping_net": "0.00", "tax": "4.17", "total": "25.00"},
}


@pytest.fixture(scope="module")
async def client(serve_app, database_url):
    try:
        with serve_app(create_app(database_url, KEY, schema=SCHEMA), "the Prima sandbox") as url:
            async with httpx.AsyncClient(base_url=url, timeout=10, headers=AUTH) as http:
                assert (await http.post("/_sandbox/reset")).status_code == 200
                (await http.put("/_sandbox/items", json={"items": [
                    {"item_id": "ITM-MUG", "sku": "MUG", "description": "Mug", "item_type": "stock"}]})
                 ).raise_for_status()
                yield http
    finally:
        conn = await asyncpg.connect(database_url)
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.close()


async def sales_order(client: httpx.AsyncClient) -> tuple[str, str]:
    """(its number, its external reference)"""
    reference = str(uuid4().int % 10**12)
    response = await client.post("/v1/sales-orders", json={**deepcopy(ORDER), "external_reference": reference},
                                 headers={"Idempotency-Key": f"create-{reference}"})
    assert response.status_code == 201, response.text
    return response.json()["sales_order_number"], reference


async def current(client: httpx.AsyncClient, number: str) -> dict:
    response = await client.get(f"/v1/sales-orders/{number}")
    response.raise_for_status()
    return response.json()


def one_mug(reference: str) -> dict:
    return {**deepcopy(ORDER), "external_reference": reference,
            "lines": [{**MUG, "quantity": 1, "tax_amount": "2.08", "net_amount": "12.50"}],
            "totals": {"lines_net": "12.50", "shipping_net": "0.00", "tax": "2.08", "total": "12.50"}}


def memo(number: str, reference: str, amount: str = "12.50") -> dict:
    return {"sales_order_number": number, "external_reference": reference, "currency": "GBP", "taxes_included": True,
            "memo_date": "2026-11-03T10:00:00Z",
            "lines": [{"line_number": 1, "item_id": "ITM-MUG", "sku": "MUG", "description": "Mug", "quantity": 1,
                       "amount": amount, "tax_amount": "2.08", "restock_type": "return", "returned": True}],
            "totals": {"lines": amount, "shipping": "0.00", "adjustments": "0.00", "tax": "2.08", "total": amount}}


async def test_given_an_open_sales_order_when_amended_twice_with_one_key_then_it_changes_once(client):
    number, reference = await sales_order(client)
    body = {"sales_order": one_mug(reference), "amendable_statuses": ["open"], "changes": ["Mug: quantity 2 -> 1"]}

    first = await client.post(f"/v1/sales-orders/{number}/amendments", json=body, headers={"Idempotency-Key": "a1"})
    again = await client.post(f"/v1/sales-orders/{number}/amendments", json=body, headers={"Idempotency-Key": "a1"})

    assert first.status_code == 200, first.text
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    held = await current(client, number)
    assert [line["quantity"] for line in held["lines"]] == [1] and held["totals"]["total"] == "12.50"


async def test_given_a_sales_order_being_picked_when_amended_or_cancelled_then_409_and_nothing_changes(client):
    number, reference = await sales_order(client)
    moved = await client.post(f"/_sandbox/sales-orders/{number}/status", json={"status": "picking"})
    assert moved.status_code == 200 and moved.json()["status"] == "picking"

    amend = await client.post(f"/v1/sales-orders/{number}/amendments", headers={"Idempotency-Key": "a2"},
                              json={"sales_order": one_mug(reference), "amendable_statuses": ["open", "released_to_warehouse"]})
    cancel = await client.post(f"/v1/sales-orders/{number}/cancellation", headers={"Idempotency-Key": "c2"},
                               json={"reason": "customer", "cancellable_statuses": ["open"]})

    assert (amend.status_code, amend.json()["error"]["code"]) == (409, "status_conflict")
    assert (cancel.status_code, cancel.json()["error"]["code"]) == (409, "status_conflict")
    held = await current(client, number)
    assert (held["status"], held["totals"]["total"], held["lines"][0]["quantity"]) == ("picking", "25.00", 2)


async def test_given_an_open_sales_order_when_cancelled_then_cancelled_and_a_repeat_answers_the_same(client):
    number, _ = await sales_order(client)
    body = {"reason": "customer", "cancellable_statuses": ["open"]}

    first = await client.post(f"/v1/sales-orders/{number}/cancellation", json=body, headers={"Idempotency-Key": "c3"})
    again = await client.post(f"/v1/sales-orders/{number}/cancellation", json=body, headers={"Idempotency-Key": "c3"})

    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    assert (await current(client, number))["status"] == "cancelled"


async def test_credit_memos_one_per_external_reference_and_refused_when_they_do_not_add_up(client):
    number, _ = await sales_order(client)
    reference = str(uuid4().int % 10**9)

    created = await client.post("/v1/credit-memos", json=memo(number, reference), headers={"Idempotency-Key": "m1"})
    replayed = await client.post("/v1/credit-memos", json=memo(number, reference), headers={"Idempotency-Key": "m1"})
    other_key = await client.post("/v1/credit-memos", json=memo(number, reference), headers={"Idempotency-Key": "m2"})
    wrong = memo(number, str(uuid4().int % 10**9))
    wrong["totals"]["total"] = "12.49"
    mismatch = await client.post("/v1/credit-memos", json=wrong, headers={"Idempotency-Key": "m3"})
    unknown = await client.post("/v1/credit-memos", json=memo("SO-999999", "77"), headers={"Idempotency-Key": "m4"})

    assert created.status_code == 201, created.text
    assert replayed.json()["credit_memo_number"] == created.json()["credit_memo_number"]
    assert (other_key.status_code, other_key.json()["error"]["code"]) == (409, "duplicate_external_reference")
    assert (mismatch.status_code, mismatch.json()["error"]["code"]) == (422, "totals_mismatch")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (422, "unknown_sales_order")
    found = (await client.get("/v1/credit-memos", params={"sales_order_number": number})).json()["credit_memos"]
    assert [(m["external_reference"], m["totals"]["total"]) for m in found] == [(reference, "12.50")]
