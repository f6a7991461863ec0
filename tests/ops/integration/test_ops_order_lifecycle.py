"""The ops API's order-lifecycle side (services/ops/order_routes.py) on a scratch database whose
order-sync read model holds an order through its lifecycle (projected from an in-memory Order
application's events): an order's page shows its timeline, credit memos and cut-off state; the
credit memos list filters by state; `orders resolve` is one ResolveOrderChange command, only for
an order held at the cut-off."""

from __future__ import annotations

import asyncpg
import pytest

from contracts.platform import ResolveOrderChange
from domain.orders.policy import OrderPolicy
from projections.order_sync import OrderSyncProjection
from tests.orders.integration.relayed import order_events, project
from tests.orders.integration.test_order_lifecycle_read_model import ORDER_ID, lifecycle

pytestmark = pytest.mark.integration


@pytest.fixture
async def lifecycle_seeded(seeded, settings):
    """The seeded read model plus order ORDER_ID after its lifecycle (held at the cut-off, one
    credit memo created, one held)."""
    app, credited, held = lifecycle(OrderPolicy())
    pool = await asyncpg.create_pool(seeded, min_size=1, max_size=2)  # `seeded` emptied every read model
    try:
        await project(OrderSyncProjection(pool), order_events(app, settings))
    finally:
        await pool.close()
    return credited, held


def test_an_orders_page_shows_its_timeline_credit_memos_and_cut_off_state(api, lifecycle_seeded):
    credited, held = lifecycle_seeded

    order = api.get(f"/orders/{ORDER_ID}").json()

    assert order["cutoff"] == {"state": "passed", "prima_status": "picking",
                               "detail": order["cutoff"]["detail"]} and "picking" in order["cutoff"]["detail"]
    kinds = [entry["kind"] for entry in order["timeline"]]
    assert kinds[0] == "OrderReceived" and "ChangeHeldAtCutoff" in kinds
    assert [entry["aggregate_version"] for entry in order["timeline"]] == list(range(1, len(kinds) + 1))
    assert {(m["refund_id"], m["state"]) for m in order["credit_memos"]} == {(credited, "created"), (held, "held")}

    listed = api.get("/credit-memos", params={"state": "held"}).json()["credit_memos"]
    assert held in [m["refund_id"] for m in listed] and credited not in [m["refund_id"] for m in listed]
    assert api.get("/credit-memos", params={"state": "lost"}).status_code == 422


async def test_resolve_is_one_command_for_an_order_held_at_the_cut_off_and_refused_otherwise(
        api, lifecycle_seeded, tap):
    before = await tap.ends()

    accepted = api.post(f"/orders/{ORDER_ID}/resolve", params={"note": "picked short", "requested_by": "jo@ops"})
    quarantined = api.post("/orders/42/resolve")  # the seeded order 42 is quarantined, not held
    unknown = api.post("/orders/7/resolve")

    assert accepted.status_code == 202, accepted.text
    assert (quarantined.status_code, unknown.status_code) == (409, 404)
    [record] = await tap.since(before)
    assert type(record.message) is ResolveOrderChange
    assert (record.message.shopify_order_id, record.message.note, record.message.requested_by) == (
        ORDER_ID, "picked short", "jo@ops")
