"""The Prima sandbox's despatch notes (sandboxes/prima/despatches.py, as
contracts/prima/openapi.yaml documents them): the warehouse despatches a sales order in full or in
part, in one or more parcels; a parcel's tracking may come later; the notes come out of a cursor
feed, each change once, in change_id order, as the stock feed does. A refused despatch changes
nothing. Real PostgreSQL, a throwaway schema, the sandbox served over HTTP."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from uuid import uuid4

import asyncpg
import httpx
import pytest
import yaml

from contracts.prima.despatches import DespatchNote, DespatchPage
from sandboxes.prima.app import OPENAPI_PATH, create_app

pytestmark = pytest.mark.integration

SCHEMA = f"prima_sandbox_despatch_{uuid4().hex[:8]}"
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ITEMS = [
    {"item_id": "ITM-TEE", "sku": "TEE", "description": "Tee", "item_type": "stock"},
    {"item_id": "ITM-MUG", "sku": "MUG", "description": "Mug", "item_type": "stock"},
    {"item_id": "ITM-WRAP", "sku": "WRAP", "description": "Gift wrap", "item_type": "service"},
    {"item_id": "ITM-KIT", "sku": "KIT", "description": "Tee and two mugs", "item_type": "bundle",
     "components": [{"item_id": "ITM-TEE", "sku": "TEE", "quantity": 1},
                    {"item_id": "ITM-MUG", "sku": "MUG", "quantity": 2}]},
]
PRICES = {"TEE": "10.00", "MUG": "5.00", "WRAP": "2.00", "KIT": "18.00"}


@pytest.fixture(scope="module")
async def served(serve_app, database_url):
    try:
        with serve_app(create_app(database_url, KEY, schema=SCHEMA), "the Prima sandbox") as url:
            async with httpx.AsyncClient(base_url=url, timeout=10, headers=AUTH) as http:
                assert (await http.post("/_sandbox/reset")).status_code == 200
                (await http.put("/_sandbox/items", json={"items": ITEMS})).raise_for_status()
                yield url
    finally:
        conn = await asyncpg.connect(database_url)
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.close()


@pytest.fixture
async def client(served):
    async with httpx.AsyncClient(base_url=served, timeout=10, headers=AUTH) as http:
        await http.delete("/_sandbox/faults")
        yield http


async def sales_order(client: httpx.AsyncClient, **quantities: int) -> tuple[str, str]:
    """A sales order with a line per SKU given (TEE=2, MUG=1, ...), in that order; (its number,
    its external reference). Each line's external_line_id is 9000 + its line number."""
    reference = str(uuid4().int % 10**12)
    lines = [{"line_number": n, "item_id": f"ITM-{sku}", "sku": sku, "description": sku, "quantity": qty,
              "unit_price": PRICES[sku], "discount_amount": "0.00", "tax_amount": "0.00",
              "net_amount": str(Decimal(PRICES[sku]) * qty), "external_line_id": 9000 + n}
             for n, (sku, qty) in enumerate(quantities.items(), start=1)]
    total = str(sum(Decimal(line["net_amount"]) for line in lines))
    body = {"external_reference": reference, "order_name": "#1001", "currency": "GBP", "taxes_included": True,
            "order_date": "2026-11-30T10:00:00Z", "customer_email": None, "lines": lines, "shipping": None,
            "totals": {"lines_net": total, "shipping_net": "0.00", "tax": "0.00", "total": total}}
    response = await client.post("/v1/sales-orders", json=body, headers={"Idempotency-Key": f"create-{reference}"})
    assert response.status_code == 201, response.text
    return response.json()["sales_order_number"], reference


async def despatch(client: httpx.AsyncClient, number: str, body: dict, status: int = 200) -> dict:
    response = await client.post(f"/_sandbox/sales-orders/{number}/despatch", json=body)
    assert response.status_code == status, response.text
    return response.json()


async def order_status(client: httpx.AsyncClient, number: str) -> str:
    return (await client.get(f"/v1/sales-orders/{number}")).json()["status"]


async def stock(client: httpx.AsyncClient) -> dict[str, tuple[int, int]]:
    """(on_hand, allocated) per SKU in WH-MAIN."""
    page = (await client.get("/v1/stock", params={"limit": 5000})).json()
    return {r["sku"]: (r["on_hand"], r["allocated"]) for r in page["stock"] if r["warehouse"] == "WH-MAIN"}


