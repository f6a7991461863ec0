"""Helpers of the order flow's integration tests: an in-memory Order application's events as
the relay publishes them (services/orders/outbox.py ORDER_RELAY), and those events applied to
the order-sync read model as the projector applies them (one batch, the next offsets)."""

from __future__ import annotations

from typing import Any

import asyncpg

from contracts.topics import ORDER_EVENTS
from domain.orders.application import OrderApplication
from projections.order_sync import OrderSyncProjection
from services.orders.outbox import ORDER_RELAY
from services.platform.kafka import Delivery
from services.platform.outbox import Relay
from services.platform.settings import Settings


def order_events(app: OrderApplication, settings: Settings, shopify_order_id: int | None = None) -> list[Any]:
    """Every Order event of `app`'s notification log as it goes to shopify-prima.order-events.v1
    (only one order's, given its id)."""
    relay = Relay(ORDER_RELAY, settings, broker=None, app=app)
    out, _ = relay.read(0)
    return [o.message for o in out if o.topic == ORDER_EVENTS.name
            and (shopify_order_id is None or o.message.shopify_order_id == shopify_order_id)]


async def project(projection: OrderSyncProjection, messages: list[Any], partition: int = 0) -> None:
    """Deliver `messages` to the projection as one batch at the offsets after its stored position
    (new offsets each time: what a relay that published again looks like)."""
    start = (await projection.positions(projection.pool)).get(partition, 0)
    await projection.handle([Delivery(m, ORDER_EVENTS.name, partition, start + i, str(m.shopify_order_id).encode())
                             for i, m in enumerate(messages)])


async def exceptions(pool: asyncpg.Pool, shopify_order_id: int) -> list[tuple[str, str]]:
    """(kind, status) of an order's exceptions, in the order they were raised."""
    return [(r["kind"], r["status"]) for r in await pool.fetch(
        "SELECT kind, status FROM readmodel.exceptions WHERE shopify_order_id = $1 ORDER BY raised_at, kind",
        shopify_order_id)]
