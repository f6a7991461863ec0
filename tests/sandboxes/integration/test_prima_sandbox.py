"""The Prima sandbox against real PostgreSQL, served by uvicorn on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import time
from copy import deepcopy
from datetime import datetime
from pathlib import Path
from uuid import uuid4

import asyncpg
import httpx
import pytest
import yaml

from sandboxes.prima.app import create_app

PRIMA_OPENAPI = Path(__file__).resolve().parents[3] / "contracts" / "prima" / "openapi.yaml"

pytestmark = pytest.mark.integration

DATABASE_URL = os.environ.get("SHOPIFY_PRIMA_DATABASE_URL",
                              "postgresql://shopify_prima:shopify_prima@127.0.0.1:55432/shopify_prima")
SCHEMA = f"prima_sandbox_test_{uuid4().hex[:8]}"  # a throwaway schema: the stack's sandbox keeps its own
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}

ORDER = {
    "external_reference": "gid://shopify/Order/5550001",
    "order_name": "#1001",
    "currency": "GBP",
    "taxes_included": True,
    "order_date": "2024-05-01T10:00:00Z",
    "customer_email": "buyer@example.com",
    "lines": [
        {"line_number": 1, "item_id": "ITM-0001", "sku": "TEE-BLK-M", "description": "Organic tee, black, M",
         "quantity": 2, "unit_price": "20.00", "discount_amount": "4.00", "tax_amount": "6.00",
         "net_amount": "36.00"},
        {"line_number": 2, "item_id": "ITM-0003", "sku": "MUG-STONE", "description": "Stoneware mug",
         "quantity": 1, "unit_price": "12.50", "discount_amount": "0", "tax_amount": "2.08",
         "net_amount": "12.50"},
    ],
    "shipping": {"description": "Standard", "amount": "4.95", "discount_amount": "0", "tax_amount": "0.83"},
    "totals": {"lines_net": "48.50", "shipping_net": "4.95", "tax": "8.91", "total": "53.45"},
}


def order(**changes) -> dict:
    body = deepcopy(ORDER)
    body.update(changes)
    return body


async def _wait_for_postgres(deadline_s: float = 60) -> None:
    start = time.monotonic()
    while True:
        try:
            await (await asyncpg.connect(DATABASE_URL)).close()
            return
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() - start > deadline_s:
                raise
            await asyncio.sleep(1)


@pytest.fixture(scope="session")
async def base_url(serve_app):
    await _wait_for_postgres()
    conn = await asyncpg.connect(DATABASE_URL)
    await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    await conn.close()
    try:
        with serve_app(create_app(DATABASE_URL, KEY, schema=SCHEMA), "the sandbox") as url:
            yield url
    finally:
        conn = await asyncpg.connect(DATABASE_URL)
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.close()


@pytest.fixture
async def client(base_url):
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as c:
        assert (await c.post("/_sandbox/reset", params={"items": "true", "stock": "true"})).status_code == 200
        yield c


@pytest.fixture
async def db(base_url):
    conn = await asyncpg.connect(DATABASE_URL, server_settings={"search_path": SCHEMA})
    yield conn
    await conn.close()


async def create(client: httpx.AsyncClient, body: dict, key: str = "cmd-1") -> httpx.Response:
    return await client.post("/v1/sales-orders", json=body, headers={**AUTH, "Idempotency-Key": key})


async def sales_order_count(db) -> int:
    return await db.fetchval("SELECT count(*) FROM sales_orders")


async def test_v1_requires_the_api_key(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        r = await client.get("/v1/items", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await client.post("/v1/sales-orders", json=ORDER, headers={"Idempotency-Key": "k"})
    assert r.status_code == 401
    assert (await client.get("/v1/health")).json() == {"status": "ok"}
    assert (await client.get("/health")).json() == {"status": "ok"}


async def test_create_sales_order(client, db):
    r = await create(client, ORDER)
    assert r.status_code == 201
    so = r.json()
    assert so["sales_order_number"] == "SO-000001"
    assert r.headers["Location"] == "/v1/sales-orders/SO-000001"
    assert so["status"] == "open" and so["released_at"] is None
    # money comes back as the same decimal strings; each line with its documented defaults (an item line)
    defaults = {"kind": "item", "account": None, "external_line_id": None, "bundle": None}
    assert {k: so[k] for k in ORDER} == {**ORDER, "lines": [{**line, **defaults} for line in ORDER["lines"]]}
    assert so["version"] == 1 and so["cancelled_at"] is None and so["ship_to"] is None
    assert (await client.get("/v1/sales-orders/SO-000001", headers=AUTH)).json() == so
    found = await client.get("/v1/sales-orders", params={"external_reference": ORDER["external_reference"]},
                             headers=AUTH)
    assert found.json() == {"sales_orders": [so]}
    assert (await client.get("/v1/sales-orders/SO-999999", headers=AUTH)).json()["error"]["code"] == "not_found"

    second = await create(client, order(external_reference="gid://shopify/Order/5550002"), key="cmd-2")
    assert second.json()["sales_order_number"] == "SO-000002"
    assert await sales_order_count(db) == 2


async def test_same_key_replays_the_same_sales_order(client, db):
    first = await create(client, ORDER)
    again = await create(client, ORDER)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.json() == first.json()
    assert await sales_order_count(db) == 1
    stats = (await client.get("/_sandbox/stats")).json()
    assert stats["sales_orders"] == 1 and stats["idempotent_replays"] == 1
    assert stats["requests"]["POST /v1/sales-orders"] == {"201": 1, "200": 1}


async def test_concurrent_requests_with_one_key_make_one_sales_order(client, db):
    responses = await asyncio.gather(*(create(client, ORDER, key="same-key") for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert {r.json()["sales_order_number"] for r in responses} == {"SO-000001"}
    assert await sales_order_count(db) == 1
    assert await db.fetchval("SELECT replays FROM idempotency_keys WHERE key = 'same-key'") == 9


async def test_idempotency_key_is_required_and_bounded(client, db):
    r = await client.post("/v1/sales-orders", json=ORDER, headers=AUTH)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "idempotency_key_missing")
    r = await create(client, ORDER, key="k" * 129)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "idempotency_key_invalid")
    assert await sales_order_count(db) == 0


async def test_key_reused_with_a_different_body_is_409(client, db):
    assert (await create(client, ORDER)).status_code == 201
    r = await create(client, order(customer_email="other@example.com"))
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "idempotency_key_reused"
    assert await sales_order_count(db) == 1


async def test_duplicate_external_reference_under_another_key_is_409(client, db):
    assert (await create(client, ORDER, key="a")).status_code == 201
    r = await create(client, ORDER, key="b")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "duplicate_external_reference"
    assert "SO-000001" in r.json()["error"]["message"]
    assert await sales_order_count(db) == 1


@pytest.mark.parametrize("item_id, sku, why", [
    ("ITM-9999", "NOPE", "unknown"),
    ("ITM-0005", "CAP-RETIRED", "inactive"),
])
async def test_unknown_or_inactive_item_is_422_and_does_not_use_the_key(client, db, item_id, sku, why):
    bad = order()
    bad["lines"][1].update(item_id=item_id, sku=sku)
    r = await create(client, bad)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "unknown_item"
    assert item_id in error["message"] and why in error["message"] and "line 2" in error["message"]
    assert await sales_order_count(db) == 0
    assert (await create(client, ORDER)).status_code == 201  # a failed request left its key unused


@pytest.mark.parametrize("change", [
    {"totals": {"lines_net": "48.49", "shipping_net": "4.95", "tax": "8.91", "total": "53.44"}},
    {"totals": {"lines_net": "48.50", "shipping_net": "4.95", "tax": "8.90", "total": "53.45"}},
    {"totals": {"lines_net": "48.50", "shipping_net": "4.95", "tax": "8.91", "total": "53.46"}},
    {"taxes_included": False},  # then the total must include the tax
    {"shipping": None},
])
async def test_totals_that_do_not_add_up_are_422(client, db, change):
    r = await create(client, order(**change))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "totals_mismatch"
    assert await sales_order_count(db) == 0


async def test_totals_exclusive_of_tax_and_without_shipping(client):
    body = order(taxes_included=False, shipping=None,
                 totals={"lines_net": "48.5", "shipping_net": "0.00", "tax": "8.08", "total": "56.58"})
    assert (await create(client, body)).status_code == 201


async def test_money_must_be_decimal_strings(client, db):
    bad = order()
    bad["lines"][0]["unit_price"] = 20.0
    r = await create(client, bad)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error")
    assert "unit_price" in r.json()["error"]["message"]
    assert await sales_order_count(db) == 0


async def test_injected_errors_do_nothing_and_a_retry_with_the_same_key_succeeds(client, db):
    faults = (await client.post("/_sandbox/faults", json={"fail_next": 2, "fail_status": 503})).json()
    assert faults["faults"]["fail_next"] == 2
    first, second, third = [await create(client, ORDER) for _ in range(3)]
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 201]
    assert first.json()["error"]["code"] == "injected_fault"
    assert await sales_order_count(db) == 1
    state = (await client.get("/_sandbox/faults")).json()
    assert state["counters"]["failures"] == 2 and state["faults"]["fail_next"] == 0
    # faults match only their method and path prefix
    await client.post("/_sandbox/faults", json={"fail_next": 1})
    assert (await client.get("/v1/items", headers=AUTH)).status_code == 200
    assert (await client.delete("/_sandbox/faults")).json()["faults"]["fail_next"] == 0
    assert (await create(client, ORDER)).status_code == 200


async def test_injected_timeout_then_retry_gives_one_sales_order(client, db):
    await client.post("/_sandbox/faults", json={"timeout_next": 1, "timeout_seconds": 1.0})
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/v1/sales-orders", json=ORDER, headers={**AUTH, "Idempotency-Key": "slow"},
                          timeout=0.3)
    retry = await create(client, ORDER, key="slow")
    assert retry.status_code == 201
    await asyncio.sleep(1.0)  # the abandoned request has finished by now, and did nothing
    assert await sales_order_count(db) == 1
    stats = (await client.get("/_sandbox/stats")).json()
    assert stats["idempotent_replays"] == 0
    assert stats["requests"]["POST /v1/sales-orders"] == {"504": 1, "201": 1}
    assert (await client.get("/_sandbox/faults")).json()["counters"]["timeouts"] == 1


async def test_commit_then_timeout_creates_the_sales_order_and_answers_after_the_client_gave_up(client, db):
    """Unlike timeout_next, the request is done: Prima committed, only the answer is late."""
    await client.post("/_sandbox/faults", json={"commit_then_timeout_next": 1, "commit_then_delay_seconds": 1.0})
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/v1/sales-orders", json=ORDER, headers={**AUTH, "Idempotency-Key": "late"}, timeout=0.3)
    assert await sales_order_count(db) == 1  # committed although the client heard nothing

    retry = await create(client, ORDER, key="late")  # the same key: the same sales order, answered now
    assert (retry.status_code, retry.headers["Idempotent-Replayed"]) == (200, "true")
    other_key = await create(client, ORDER, key="another")
    assert (other_key.status_code, other_key.json()["error"]["code"]) == (409, "duplicate_external_reference")
    assert retry.json()["sales_order_number"] in other_key.json()["error"]["message"]
    await asyncio.sleep(1.0)  # the held answer went out (to nobody) by now; nothing more was made
    assert await sales_order_count(db) == 1
    state = (await client.get("/_sandbox/faults")).json()
    assert state["counters"]["commit_then_timeouts"] == 1 and state["faults"]["commit_then_timeout_next"] == 0


async def test_commit_then_drop_creates_the_sales_order_and_closes_the_connection(client, db):
    await client.post("/_sandbox/faults", json={"commit_then_drop_next": 1})
    with pytest.raises(httpx.RemoteProtocolError):  # the status line came, the body never did
        await create(client, ORDER, key="dropped")
    assert await sales_order_count(db) == 1
    retry = await create(client, ORDER, key="dropped")
    assert (retry.status_code, retry.headers["Idempotent-Replayed"]) == (200, "true")
    assert (await client.get("/_sandbox/faults")).json()["counters"]["commit_then_drops"] == 1


async def test_faults_before_the_work_come_before_those_after_it(client, db):
    await client.post("/_sandbox/faults", json={"fail_next": 1, "fail_status": 503, "commit_then_drop_next": 1})
    assert (await create(client, ORDER)).status_code == 503  # nothing done
    assert await sales_order_count(db) == 0
    with pytest.raises(httpx.RemoteProtocolError):
        await create(client, ORDER)  # done, never answered
    assert (await create(client, ORDER)).status_code == 200  # no fault left: the replay
    assert await sales_order_count(db) == 1


async def test_latency_applies_to_matching_requests(client):
    await client.post("/_sandbox/faults", json={"latency_ms": 300, "path_prefix": "/v1/items", "method": None})
    started = time.monotonic()
    assert (await client.get("/v1/items/TEE-BLK-M", headers=AUTH)).status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert (await client.get("/v1/health")).status_code == 200
    assert time.monotonic() - started < 0.3
    assert (await client.get("/_sandbox/faults")).json()["counters"]["delayed"] == 1


async def test_items_page_by_cursor_in_update_order(client):
    new = [{"item_id": f"ITM-1{n:03d}", "sku": f"SOCK-{n:03d}", "description": f"Sock {n}", "item_type": "stock"}
           for n in range(7)]
    stored = (await client.put("/_sandbox/items", json={"items": new})).json()["items"]
    since = stored[0]["updated_at"]

    async def all_pages(**params) -> tuple[list[dict], int]:
        items, cursor, pages = [], None, 0
        while True:
            r = await client.get("/v1/items", params={**params, **({"cursor": cursor} if cursor else {})},
                                 headers=AUTH)
            assert r.status_code == 200
            pages += 1
            items += r.json()["items"]
            if (cursor := r.json()["next_cursor"]) is None:
                return items, pages

    everything, pages = await all_pages(limit=3)
    assert pages == 5 and len(everything) == 13  # 6 seeded + 7 new
    keys = [(i["updated_at"], i["item_id"]) for i in everything]
    assert keys == sorted(keys) and len(set(keys)) == 13

    changed, _ = await all_pages(limit=3, changed_since=since)
    assert [i["item_id"] for i in changed] == [i["item_id"] for i in new]

    # re-sending an unchanged item keeps its updated_at; a changed one moves to the end
    await client.put("/_sandbox/items", json={"items": [new[0], {**new[1], "active": False}]})
    changed, _ = await all_pages(changed_since=since)
    assert [i["item_id"] for i in changed][-1] == "ITM-1001" and changed[-1]["active"] is False
    at = datetime.fromisoformat
    assert at(changed[-1]["updated_at"]) > at(since) and at(changed[0]["updated_at"]) == at(since)

    r = await client.get("/v1/items", params={"cursor": "not-a-cursor"}, headers=AUTH)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_cursor")
    r = await client.get("/v1/items", params={"limit": 501}, headers=AUTH)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error")


async def test_item_by_sku_and_bundle_components(client):
    bundle = (await client.get("/v1/items/GIFT-SET-TEE-MUG", headers=AUTH)).json()
    assert bundle["item_type"] == "bundle"
    assert bundle["components"] == [{"item_id": "ITM-0001", "sku": "TEE-BLK-M", "quantity": 1},
                                    {"item_id": "ITM-0003", "sku": "MUG-STONE", "quantity": 2}]
    r = await client.get("/v1/items/NO-SUCH-SKU", headers=AUTH)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    r = await client.put("/_sandbox/items", json={"items": [
        {"item_id": "ITM-2000", "sku": "KIT", "description": "Kit", "item_type": "bundle",
         "components": [{"item_id": "ITM-4040", "sku": "GHOST", "quantity": 1}]}]})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_item")
    assert (await client.get("/v1/items/KIT", headers=AUTH)).status_code == 404


async def test_release_to_warehouse(client):
    number = (await create(client, ORDER)).json()["sales_order_number"]
    released = (await client.post(f"/_sandbox/sales-orders/{number}/release")).json()
    assert released["status"] == "released_to_warehouse" and released["released_at"] is not None
    assert (await client.get(f"/v1/sales-orders/{number}", headers=AUTH)).json() == released
    assert (await client.post(f"/_sandbox/sales-orders/{number}/release")).json() == released
    assert (await client.post("/_sandbox/sales-orders/SO-424242/release")).status_code == 404


async def test_openapi_document_matches_the_app(client, base_url):
    r = await client.get("/openapi.yaml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
    assert r.text == PRIMA_OPENAPI.read_text()  # the contract the Prima client is written against
    doc = yaml.safe_load(r.text)
    assert doc["openapi"].startswith("3.1") and doc["info"]["version"] == "v1"
    assert doc["info"]["title"] == "Prima ERP API (as assumed by shopify-prima)"
    assert (await client.get("/openapi.json")).json() == doc

    app = create_app(DATABASE_URL, KEY)
    served = {(m.lower(), route.path) for route in app.routes for m in route.methods}
    documented = {(m, path) for path, ops in doc["paths"].items() for m in ops
                  if m in {"get", "put", "post", "delete", "patch"}}
    assert served == documented
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert (op.get("security") == []) == (not path.startswith("/v1/") or path == "/v1/health")
            if path.startswith("/_sandbox"):
                assert op["tags"] == ["sandbox"]

    def refs(node):
        if isinstance(node, dict):
            yield from ([node["$ref"]] if "$ref" in node else [])
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in set(refs(doc)):
        target = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]  # KeyError: a dangling $ref

    # what the sandbox answers has exactly the documented fields
    schemas = doc["components"]["schemas"]
    so = (await create(client, ORDER)).json()
    assert set(so) == set(schemas["SalesOrder"]["properties"]) == set(schemas["SalesOrder"]["required"])
    assert set(so["lines"][0]) == set(schemas["SalesOrderLine"]["properties"])
    item = (await client.get("/v1/items/TEE-BLK-M", headers=AUTH)).json()
    assert set(item) == set(schemas["Item"]["properties"]) == set(schemas["Item"]["required"])
    faults = (await client.get("/_sandbox/faults")).json()["faults"]
    assert set(faults) == set(schemas["FaultConfig"]["properties"])
    page = (await client.get("/v1/stock", headers=AUTH)).json()
    stock_page = doc["paths"]["/v1/stock"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(page) == set(stock_page["properties"]) == set(stock_page["required"])
    assert set(page["stock"][0]) == set(schemas["StockLevel"]["properties"]) == set(schemas["StockLevel"]["required"])
    put = await client.put("/_sandbox/stock", json={"stock": [{"sku": "X", "warehouse": "W", "available": 1}]})
    put_schema = doc["paths"]["/_sandbox/stock"]["put"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(put.json()) == set(put_schema["properties"])
    assert (await client.get("/nowhere")).json()["error"]["code"] == "not_found"


# ---------------------------------------------------------------------------------------- stock


async def stock_pages(client: httpx.AsyncClient, after: str | None = None, limit: int = 1000):
    """Every page from `after` on: (rows, pages as (count, has_more), last next_cursor)."""
    rows, pages = [], []
    while True:
        params = {"limit": limit, **({"after": after} if after is not None else {})}
        r = await client.get("/v1/stock", params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        page = r.json()
        rows += page["stock"]
        pages.append((len(page["stock"]), page["has_more"]))
        after = page["next_cursor"]
        if not page["has_more"]:
            return rows, pages, after


async def put_stock(client: httpx.AsyncClient, *rows: dict) -> dict:
    # no time limit in effect: how long 100,000 rows take is printed, never asserted
    r = await client.put("/_sandbox/stock", json={"stock": list(rows)}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


async def test_stock_pages_by_cursor_in_change_order(client):
    seeded, pages, start = await stock_pages(client)
    assert {(r["sku"], r["warehouse"], r["on_hand"], r["allocated"], r["available"]) for r in seeded} == {
        ("TEE-BLK-M", "WH-MAIN", 25, 0, 25), ("TEE-BLK-L", "WH-MAIN", 12, 0, 12), ("MUG-STONE", "WH-MAIN", 40, 0, 40)}
    assert pages == [(3, False)] and start == str(max(r["change_id"] for r in seeded))

    new = [{"sku": f"SOCK-{n}", "warehouse": "WH-MAIN", "available": n} for n in range(7)]
    answer = await put_stock(client, *new)
    assert answer == {"received": 7, "changed": 7, "unchanged": 0, "last_change_id": int(start) + 7}

    everything, pages, end = await stock_pages(client, limit=4)
    assert pages == [(4, True), (4, True), (2, False)]
    ids = [r["change_id"] for r in everything]
    assert ids == sorted(ids) and len(set(ids)) == 10 and end == str(ids[-1])

    changed, pages, again = await stock_pages(client, after=start, limit=3)
    assert [r["sku"] for r in changed] == [f"SOCK-{n}" for n in range(7)]
    assert [r["available"] for r in changed] == list(range(7))
    assert pages == [(3, True), (3, True), (1, False)] and again == end
    assert datetime.fromisoformat(changed[0]["changed_at"]).tzinfo is not None

    # nothing new: an empty page that gives the cursor back
    r = (await client.get("/v1/stock", params={"after": end}, headers=AUTH)).json()
    assert r == {"stock": [], "next_cursor": end, "has_more": False}
    # exactly `limit` rows waiting: has_more is false, the next poll is empty
    r = (await client.get("/v1/stock", params={"after": start, "limit": 7}, headers=AUTH)).json()
    assert len(r["stock"]) == 7 and r["has_more"] is False


async def test_stock_changes_only_when_a_value_changes(client):
    _, _, cursor = await stock_pages(client)

    async def record(sku="TEE-BLK-M") -> dict:
        [row] = [r for r in (await stock_pages(client))[0] if r["sku"] == sku]
        return row

    before = await record()
    assert (await put_stock(client, {"sku": "TEE-BLK-M", "warehouse": "WH-MAIN", "available": 25}))["changed"] == 0
    assert await record() == before  # same change_id and changed_at
    assert (await stock_pages(client, after=cursor))[0] == []

    assert (await put_stock(client, {"sku": "TEE-BLK-M", "warehouse": "WH-MAIN", "available": 7}))["changed"] == 1
    after_change = await record()
    assert (after_change["on_hand"], after_change["allocated"], after_change["available"]) == (7, 0, 7)
    assert after_change["change_id"] > before["change_id"]
    rows, _, cursor = await stock_pages(client, after=cursor)
    assert [(r["sku"], r["available"]) for r in rows] == [("TEE-BLK-M", 7)]

    # allocated alone keeps on_hand; available alone keeps allocated
    await put_stock(client, {"sku": "TEE-BLK-M", "warehouse": "WH-MAIN", "allocated": 2})
    assert {k: (await record())[k] for k in ("on_hand", "allocated", "available")} == \
        {"on_hand": 7, "allocated": 2, "available": 5}
    await put_stock(client, {"sku": "TEE-BLK-M", "warehouse": "WH-MAIN", "available": 4})
    assert {k: (await record())[k] for k in ("on_hand", "allocated", "available")} == \
        {"on_hand": 6, "allocated": 2, "available": 4}
    # oversold: available may be negative
    await put_stock(client, {"sku": "TEE-BLK-M", "warehouse": "WH-MAIN", "available": -3})
    assert {k: (await record())[k] for k in ("on_hand", "allocated", "available")} == \
        {"on_hand": 0, "allocated": 3, "available": -3}
    await put_stock(client, {"sku": "TEE-BLK-M", "warehouse": "WH-MAIN", "on_hand": 10})
    assert (await record())["available"] == 7
    rows, _, cursor = await stock_pages(client, after=cursor)
    assert len(rows) == 1 and rows[0]["available"] == 7  # four changes, reported once as it is now

    # a record given twice in one call: the last one counts; unchanged ones in the same call keep theirs
    mug = await record("MUG-STONE")
    answer = await put_stock(client, {"sku": "TEE-BLK-L", "warehouse": "WH-MAIN", "available": 1},
                             {"sku": "TEE-BLK-L", "warehouse": "WH-MAIN", "available": 2},
                             {"sku": "MUG-STONE", "warehouse": "WH-MAIN", "on_hand": 40})
    assert (answer["received"], answer["changed"], answer["unchanged"]) == (3, 1, 1)
    assert (await record("TEE-BLK-L"))["available"] == 2 and await record("MUG-STONE") == mug

    for bad in ({"sku": "A", "warehouse": "W"}, {"sku": "A", "warehouse": "W", "available": 1, "on_hand": 1},
                {"sku": "A", "warehouse": "W", "on_hand": -1}, {"sku": "", "warehouse": "W", "available": 1}):
        r = await client.put("/_sandbox/stock", json={"stock": [bad]})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error"), bad
    r = await client.put("/_sandbox/stock", json={"stock": []})
    assert r.status_code == 422
    assert (await stock_pages(client, after=cursor))[0][0]["sku"] == "TEE-BLK-L"  # nothing else changed


async def test_stock_requires_the_api_key_and_a_cursor_it_returned(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = await client.get("/v1/stock", headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
    for cursor in ("not-a-cursor", "-1", "1.5", "", "9" * 40):
        r = await client.get("/v1/stock", params={"after": cursor}, headers=AUTH)
        assert r.status_code == 400, cursor
        assert r.json() == {"error": {"code": "invalid_cursor", "message": "cursor is not one this API returned"}}
    for limit in (0, 5001):
        r = await client.get("/v1/stock", params={"limit": limit}, headers=AUTH)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error")


async def test_reset_restores_the_seed_stock_and_keeps_the_sequence(client):
    _, _, cursor = await stock_pages(client)
    await put_stock(client, {"sku": "EXTRA", "warehouse": "WH-2", "on_hand": 5})
    assert (await client.post("/_sandbox/reset")).status_code == 200  # without stock=true: kept
    assert [r["sku"] for r in (await stock_pages(client, after=cursor))[0]] == ["EXTRA"]
    assert (await client.post("/_sandbox/reset", params={"stock": "true"})).status_code == 200
    rows, _, _ = await stock_pages(client)
    assert sorted(r["sku"] for r in rows) == ["MUG-STONE", "TEE-BLK-L", "TEE-BLK-M"]
    assert min(r["change_id"] for r in rows) > int(cursor) + 1  # new change_ids: a poller sees the seed again


async def test_one_hundred_thousand_stock_records_in_one_call(client):
    _, _, cursor = await stock_pages(client)
    rows = [{"sku": f"BULK-{n:06d}", "warehouse": f"WH-{n % 3}", "available": n % 97} for n in range(100_000)]
    started = time.perf_counter()
    answer = await put_stock(client, *rows)
    took = time.perf_counter() - started
    print(f"\n100,000 stock records upserted in {took:.2f} s (HTTP + validation + one statement)")
    assert answer["changed"] == 100_000 and answer["last_change_id"] == int(cursor) + 100_000

    started = time.perf_counter()
    assert (await put_stock(client, *rows))["changed"] == 0
    print(f"100,000 unchanged records in {time.perf_counter() - started:.2f} s")
    rows[5]["available"] += 1
    assert (await put_stock(client, *rows))["changed"] == 1

    started = time.perf_counter()
    got, pages, _ = await stock_pages(client, after=cursor, limit=5000)
    print(f"100,000 records read in {len(pages)} pages of 5000 in {time.perf_counter() - started:.2f} s")
    assert len(got) == 100_000 and len(pages) == 20 and got[-1]["sku"] == "BULK-000005"