async def feed(client: httpx.AsyncClient, after: str | None = None, limit: int = 1000) -> tuple[list[dict], str]:
    """Every change after `after`, page by page; (the changes, the last next_cursor)."""
    changes = []
    while True:
        response = await client.get("/v1/despatches", params={"limit": limit, **({"after": after} if after else {})})
        assert response.status_code == 200, response.text
        page = DespatchPage.model_validate(response.json())  # the shape the contract's model reads
        changes += response.json()["despatches"]
        after = page.next_cursor
        if not page.has_more:
            return changes, after


async def cursor_now(client: httpx.AsyncClient) -> str:
    return (await feed(client))[1]


async def test_given_an_order_when_despatched_in_full_in_two_parcels_then_one_note_with_both_parcels(client):
    await client.put("/_sandbox/stock", json={"stock": [{"sku": "TEE", "warehouse": "WH-MAIN", "on_hand": 50},
                                                        {"sku": "MUG", "warehouse": "WH-MAIN", "on_hand": 50}]})
    number, reference = await sales_order(client, TEE=2, MUG=1)
    before, start = await stock(client), await cursor_now(client)

    note = await despatch(client, number, {"parcels": [
        {"carrier": "DPD", "tracking_number": "15501234567890", "tracking_url": "https://track.dpd.co.uk/15501234567890",
         "lines": [{"sku": "TEE", "quantity": 2}]},
        {"carrier": "Royal Mail", "tracking_number": "RM123456785GB", "lines": [{"sku": "MUG", "quantity": 1}]}]})

    assert note["despatch_id"].startswith("DN-") and (note["version"], note["change"]) == (1, "despatched")
    assert (note["sales_order_number"], note["external_reference"], note["warehouse"]) == (number, reference, "WH-MAIN")
    assert note["lines"] == [{"line_number": 1, "external_line_id": 9001, "sku": "TEE", "quantity": 2},
                             {"line_number": 2, "external_line_id": 9002, "sku": "MUG", "quantity": 1}]
    assert [(p["parcel_number"], p["carrier"], p["tracking_number"], p["tracking_url"]) for p in note["parcels"]] == [
        (1, "DPD", "15501234567890", "https://track.dpd.co.uk/15501234567890"),
        (2, "Royal Mail", "RM123456785GB", None)]
    assert await order_status(client, number) == "despatched"
    after = await stock(client)  # the lines left the warehouse: on hand and allocated fall together
    assert after["TEE"] == (before["TEE"][0] - 2, before["TEE"][1] - 2)
    assert after["MUG"] == (before["MUG"][0] - 1, before["MUG"][1] - 1)
    changes, _ = await feed(client, start)
    assert changes == [note]
    assert (await client.get(f"/v1/despatches/{note['despatch_id']}")).json() == note
    assert (await client.get(f"/v1/sales-orders/{number}/despatches")).json() == {"despatches": [note]}
    again = await client.post(f"/_sandbox/sales-orders/{number}/despatch", json={"parcels": [{"carrier": "DPD"}]})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "invalid_status")


async def test_given_an_order_when_despatched_in_part_and_then_the_rest_then_two_notes_add_up_to_the_order(client):
    number, _ = await sales_order(client, TEE=2, MUG=3)

    first = await despatch(client, number, {"lines": [{"sku": "MUG", "quantity": 1}],
                                            "parcels": [{"carrier": "UPS", "tracking_number": "1Z999AA10123456784"}]})
    status_between = await order_status(client, number)
    rest = await despatch(client, number, {"parcels": [{"carrier": "UPS", "tracking_number": "1Z999AA10123456785"}]})

    assert first["lines"] == [{"line_number": 2, "external_line_id": 9002, "sku": "MUG", "quantity": 1}]
    assert status_between == "picking"  # past the amendment cut-off
    assert rest["lines"] == [{"line_number": 1, "external_line_id": 9001, "sku": "TEE", "quantity": 2},
                             {"line_number": 2, "external_line_id": 9002, "sku": "MUG", "quantity": 2}]
    assert int(rest["despatch_id"][3:]) > int(first["despatch_id"][3:]) and rest["change_id"] > first["change_id"]
    assert await order_status(client, number) == "despatched"
    notes = (await client.get(f"/v1/sales-orders/{number}/despatches")).json()["despatches"]
    assert [n["despatch_id"] for n in notes] == [first["despatch_id"], rest["despatch_id"]]


