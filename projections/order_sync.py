"""The order-sync read model: per Shopify order its state on the way to Prima, and the
exceptions that need a person. Built from the order-events topic; rebuildable from offset zero.

Rows are derived from event data and event timestamps only (never the clock), so a rebuild
gives identical rows. The projection base (projections/base.py) applies each batch in one
transaction with its positions and applies each aggregate version once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from contracts.orders.events import OrderEvent
from contracts.topics import ORDER_EVENTS
from domain.orders.domainmodel import OrderState, QuarantineReason
from projections.base import Projection, ReadModel

ORDER_SYNC = ReadModel(
    name="order_sync",
    states=tuple(str(s) for s in OrderState),
    exception_kinds=(*(str(r) for r in QuarantineReason), "prima_rejected", "command_parked"),
)


def release_action(shopify_order_id: int) -> str:
    return f"shopify-prima orders release {shopify_order_id}"


class OrderSyncProjection(Projection):
    read_model = ORDER_SYNC
    topic = ORDER_EVENTS
    accepts = (OrderEvent,)
    tables = ("readmodel.order_sync", "readmodel.exceptions")

    async def apply(self, conn: asyncpg.Connection, messages: Sequence[Any]) -> None:
        for e in messages:
            await apply_event(conn, e)

    async def counts(self, db: asyncpg.Pool | asyncpg.Connection) -> tuple[dict[str, int], dict[str, int]]:
        states, kinds = await super().counts(db)
        states.update({r["state"]: r["n"] for r in await db.fetch(
            "SELECT state, count(*) AS n FROM readmodel.order_sync GROUP BY state")})
        kinds.update({r["kind"]: r["n"] for r in await db.fetch(
            "SELECT kind, count(*) AS n FROM readmodel.exceptions WHERE status = 'open' GROUP BY kind")})
        return states, kinds


async def open_unmapped_sku_exceptions(db: asyncpg.Pool | asyncpg.Connection, limit: int = 1000
                                       ) -> list[tuple[int, tuple[str, ...]]]:
    """(Shopify order id, the SKUs it lacks) of each order with an open unmapped_sku exception,
    oldest first: what the order decider's sweep looks at to release orders whose items now
    exist in Prima."""
    rows = await db.fetch(
        """SELECT shopify_order_id, payload->'unmapped_skus' AS skus FROM readmodel.exceptions
           WHERE status = 'open' AND kind = $1 ORDER BY raised_at LIMIT $2""",
        str(QuarantineReason.UNMAPPED_SKU), limit)
    return [(r["shopify_order_id"], tuple(json.loads(r["skus"]) if r["skus"] else ())) for r in rows]


async def _raise_exception(conn: asyncpg.Connection, e: Any, kind: str, reason: str, payload: dict) -> None:
    await _resolve_open(conn, e)
    await conn.execute(
        """INSERT INTO readmodel.exceptions
           (exception_id, shopify_order_id, order_name, kind, reason, payload, action, status, raised_at)
           SELECT $1, $2, o.order_name, $3, $4, $5::jsonb, $6, 'open', $7
           FROM (SELECT $2::bigint AS id) k LEFT JOIN readmodel.order_sync o ON o.shopify_order_id = k.id
           ON CONFLICT (exception_id) DO NOTHING""",
        e.event_id, e.shopify_order_id, kind, reason, json.dumps(payload, default=str),
        release_action(e.shopify_order_id), e.timestamp,
    )


async def _resolve_open(conn: asyncpg.Connection, e: Any) -> None:
    await conn.execute(
        "UPDATE readmodel.exceptions SET status = 'resolved', resolved_at = $2 "
        "WHERE shopify_order_id = $1 AND status = 'open'",
        e.shopify_order_id, e.timestamp,
    )


async def _set(conn: asyncpg.Connection, e: Any, **columns: Any) -> None:
    names = list(columns)
    assignments = ", ".join(f"{name} = ${i + 4}" for i, name in enumerate(names))
    await conn.execute(
        f"UPDATE readmodel.order_sync SET last_event_at = $2, last_event_version = $3"
        f"{', ' if names else ''}{assignments} WHERE shopify_order_id = $1",
        e.shopify_order_id, e.timestamp, e.aggregate_version, *columns.values(),
    )


async def apply_event(conn: asyncpg.Connection, e: Any) -> None:
    t = e.event_type
    if t == "OrderReceived":
        o = e.order
        await conn.execute(
            """INSERT INTO readmodel.order_sync (shopify_order_id, order_name, state, financial_status, currency,
               total_price, total_tax, first_received_at, shopify_updated_at, last_event_at, last_event_version)
               VALUES ($1, $2, 'received', $3, $4, $5, $6, $7, $8, $9, $10)
               ON CONFLICT (shopify_order_id) DO NOTHING""",
            e.shopify_order_id, e.order_name, o.financial_status, o.currency, o.total_price.amount,
            o.total_tax.amount, e.received_at, o.updated_at, e.timestamp, e.aggregate_version,
        )
    elif t == "OrderUpdated":
        o = e.order
        await _set(conn, e, order_name=o.name, financial_status=o.financial_status, total_price=o.total_price.amount,
                   total_tax=o.total_tax.amount, shopify_updated_at=o.updated_at)
    elif t == "OrderAwaitingPayment":
        await _set(conn, e, state=OrderState.AWAITING_PAYMENT.value)
    elif t == "OrderQuarantined":
        await _set(conn, e, state=OrderState.QUARANTINED.value)
        await _raise_exception(conn, e, e.reason, e.detail, {"unmapped_skus": e.unmapped_skus})
    elif t == "SalesOrderRequested":
        await _set(conn, e, state=OrderState.SENT.value, sent_at=e.timestamp, command_id=e.command.command_id)
        await _resolve_open(conn, e)
    elif t == "SalesOrderCreated":
        await _set(conn, e, state=OrderState.IN_PRIMA.value, prima_sales_order_number=e.sales_order_number,
                   in_prima_at=e.timestamp)
        await _resolve_open(conn, e)
    elif t == "SalesOrderRejected":
        await _set(conn, e, state=OrderState.FAILED.value)
        await _raise_exception(conn, e, "prima_rejected", f"{e.code}: {e.reason}",
                               {"command_id": str(e.command_id), "status_code": e.status_code})
    elif t == "SalesOrderParked":
        await _set(conn, e, state=OrderState.FAILED.value)
        await _raise_exception(conn, e, "command_parked", e.reason,
                               {"command_id": str(e.command_id), "attempts": e.attempts})
    elif t == "OrderReleased":
        await _set(conn, e)
