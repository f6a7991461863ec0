"""The Prima sandbox allocates a sales order's stock as it creates it, as an ERP does, and its
stock feed reports the change with the sales order it came from (`allocated_for`,
`allocated_sales_order`): what the stock decider's pending allocations wait for (defect 5).

The sandbox runs in-process on the inventory integration tests' throwaway database, in a schema
of its own."""

from __future__ import annotations

from copy import deepcopy

import httpx
import pytest

from sandboxes.prima.app import create_app

pytestmark = pytest.mark.integration

SCHEMA = "prima_allocation_test"
KEY = "allocation-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}

ORDER = {
    "external_reference": "5550001",
    "order_name": "#1001",
    "currency": "GBP",
    "taxes_included": True,
    "order_date": "2024-05-01T10:00:00Z",
    "customer_email": None,
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


def one_line(reference: str, item_id: str, sku: str, quantity: int = 1) -> dict:
    return {**deepcopy(ORDER), "external_reference": reference, "shipping": None,
            "lines": [{"line_number": 1, "item_id": item_id, "sku": sku, "description": sku, "quantity": quantity,
                       "unit_price": "10.00", "discount_amount": "0", "tax_amount": "1.00",
                       "net_amount": f"{10 * quantity}.00"}],
            "totals": {"lines_net": f"{10 * quantity}.00", "shipping_net": "0", "tax": "1.00",
                       "total": f"{10 * quantity}.00"}}


@pytest.fixture(scope="module")
def sandbox_url(scratch_url, serve_app):
    with serve_app(create_app(scratch_url, KEY, schema=SCHEMA), "the Prima sandbox") as url:
        yield url


@pytest.fixture
async def prima(sandbox_url):
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30) as client:
        (await client.post("/_sandbox/reset", params={"items": "true", "stock": "true"})).raise_for_status()
        yield client


async def cursor_now(prima: httpx.AsyncClient) -> str:
    after = None
    while True:
        page = (await prima.get("/v1/stock", params={"limit": 5000, **({"after": after} if after else {})},
                                headers=AUTH)).json()
        after = page["next_cursor"]
        if not page["has_more"]:
            return after


async def changes_after(prima: httpx.AsyncClient, after: str) -> dict[str, dict]:
    page = (await prima.get("/v1/stock", params={"after": after}, headers=AUTH)).json()
    return {r["sku"]: r for r in page["stock"]}


async def create(prima: httpx.AsyncClient, body: dict, key: str) -> httpx.Response:
    return await prima.post("/v1/sales-orders", json=body, headers={**AUTH, "Idempotency-Key": key})


async def test_creating_a_sales_order_lowers_available_in_the_stock_feed_naming_the_order(prima):
    cursor = await cursor_now(prima)
    created = await create(prima, ORDER, "key-1")
    assert created.status_code == 201, created.text
    number = created.json()["sales_order_number"]

    changed = await changes_after(prima, cursor)
    assert set(changed) == {"TEE-BLK-M", "MUG-STONE"}
    tee, mug = changed["TEE-BLK-M"], changed["MUG-STONE"]
    assert (tee["on_hand"], tee["allocated"], tee["available"]) == (25, 2, 23)
    assert (mug["on_hand"], mug["allocated"], mug["available"]) == (40, 1, 39)
    assert {(r["allocated_for"], r["allocated_sales_order"]) for r in changed.values()} == {("5550001", number)}
    assert tee["warehouse"] == "WH-MAIN" and tee["change_id"] > int(cursor)

    # the same request again (a replay) allocates nothing again; a refused one nothing at all
    cursor = await cursor_now(prima)
    assert (await create(prima, ORDER, "key-1")).status_code == 200
    refused = one_line("5550002", "ITM-0005", "CAP-RETIRED")  # inactive item: 422
    assert (await create(prima, refused, "key-2")).status_code == 422
    assert await changes_after(prima, cursor) == {}

    # a later change of the record keeps naming the latest sales order allocated on it
    r = await prima.put("/_sandbox/stock", json={"stock": [{"sku": "TEE-BLK-M", "warehouse": "WH-MAIN",
                                                            "on_hand": 30}]})
    r.raise_for_status()
    tee = (await changes_after(prima, cursor))["TEE-BLK-M"]
    assert (tee["available"], tee["allocated_for"], tee["allocated_sales_order"]) == (28, "5550001", number)


async def test_a_bundle_allocates_its_components_and_a_service_nothing(prima):
    cursor = await cursor_now(prima)
    gift = await create(prima, one_line("5550010", "ITM-0010", "GIFT-SET-TEE-MUG", quantity=2), "key-gift")
    assert gift.status_code == 201, gift.text
    changed = await changes_after(prima, cursor)
    assert {sku: (r["allocated"], r["available"]) for sku, r in changed.items()} == {
        "TEE-BLK-M": (2, 23), "MUG-STONE": (4, 36)}  # 2 sets: 1 tee and 2 mugs each

    cursor = await cursor_now(prima)
    wrap = await create(prima, one_line("5550011", "ITM-0004", "GIFT-WRAP"), "key-wrap")
    assert wrap.status_code == 201
    assert await changes_after(prima, cursor) == {}


async def test_an_item_without_stock_is_allocated_into_a_negative_available(prima):
    r = await prima.put("/_sandbox/items", json={"items": [
        {"item_id": "ITM-0099", "sku": "SCARF", "description": "Scarf", "item_type": "stock"}]})
    r.raise_for_status()
    cursor = await cursor_now(prima)
    assert (await create(prima, one_line("5550020", "ITM-0099", "SCARF", quantity=3), "key-scarf")).status_code == 201
    scarf = (await changes_after(prima, cursor))["SCARF"]
    assert (scarf["on_hand"], scarf["allocated"], scarf["available"], scarf["allocated_for"]) == (0, 3, -3, "5550020")


async def test_sales_order_numbers_and_allocations_are_in_one_order(prima):
    """Two orders of one SKU between two polls: the record names the later one, whose number is
    the higher; the record includes both allocations."""
    cursor = await cursor_now(prima)
    first = (await create(prima, one_line("5550030", "ITM-0003", "MUG-STONE"), "key-a")).json()
    second = (await create(prima, one_line("5550031", "ITM-0003", "MUG-STONE"), "key-b")).json()
    mug = (await changes_after(prima, cursor))["MUG-STONE"]
    assert first["sales_order_number"] < second["sales_order_number"] == mug["allocated_sales_order"]
    assert (mug["allocated"], mug["available"], mug["allocated_for"]) == (2, 38, "5550031")