async def test_given_a_kit_line_when_despatched_then_its_components_leave_from_the_kit_line(client):
    number, _ = await sales_order(client, KIT=2, WRAP=1)

    half = await despatch(client, number, {"lines": [{"sku": "TEE", "quantity": 1}, {"sku": "MUG", "quantity": 2}],
                                           "parcels": [{"carrier": "DPD", "tracking_number": "KIT-1"}]})
    rest = await despatch(client, number, {"parcels": [{"carrier": "DPD", "tracking_number": "KIT-2"}]})

    assert half["lines"] == [{"line_number": 1, "external_line_id": 9001, "sku": "TEE", "quantity": 1},
                             {"line_number": 1, "external_line_id": 9001, "sku": "MUG", "quantity": 2}]
    assert rest["lines"] == half["lines"]  # the gift wrap (a service) is not picked
    assert await order_status(client, number) == "despatched"


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"lines": [{"sku": "MUG", "quantity": 3}], "parcels": [{"carrier": "DPD"}]}, 409, "over_despatch"),
    ({"lines": [{"sku": "MUG", "quantity": 1}, {"sku": "MUG", "quantity": 2}], "parcels": [{"carrier": "DPD"}]},
     409, "over_despatch"),
    ({"lines": [{"sku": "TEE", "quantity": 1, "line_number": 2}], "parcels": [{"carrier": "DPD"}]},
     422, "not_on_sales_order"),
    ({"lines": [{"sku": "CAP", "quantity": 1}], "parcels": [{"carrier": "DPD"}]}, 422, "not_on_sales_order"),
    ({"lines": [{"sku": "MUG", "quantity": 1}],
      "parcels": [{"carrier": "DPD", "lines": [{"sku": "MUG", "quantity": 2}]}]}, 422, "parcel_lines_mismatch"),
    ({"parcels": [{"carrier": "DPD", "lines": [{"sku": "MUG", "quantity": 1}]}, {"carrier": "DPD"}]},
     422, "validation_error"),
    ({"parcels": [{"carrier": "DPD", "tracking_url": "https://example.com/t"}]}, 422, "validation_error"),
    ({"parcels": []}, 422, "validation_error"),
])
async def test_given_one_mug_despatched_of_two_when_a_despatch_asks_the_impossible_then_refused_and_nothing_changes(
        client, body, status, code):
    number, _ = await sales_order(client, TEE=1, MUG=2)
    await despatch(client, number, {"lines": [{"sku": "MUG", "quantity": 1}], "parcels": [{"carrier": "DPD"}]})
    before = (await stock(client), await cursor_now(client), await order_status(client, number),
              (await client.get(f"/v1/sales-orders/{number}/despatches")).json())

    refused = await client.post(f"/_sandbox/sales-orders/{number}/despatch", json=body)

    assert (refused.status_code, refused.json()["error"]["code"]) == (status, code), refused.text
    assert (await stock(client), await cursor_now(client), await order_status(client, number),
            (await client.get(f"/v1/sales-orders/{number}/despatches")).json()) == before
    # and what is left can still be despatched, exactly
    rest = await despatch(client, number, {"parcels": [{"carrier": "DPD"}]})
    assert [(line["sku"], line["quantity"]) for line in rest["lines"]] == [("TEE", 1), ("MUG", 1)]


async def test_given_a_cancelled_or_unknown_sales_order_when_despatched_then_refused(client):
    number, _ = await sales_order(client, MUG=1)
    cancelled = await client.post(f"/v1/sales-orders/{number}/cancellation", headers={"Idempotency-Key": f"c-{number}"},
                                  json={"reason": "customer", "cancellable_statuses": ["open"]})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    start = await cursor_now(client)

    refused = await client.post(f"/_sandbox/sales-orders/{number}/despatch", json={"parcels": [{"carrier": "DPD"}]})
    unknown = await client.post("/_sandbox/sales-orders/SO-999999/despatch", json={"parcels": [{"carrier": "DPD"}]})

    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "invalid_status")
    assert "cancelled" in refused.json()["error"]["message"]
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")
    assert (await client.get("/v1/sales-orders/SO-999999/despatches")).status_code == 404
    assert (await client.get("/v1/despatches/DN-999999")).status_code == 404
    assert (await feed(client, start))[0] == []


