"""The ops API's routes for the order fulfilment (issue 10): the order read model's fulfilment
(projections/order_fulfilment.py), shown with the order (GET /orders/{id} carries `fulfilment`)
and on its own, its exceptions in GET /exceptions (source "fulfilment"), and the operator's
ReleaseFulfilment, which the fulfilment decider handles (it reads the order's fulfillment orders
afresh and decides again; the same despatch keeps its idempotency key).

Reads: GET /fulfilments (by state), GET /fulfilments/{shopify_order_id}.
Writes (202, an operator command): POST /fulfilments/{shopify_order_id}/release (with
`settle_despatch=true`: and settle the exception's despatch, handled outside the integration).
Registered by services/ops/api.py (`register`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Path, Query, Request

from contracts.platform import ReleaseFulfilment
from contracts.topics import order_key
from projections.order_fulfilment import ORDER_FULFILMENT, fulfilment_of

MAX_ORDER_ID = 2**63 - 1


async def fulfilment(pool: asyncpg.Pool, shopify_order_id: int) -> dict[str, Any] | None:
    """The order's fulfilment as GET /orders/{id} shows it (None: nothing recorded for it yet)."""
    return await fulfilment_of(pool, shopify_order_id)


def exception_record(r: asyncpg.Record) -> dict[str, Any]:
    """A fulfilment exception as /exceptions lists every exception (source "fulfilment")."""
    x = r["x"]
    return {"source": "fulfilment", "exception_id": x["exception_id"], "kind": x["kind"], "reason": x["reason"],
            "payload": {"despatch_id": x["despatch_id"], "command_id": x["command_id"],
                        "released_by": x.get("released_by")},
            "action": x["action"], "status": r["status"],
            "raised_at": datetime.fromisoformat(x.get("since") or x["released_at"]),
            "resolved_at": datetime.fromisoformat(x["released_at"]) if x.get("released_at") else None,
            "shopify_order_id": r["shopify_order_id"], "order_name": r["order_name"], "sku": None,
            "location_id": None}


async def fulfilment_exceptions(pool: asyncpg.Pool, status: str, limit: int) -> list[asyncpg.Record]:
    """Open exceptions (the rows' `exception`) and resolved ones (released), newest first."""
    return await pool.fetch(
        """SELECT * FROM (
               SELECT f.shopify_order_id, o.order_name, f.exception AS x, 'open' AS status
               FROM readmodel.order_fulfilment f LEFT JOIN readmodel.order_sync o USING (shopify_order_id)
               WHERE $1 IN ('open', 'all') AND f.exception IS NOT NULL
               UNION ALL
               SELECT f.shopify_order_id, o.order_name, r.x, 'resolved' AS status
               FROM readmodel.order_fulfilment f LEFT JOIN readmodel.order_sync o USING (shopify_order_id)
               CROSS JOIN LATERAL jsonb_array_elements(f.released_exceptions) AS r(x)
               WHERE $1 IN ('resolved', 'all')
           ) e ORDER BY (x->>'since')::timestamptz DESC NULLS LAST, x->>'exception_id' LIMIT $2""",
        status, limit)


def register(app: FastAPI, send: Callable[[Any, bytes, str], Awaitable[Any]], stamp: Callable[[str], dict[str, Any]],
             auth: list[Any]) -> None:
    """`send(command, key, detail)` publishes an operator command (the API's own); `stamp(by)`
    gives its command_id, requested_by and requested_at."""

    @app.get("/fulfilments", dependencies=auth)
    async def list_fulfilments(request: Request, state: str | None = Query(None),
                               limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """Orders' fulfilments, most recently changed first (without their despatches' detail)."""
        if state is not None and state not in ORDER_FULFILMENT.states:
            raise HTTPException(422, f"unknown state; one of {', '.join(ORDER_FULFILMENT.states)}")
        rows = await request.app.state.pool.fetch(
            """SELECT f.shopify_order_id, o.order_name, f.state, f.tracking_numbers, f.exception_kind,
                      jsonb_array_length(f.despatches) AS despatches,
                      (SELECT count(*) FROM jsonb_array_elements(f.fulfilments) x
                       WHERE x->>'status' = 'created') AS fulfilments,
                      f.updated_at
               FROM readmodel.order_fulfilment f LEFT JOIN readmodel.order_sync o USING (shopify_order_id)
               WHERE ($1::text IS NULL OR f.state = $1) ORDER BY f.updated_at DESC, f.shopify_order_id LIMIT $2""",
            state, limit)
        return {"fulfilments": [dict(r) for r in rows]}

    @app.get("/fulfilments/{shopify_order_id}", dependencies=auth)
    async def get_fulfilment(request: Request, shopify_order_id: int = Path(ge=1, le=MAX_ORDER_ID)) -> dict[str, Any]:
        found = await fulfilment(request.app.state.pool, shopify_order_id)
        if found is None:
            raise HTTPException(404, f"no fulfilment recorded for order {shopify_order_id}")
        return found

    @app.post("/fulfilments/{shopify_order_id}/release", status_code=202, dependencies=auth)
    async def release_fulfilment(request: Request, shopify_order_id: int = Path(ge=1, le=MAX_ORDER_ID),
                                 requested_by: str = Query("ops-api", max_length=200),
                                 settle_despatch: bool = Query(False)) -> Any:
        """The order's fulfilment exception was dealt with (the hold released in Shopify, the
        despatch or the order put right): the fulfilment decider decides it again. With
        `settle_despatch`, the exception's despatch is settled (what the integration cannot fulfil
        of it taken as handled outside it) and the order's next despatches are decided."""
        kind = await request.app.state.pool.fetchrow(
            "SELECT state, exception_kind FROM readmodel.order_fulfilment WHERE shopify_order_id = $1",
            shopify_order_id)
        if kind is None:
            raise HTTPException(404, f"no fulfilment recorded for order {shopify_order_id}")
        if kind["exception_kind"] is None:
            raise HTTPException(409, f"order {shopify_order_id}'s fulfilment is {kind['state']} with no open "
                                     "exception: nothing to release")
        command = ReleaseFulfilment(shopify_order_id=shopify_order_id, settle_despatch=settle_despatch,
                                    **stamp(requested_by))
        return await send(command, order_key(shopify_order_id),
                          ("the fulfilment decider settles the exception's despatch, " if settle_despatch else
                           "the fulfilment decider ")
                          + "reads the fulfillment orders again and decides the order again")
