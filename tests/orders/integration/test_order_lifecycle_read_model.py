"""The order-sync read model's lifecycle side (projections/order_sync.py) on a scratch database,
fed the events an in-memory Order application relays: each order's timeline, its credit memos
(one row per Shopify refund), its cut-off state, and exceptions that name their subject (the
order, or one refund of it) so that each is raised and resolved apart."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.catalog.items import ItemType
from domain.orders.application import OrderApplication
from domain.orders.domainmodel import Order
from domain.orders.policy import OrderPolicy
from domain.orders.values import (
    ChangeResolutionRequested,
    CreditMemoCreatedByPrima,
    SalesOrderChangeRefusedByPrima,
    SalesOrderCreatedByPrima,
)
from projections.order_sync import OrderSyncProjection
from tests.orders.builders import (
    ITEMS,
    NOW,
    D,
    delivery,
    edited,
    item,
    refund_delivery,
    refunded,
    standing,
    us_tax_exclusive,
)
from tests.orders.integration.relayed import order_events, project

pytestmark = pytest.mark.integration
ORDER_ID = 3001
MASTER = {**ITEMS, "GOODWILL": item("GOODWILL", item_type=ItemType.SERVICE)}


@pytest.fixture
async def pool(scratch_pool):
    await scratch_pool.execute("TRUNCATE readmodel.order_sync, readmodel.exceptions, readmodel.positions, "
                               "readmodel.applied_versions, readmodel.order_timeline, readmodel.credit_memos")
    return scratch_pool


def order_of(app: OrderApplication) -> Order:
    order = app.find_order(ORDER_ID)
    assert order is not None
    return order


def lifecycle(policy: OrderPolicy) -> tuple[OrderApplication, int, int]:
    """A paid order in Prima; a refund credited; a goodwill refund held (no goodwill item set);
    an edit Prima refused because the warehouse is picking. (app, credited refund, held refund)."""
    app = OrderApplication()
    original = standing(us_tax_exclusive(ORDER_ID))
    app.handle([delivery(original)], MASTER, NOW, policy)
    command = order_of(app).command
    assert command is not None
    app.handle([SalesOrderCreatedByPrima(command_id=command.command_id, shopify_order_id=ORDER_ID,
                                         sales_order_number="SO-000300", status="open", occurred_at=NOW)],
               MASTER, NOW, policy)
    credited, after = refunded(original, 31, lines=[(original.lines[0].line_id, 1, "return")])
    goodwill, after = refunded(after, 32, amount=D("5.00"), minutes=2)
    app.handle([refund_delivery(credited), refund_delivery(goodwill)], MASTER, NOW, policy)
    memo = order_of(app).memos[31].command
    assert memo is not None
    app.handle([CreditMemoCreatedByPrima(command_id=memo.command_id, shopify_order_id=ORDER_ID, refund_id=31,
                                         credit_memo_number="CM-000007", total=memo.credit_memo.totals.total,
                                         occurred_at=NOW)], MASTER, NOW, policy)
    app.handle([delivery(edited(after, remove={original.lines[1].line_id: 2}, minutes=3), "orders/updated")],
               MASTER, NOW, policy)
    change = order_of(app).change
    assert change is not None
    app.handle([SalesOrderChangeRefusedByPrima(command_id=change.command_id, shopify_order_id=ORDER_ID,
                                               sales_order_number="SO-000300", status="picking",
                                               reason="the sales order is picking", occurred_at=NOW)],
               MASTER, NOW, policy)
    return app, 31, 32


async def open_exceptions(pool) -> list[tuple[str, str]]:
    return [(r["subject"], r["kind"]) for r in await pool.fetch(
        "SELECT subject, kind FROM readmodel.exceptions WHERE shopify_order_id = $1 AND status = 'open' "
        "ORDER BY subject", ORDER_ID)]


async def test_given_an_order_through_its_lifecycle_then_the_read_model_shows_timeline_memos_and_cut_off(
        pool, settings):
    app, credited, held = lifecycle(OrderPolicy())
    events = order_events(app, settings)
    projection = OrderSyncProjection(pool)

    await project(projection, events)
    await project(projection, events)  # the relay published them all again

    row = await pool.fetchrow("SELECT * FROM readmodel.order_sync WHERE shopify_order_id = $1", ORDER_ID)
    assert (row["state"], row["prima_status"], row["cutoff_state"], row["prima_sales_order_number"]) == (
        "after_cutoff", "picking", "passed", "SO-000300")
    timeline = await pool.fetch("SELECT aggregate_version, kind, summary FROM readmodel.order_timeline "
                                "WHERE shopify_order_id = $1 ORDER BY aggregate_version", ORDER_ID)
    assert [r["kind"] for r in timeline] == [e.event_type for e in events]  # every event once, in order
    assert [r["aggregate_version"] for r in timeline] == list(range(1, len(events) + 1))
    assert "ChangeHeldAtCutoff" in [r["kind"] for r in timeline]

    memos = {r["refund_id"]: r for r in await pool.fetch(
        "SELECT * FROM readmodel.credit_memos WHERE shopify_order_id = $1", ORDER_ID)}
    assert memos[credited]["state"] == "created" and memos[credited]["credit_memo_number"] == "CM-000007"
    assert memos[credited]["total"] == memos[credited]["refunded"] and memos[credited]["restock_types"] == ["return"]
    assert memos[held]["state"] == "held" and memos[held]["refunded"] == Decimal("5.00")
    assert "ORDER_GOODWILL_ITEM" in memos[held]["problem"]

    assert await open_exceptions(pool) == [("order", "changed_after_cutoff"), (f"refund:{held}", "credit_memo_unmapped")]
    cutoff = await pool.fetchrow("SELECT reason, action, payload FROM readmodel.exceptions WHERE shopify_order_id = $1 "
                                 "AND status = 'open' AND subject = 'order'", ORDER_ID)
    assert "SOCKS-3PK" in cutoff["reason"] and "picking" in cutoff["reason"]
    assert "SO-000300" in cutoff["action"] and f"orders resolve {ORDER_ID}" in cutoff["action"]


async def test_given_a_change_resolved_by_hand_then_only_the_orders_exception_closes(pool, settings):
    app, _, held = lifecycle(OrderPolicy())
    app.handle([ChangeResolutionRequested(shopify_order_id=ORDER_ID, resolved_by="ops", note="picked short",
                                          requested_at=NOW)], MASTER, NOW, OrderPolicy())
    projection = OrderSyncProjection(pool)

    await project(projection, order_events(app, settings))

    assert await pool.fetchval("SELECT state FROM readmodel.order_sync WHERE shopify_order_id = $1",
                               ORDER_ID) == "in_prima"
    assert await open_exceptions(pool) == [(f"refund:{held}", "credit_memo_unmapped")]