async def test_the_feed_gives_each_change_once_in_order_and_resumes_from_a_stored_cursor(client):
    start = await cursor_now(client)
    made = []
    for _ in range(3):
        number, _ = await sales_order(client, MUG=1)
        made.append(await despatch(client, number, {"parcels": [{"carrier": "DPD"}]}))

    pages, after = [], start
    while True:  # pages of two, as a poller reads them
        page = (await client.get("/v1/despatches", params={"after": after, "limit": 2})).json()
        pages.append((len(page["despatches"]), page["has_more"]))
        after = page["next_cursor"]
        if not page["has_more"]:
            break
    stored = after
    number, _ = await sales_order(client, TEE=1)
    later = await despatch(client, number, {"parcels": [{"carrier": "DPD"}]})
    resumed, resumed_cursor = await feed(client, stored)
    empty = (await client.get("/v1/despatches", params={"after": resumed_cursor})).json()

    everything, _ = await feed(client, start, limit=2)
    assert everything == [*made, later]
    assert [c["change_id"] for c in everything] == sorted({c["change_id"] for c in everything})
    assert pages == [(2, True), (1, False)]
    assert resumed == [later] and resumed_cursor == str(later["change_id"])
    assert empty == {"despatches": [], "next_cursor": resumed_cursor, "has_more": False}


async def test_given_concurrent_despatches_of_one_order_then_never_more_than_ordered(client):
    number, _ = await sales_order(client, MUG=5)

    answers = await asyncio.gather(*(client.post(f"/_sandbox/sales-orders/{number}/despatch", json={
        "lines": [{"sku": "MUG", "quantity": 1}], "parcels": [{"carrier": "DPD"}]}) for _ in range(8)))

    assert sorted(a.status_code for a in answers) == [200] * 5 + [409] * 3
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} <= {"over_despatch", "invalid_status"}
    notes = (await client.get(f"/v1/sales-orders/{number}/despatches")).json()["despatches"]
    assert sum(line["quantity"] for note in notes for line in note["lines"]) == 5
    assert await order_status(client, number) == "despatched"


async def test_a_poller_reading_while_despatches_and_tracking_are_written_misses_none_and_sees_none_twice(client):
    tracked = [await despatch(client, (await sales_order(client, MUG=1))[0], {"parcels": [{"carrier": "DPD"}]})
               for _ in range(15)]
    orders = [(await sales_order(client, MUG=1))[0] for _ in range(15)]
    start = await cursor_now(client)
    seen: list[dict] = []
    writing = True

    async def poll() -> None:  # as the Prima poller does: a page, then its next_cursor stored
        after = start
        while True:
            still_writing = writing
            page = (await client.get("/v1/despatches", params={"after": after, "limit": 3})).json()
            seen.extend(page["despatches"])
            after = page["next_cursor"]
            if not still_writing and not page["has_more"]:
                return

    writers = asyncio.Semaphore(4)  # the sandbox's pool keeps connections free for the poller

    async def despatched(number: str) -> dict:
        async with writers:
            return await despatch(client, number, {"parcels": [{"carrier": "DPD"}]})

    async def track(note: dict) -> dict:
        async with writers:
            response = await client.post(f"/_sandbox/despatches/{note['despatch_id']}/parcels/1/tracking",
                                         json={"tracking_number": f"T-{note['despatch_id']}"})
        assert response.status_code == 200, response.text
        return response.json()

    poller = asyncio.create_task(poll())
    made = await asyncio.gather(*(despatched(number) for number in orders), *(track(note) for note in tracked))
    writing = False
    await poller

    assert sorted(n["change_id"] for n in seen) == sorted(n["change_id"] for n in made)
    assert [n["change_id"] for n in seen] == sorted(n["change_id"] for n in seen)


async def test_the_feed_requires_the_api_key_and_a_cursor_it_returned(client):
    no_key = await client.get("/v1/despatches", headers={"Authorization": ""})
    bad = await client.get("/v1/despatches", params={"after": "not-a-cursor"})
    assert (no_key.status_code, no_key.json()["error"]["code"]) == (401, "unauthorized")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_cursor")


