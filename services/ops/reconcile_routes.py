"""The ops API's routes for the order reconciler (services/shopify/reconciler.py): ask for a run
(a ReconcileOrders command, which the reconciler handles), follow it, and list the reconciler's
exception records (the orphan watch: paid orders without a sales order, Prima sales orders
without a Shopify order; orders it read but could not feed). Reads only the reconciler's own
tables (ingest.reconcile_runs, ingest.reconciled_orders, ingest.reconciler_exceptions).

Registered by services/ops/api.py before its /orders/{shopify_order_id} route, so that
/orders/reconcile and /orders/orphans are not taken for an order id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from fastapi import FastAPI, HTTPException, Query, Request
from pydantic import AwareDatetime

from contracts.platform import ReconcileOrders

EXCEPTION_KINDS = ("paid_without_sales_order", "sales_order_without_shopify_order", "unreadable_order")


def _plain(record: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, UUID) else v) for k, v in dict(record).items()}


def exception_record(r: asyncpg.Record) -> dict[str, Any]:
    """A reconciler exception as /exceptions lists every exception (source "reconciler")."""
    return {"source": "reconciler", "exception_id": str(r["exception_id"]), "kind": r["kind"], "reason": r["reason"],
            "payload": {**(r["payload"] or {}), "sales_order_number": r["sales_order_number"]},
            "action": r["action"], "status": r["status"], "raised_at": r["raised_at"],
            "resolved_at": r["resolved_at"], "shopify_order_id": r["shopify_order_id"], "order_name": r["order_name"],
            "sku": None, "location_id": None}


async def reconciler_exceptions(pool: asyncpg.Pool, status: str, limit: int, kind: str | None = None
                                ) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM ingest.reconciler_exceptions WHERE ($1 = 'all' OR status = $1) "
        "AND ($2::text IS NULL OR kind = $2) ORDER BY raised_at DESC, exception_id LIMIT $3", status, kind, limit)


def register(routes: FastAPI, send: Callable[[Any, bytes, str], Awaitable[Any]],
             stamp: Callable[[str], dict[str, Any]], auth: list[Any]) -> None:
    """Add the routes to the ops API app. `send(command, key, detail)` publishes an operator
    command (the API's own); `stamp(by)` gives its command_id, requested_by and requested_at.
    On the app itself, not an included router: the app's routes stay plain routes for what lists
    them (OpenAPI, the tests that check every route wants the token)."""

    @routes.post("/orders/reconcile", status_code=202, dependencies=auth)
    async def reconcile(since: AwareDatetime = Query(description="ISO 8601 with its offset: orders updated since"),
                        requested_by: str = Query("ops-api", max_length=200)) -> dict[str, Any]:
        """Ask the order reconciler to read every order Shopify updated since `since` and feed the
        ones the integration has not seen; follow it at /orders/reconcile/{run_id}."""
        if since > datetime.now(UTC):
            raise HTTPException(422, "since is in the future: nothing was updated since then")
        command = ReconcileOrders(run_id=uuid4(), since=since, **stamp(requested_by))
        accepted = await send(command, str(command.run_id).encode(),
                              "the order reconciler reads the orders Shopify updated since then")
        return {**accepted.model_dump(mode="json"), "run_id": str(command.run_id)}

    @routes.get("/orders/reconcile", dependencies=auth)
    async def list_runs(request: Request, limit: int = Query(20, ge=1, le=200)) -> dict[str, Any]:
        """The reconciler's watermark and its latest runs."""
        pool = request.app.state.pool
        state = await pool.fetchrow("SELECT watermark, prima_checked_until FROM ingest.reconciler_state "
                                    "WHERE name = 'orders'")
        runs = await pool.fetch("SELECT * FROM ingest.reconcile_runs ORDER BY requested_at DESC LIMIT $1", limit)
        return {"watermark": state["watermark"] if state else None,
                "prima_checked_until": state["prima_checked_until"] if state else None,
                "runs": [_plain(r) for r in runs]}

    @routes.get("/orders/reconcile/{run_id}", dependencies=auth)
    async def get_run(request: Request, run_id: UUID) -> dict[str, Any]:
        """A run's progress (orders_total, orders_read, orders_fed ...) and the orders it fed."""
        pool = request.app.state.pool
        run = await pool.fetchrow("SELECT * FROM ingest.reconcile_runs WHERE run_id = $1", run_id)
        if run is None:
            raise HTTPException(404, f"reconcile run {run_id} not recorded (yet) by the order reconciler")
        fed = await pool.fetch(
            "SELECT shopify_order_id, shopify_updated_at, published_at FROM ingest.reconciled_orders WHERE run_id = $1 "
            "ORDER BY shopify_updated_at, shopify_order_id LIMIT 1000", run_id)
        return {"run": _plain(run), "fed": [_plain(f) for f in fed]}

    @routes.get("/orders/orphans", dependencies=auth)
    async def orphans(request: Request, status: str = Query("open", pattern="^(open|resolved|all)$"),
                      kind: str | None = Query(None), limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """The orphan watch: paid orders without a sales order after the deadline, Prima sales
        orders without a Shopify order (and orders the reconciler could not feed), newest first."""
        if kind is not None and kind not in EXCEPTION_KINDS:
            raise HTTPException(422, f"unknown kind {kind!r}; one of {', '.join(EXCEPTION_KINDS)}")
        rows = await reconciler_exceptions(request.app.state.pool, status, limit, kind)
        return {"orphans": [exception_record(r) for r in rows]}
