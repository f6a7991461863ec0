"""The ops API's routes for the order lifecycle (issue 9): what an order's page shows besides its
row (its timeline, its credit memos, its cut-off state), the credit memos across orders, and the
operator's ResolveOrderChange (a change held at the warehouse cut-off was dealt with by hand in
Prima), which the order decider handles. Reads only the order-sync read model's tables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import FastAPI, HTTPException, Path, Query, Request

from contracts.platform import ResolveOrderChange
from contracts.topics import order_key
from projections.order_sync import CREDIT_MEMO_STATES

MAX_ORDER_ID = 2**63 - 1


def _plain(record: asyncpg.Record) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, (UUID, Decimal)) else v) for k, v in dict(record).items()}


async def details(pool: asyncpg.Pool, shopify_order_id: int, row: asyncpg.Record) -> dict[str, Any]:
    """An order's timeline (oldest first), its credit memos, and its cut-off state."""
    timeline = await pool.fetch(
        "SELECT aggregate_version, at, kind, summary FROM readmodel.order_timeline WHERE shopify_order_id = $1 "
        "ORDER BY aggregate_version", shopify_order_id)
    memos = await pool.fetch(
        "SELECT * FROM readmodel.credit_memos WHERE shopify_order_id = $1 ORDER BY refunded_at, refund_id",
        shopify_order_id)
    return {
        "cutoff": {"state": row["cutoff_state"], "prima_status": row["prima_status"], "detail": row["cutoff_detail"]},
        "timeline": [_plain(r) for r in timeline],
        "credit_memos": [_plain(r) for r in memos],
    }


def register(app: FastAPI, send: Callable[[Any, bytes, str], Awaitable[Any]], stamp: Callable[[str], dict[str, Any]],
             auth: list[Any]) -> None:
    """`send(command, key, detail)` publishes an operator command (the API's own); `stamp(by)`
    gives its command_id, requested_by and requested_at."""

    @app.post("/orders/{shopify_order_id}/resolve", status_code=202, dependencies=auth)
    async def resolve_order_change(request: Request, shopify_order_id: int = Path(ge=1, le=MAX_ORDER_ID),
                                   note: str = Query("", max_length=500),
                                   requested_by: str = Query("ops-api", max_length=200)) -> Any:
        """A change held at the warehouse cut-off (state after_cutoff) was dealt with by hand in
        Prima: the order decider takes the order as it stands as what Prima holds."""
        state = await request.app.state.pool.fetchval(
            "SELECT state FROM readmodel.order_sync WHERE shopify_order_id = $1", shopify_order_id)
        if state is None:
            raise HTTPException(404, f"order {shopify_order_id} not seen")
        if state != "after_cutoff":
            raise HTTPException(409, f"order {shopify_order_id} is {state}: only a change held at the cut-off "
                                     "(after_cutoff) is resolved by hand")
        command = ResolveOrderChange(shopify_order_id=shopify_order_id, note=note, **stamp(requested_by))
        return await send(command, order_key(shopify_order_id), "the order decider takes the order as dealt with")

    @app.get("/credit-memos", dependencies=auth)
    async def list_credit_memos(request: Request, state: str | None = Query(None),
                                limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """Credit memos (one per Shopify refund), most recently changed first."""
        if state is not None and state not in CREDIT_MEMO_STATES:
            raise HTTPException(422, f"unknown state; one of {', '.join(CREDIT_MEMO_STATES)}")
        rows = await request.app.state.pool.fetch(
            "SELECT * FROM readmodel.credit_memos WHERE ($1::text IS NULL OR state = $1) "
            "ORDER BY updated_at DESC, refund_id LIMIT $2", state, limit)
        return {"credit_memos": [_plain(r) for r in rows]}
