"""The order-sync read model (projections/order_sync.py) on a scratch database, fed the Order
events an in-memory Order application relays: a relay that publishes again (restarted between
publishing and storing its position) must not close an exception the order still has."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from domain.orders.application import OrderApplication
from domain.orders.values import SalesOrderParkedByGateway
from projections.order_sync import OrderSyncProjection, open_unmapped_sku_exceptions
from tests.orders.builders import (
    ITEMS,
    NOW,
    delivery,
    items,
    uk_vat_inclusive,
    us_tax_exclusive,
)
from tests.orders.integration.relayed import exceptions, order_events, project

pytestmark = pytest.mark.integration


class WithoutVersionDedupe(OrderSyncProjection):
    """The read model as it was before the platform applied each aggregate version once: the
    control that shows the tests below catch the defect."""

    def version_of(self, message: Any) -> tuple[UUID, int] | None:
        return None


@pytest.fixture
async def pool(scratch_pool):
    await scratch_pool.execute("TRUNCATE readmodel.order_sync, readmodel.exceptions, readmodel.positions, "
                               "readmodel.applied_versions")
    return scratch_pool


def quarantined_order(settings, shopify_order_id: int = 1001) -> list[Any]:
    """OrderReceived (v1), OrderQuarantined (v2): MUG-WHT is not in Prima."""
    app = OrderApplication()
    app.handle([delivery(uk_vat_inclusive(shopify_order_id))], items("TSHIRT-BLK-M"), NOW)
    return order_events(app, settings)


def parked_order(settings, shopify_order_id: int = 2001) -> list[Any]:
    """OrderReceived (v1), SalesOrderRequested (v2), SalesOrderParked (v3)."""
    app = OrderApplication()
    app.handle([delivery(us_tax_exclusive(shopify_order_id))], ITEMS, NOW)
    order = app.find_order(shopify_order_id)
    assert order is not None and order.command is not None
    app.handle([SalesOrderParkedByGateway(command_id=order.command.command_id, shopify_order_id=shopify_order_id,
                                          attempts=5, reason="HTTP 503", occurred_at=NOW)], ITEMS, NOW)
    return order_events(app, settings)


@pytest.mark.parametrize("projection_type", [OrderSyncProjection, WithoutVersionDedupe],
                         ids=["with-dedupe", "without-dedupe"])
async def test_a_quarantine_relayed_again_leaves_its_exception_open(pool, settings, projection_type):
    """Defect 2: OrderQuarantined (v2) applied; the relay restarts and publishes v1 and v2 again
    at new offsets. The second v2 used to resolve the open exception, then fail to insert its
    own (same exception id): the order stuck, its exception "resolved"."""
    projection = projection_type(pool)
    received, quarantined = quarantined_order(settings)
    assert [received.event_type, quarantined.event_type] == ["OrderReceived", "OrderQuarantined"]

    await project(projection, [received, quarantined])
    assert await exceptions(pool, 1001) == [("unmapped_sku", "open")]

    await project(projection, [received, quarantined])  # the relay published them again

    if projection_type is WithoutVersionDedupe:  # the control: the defect, as it was
        assert await exceptions(pool, 1001) == [("unmapped_sku", "resolved")]
        return
    assert await exceptions(pool, 1001) == [("unmapped_sku", "open")]
    assert await open_unmapped_sku_exceptions(pool) == [(1001, ("MUG-WHT",))]
    assert await pool.fetchval("SELECT state FROM readmodel.order_sync WHERE shopify_order_id = 1001") == (
        "quarantined")


@pytest.mark.parametrize("projection_type", [OrderSyncProjection, WithoutVersionDedupe],
                         ids=["with-dedupe", "without-dedupe"])
async def test_a_parked_command_relayed_again_leaves_its_exception_open(pool, settings, projection_type):
    projection = projection_type(pool)
    events = parked_order(settings)
    assert [e.event_type for e in events] == ["OrderReceived", "SalesOrderRequested", "SalesOrderParked"]

    await project(projection, events)
    assert await exceptions(pool, 2001) == [("command_parked", "open")]

    await project(projection, events[-1:])  # SalesOrderParked alone, at a new offset
    await project(projection, events)  # and the whole history once more

    if projection_type is WithoutVersionDedupe:
        assert await exceptions(pool, 2001) == [("command_parked", "resolved")]
        return
    assert await exceptions(pool, 2001) == [("command_parked", "open")]
    assert await pool.fetchval("SELECT state FROM readmodel.order_sync WHERE shopify_order_id = 2001") == "failed"
