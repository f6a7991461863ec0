"""The order decider's release sweep on a scratch database: the open unmapped_sku exceptions of
the order-sync read model and the item-master read model as the service reads them, the Order
application in memory. An order quarantined for an item Prima lacked is released, and sent,
once Prima's item fact reached the item master: nobody types `orders release`."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.prima.inventory import PrimaItemChanged
from domain.orders.application import OrderApplication
from domain.orders.domainmodel import OrderState
from projections import item_master, order_sync
from projections.item_master import ItemMasterProjection
from projections.order_sync import OrderSyncProjection
from services.orders.decider import OrderDecider
from services.platform.kafka import Delivery
from tests.orders.builders import NOW, received, uk_vat_inclusive
from tests.orders.integration.relayed import exceptions, order_events, project

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(scratch_pool):
    await scratch_pool.execute("TRUNCATE readmodel.order_sync, readmodel.exceptions, readmodel.item_master, "
                               "readmodel.positions, readmodel.applied_versions")
    return scratch_pool


async def prima_items(pool: Any, *skus: str, offset: int = 0) -> None:
    """Prima's item facts, applied to the item-master read model as the projector applies them."""
    projection = ItemMasterProjection(pool)
    await projection.handle([Delivery(PrimaItemChanged(sku=sku, item_id=f"ITM-{sku}", description=sku,
                                                       item_type="stock", active=True, updated_at=NOW,
                                                       polled_at=NOW), projection.topic.name, 0, offset + i,
                                      sku.encode())
                             for i, sku in enumerate(skus)])


async def test_a_quarantined_order_is_released_once_its_item_reaches_the_item_master(pool, settings):
    orders = OrderApplication()
    decider = OrderDecider(orders, lambda skus: item_master.items_for(pool, skus),
                           lambda: order_sync.open_unmapped_sku_exceptions(pool))
    read_model = OrderSyncProjection(pool)
    await prima_items(pool, "TSHIRT-BLK-M")
    await decider.handle([Delivery(received(uk_vat_inclusive(1001)), "shopify.orders.v1", 0, 0, None)])
    await project(read_model, order_events(orders, settings, 1001))
    assert await exceptions(pool, 1001) == [("unmapped_sku", "open")]

    assert await decider.release_resolved() == []  # MUG-WHT is not in Prima yet
    order = orders.find_order(1001)
    assert order is not None and order.state is OrderState.QUARANTINED

    await prima_items(pool, "MUG-WHT", offset=1)  # Prima's item fact arrives
    assert await decider.release_resolved() == [1001]

    order = orders.find_order(1001)
    assert order is not None and order.state is OrderState.SENT and order.command is not None
    events = order_events(orders, settings, 1001)
    assert [e.event_type for e in events] == ["OrderReceived", "OrderQuarantined", "OrderReleased",
                                              "SalesOrderRequested"]
    assert events[2].released_by == "auto: the item exists in Prima now"
    await project(read_model, events)
    assert await exceptions(pool, 1001) == [("unmapped_sku", "resolved")]
    assert await decider.release_resolved() == []  # nothing open any more
    orders.close()