async def test_given_a_parcel_without_tracking_when_tracking_is_added_later_then_the_feed_has_a_new_change(client):
    number, _ = await sales_order(client, TEE=1, MUG=1)
    note = await despatch(client, number, {"parcels": [
        {"carrier": "DPD", "tracking_number": "P1"}, {"carrier": "Royal Mail"}]})
    after_despatch = await cursor_now(client)
    url = f"/_sandbox/despatches/{note['despatch_id']}/parcels/2/tracking"

    updated = await client.post(url, json={"tracking_number": "RM987654321GB",
                                           "tracking_url": "https://www.royalmail.com/track/RM987654321GB"})
    repeated = await client.post(url, json={"tracking_number": "RM987654321GB",
                                            "tracking_url": "https://www.royalmail.com/track/RM987654321GB"})
    changes, _ = await feed(client, after_despatch)

    assert updated.status_code == 200, updated.text
    new = updated.json()
    assert (new["despatch_id"], new["version"], new["change"]) == (note["despatch_id"], 2, "tracking_updated")
    assert new["change_id"] > note["change_id"] and new["lines"] == note["lines"]
    assert new["parcels"][0] == note["parcels"][0]
    assert new["parcels"][1] == {"parcel_number": 2, "carrier": "Royal Mail", "tracking_number": "RM987654321GB",
                                 "tracking_url": "https://www.royalmail.com/track/RM987654321GB", "lines": None}
    assert repeated.json() == new  # the same tracking again: no second change
    assert changes == [new]
    assert (await client.get(f"/v1/despatches/{note['despatch_id']}")).json() == new
    duplicate = await client.post(f"/_sandbox/despatches/{note['despatch_id']}/parcels/2/tracking",
                                  json={"tracking_number": "P1"})
    no_parcel = await client.post(f"/_sandbox/despatches/{note['despatch_id']}/parcels/3/tracking",
                                  json={"tracking_number": "X"})
    assert (duplicate.status_code, duplicate.json()["error"]["code"]) == (409, "duplicate_tracking_number")
    assert no_parcel.status_code == 404
    assert (await feed(client, after_despatch))[0] == [new]


@pytest.mark.parametrize("fail_status", [500, 503])
async def test_a_fault_switch_makes_the_feed_fail_and_then_it_answers_the_same(client, fail_status):
    number, _ = await sales_order(client, MUG=1)
    await despatch(client, number, {"parcels": [{"carrier": "DPD"}]})
    start = str(int(await cursor_now(client)) - 1)
    failures = (await client.get("/_sandbox/faults")).json()["counters"]["failures"]
    switched = await client.post("/_sandbox/faults", json={"fail_next": 1, "fail_status": fail_status,
                                                           "path_prefix": "/v1/despatches", "method": "GET"})
    assert switched.status_code == 200

    failed = await client.get("/v1/despatches", params={"after": start})
    healed = await client.get("/v1/despatches", params={"after": start})

    assert (failed.status_code, failed.json()["error"]["code"]) == (fail_status, "injected_fault")
    assert healed.status_code == 200 and [n["sales_order_number"] for n in healed.json()["despatches"]] == [number]
    assert (await client.get("/_sandbox/faults")).json()["counters"]["failures"] == failures + 1


async def test_despatch_notes_survive_a_sandbox_restart(client, serve_app, database_url):
    number, _ = await sales_order(client, MUG=1)
    note = await despatch(client, number, {"parcels": [{"carrier": "DPD", "tracking_number": "SURVIVES"}]})

    with serve_app(create_app(database_url, KEY, schema=SCHEMA), "a second Prima sandbox") as url:
        async with httpx.AsyncClient(base_url=url, timeout=10, headers=AUTH) as other:
            held = (await other.get(f"/v1/despatches/{note['despatch_id']}")).json()
            changes, _ = await feed(other, str(note["change_id"] - 1))

    assert held == note and changes[0] == note


async def test_what_the_sandbox_answers_has_exactly_the_documented_fields(client):
    schemas = yaml.safe_load(OPENAPI_PATH.read_text())["components"]["schemas"]
    number, _ = await sales_order(client, TEE=1)
    note = await despatch(client, number, {"parcels": [{"carrier": "DPD", "tracking_number": "F1",
                                                        "lines": [{"sku": "TEE", "quantity": 1}]}]})

    assert set(note) == set(schemas["DespatchNote"]["properties"]) == set(schemas["DespatchNote"]["required"])
    assert set(note["lines"][0]) == set(schemas["DespatchLine"]["properties"])
    assert set(note["parcels"][0]) == set(schemas["Parcel"]["properties"]) == set(schemas["Parcel"]["required"])
    assert set(note["parcels"][0]["lines"][0]) == set(schemas["ParcelLine"]["properties"])
    parsed = DespatchNote.model_validate(note)  # the contract's model reads it as served
    assert (parsed.despatch_id, parsed.parcels[0].lines[0].sku) == (note["despatch_id"], "TEE")
