"""Ops HTTP API over the read models: orders, inventory health, exceptions (order and
inventory), full inventory comparisons (resync runs), health and metrics."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.config import Settings, get_settings
from services.metrics import EXCEPTIONS_OPEN, INVENTORY_LEVELS, ORDERS_BY_STATE
from services.runtime import start
from projections import inventory_health, order_sync

ORDER_STATES = ("received", "awaiting_payment", "quarantined", "sent", "in_prima", "failed")
ORDER_EXCEPTION_KINDS = ("unmapped_sku", "totals_mismatch", "prima_rejected", "command_parked")
EXCEPTION_COLUMNS = ("exception_id", "kind", "reason", "payload", "action", "status", "raised_at", "resolved_at")
SYNC_RUNS_MISSING = "inventory.sync_runs does not exist: the Shopify catalogue reader has not been set up"


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _row(record: asyncpg.Record) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, UUID) or (k in ("total_price", "total_tax") and v is not None) else v)
            for k, v in dict(record).items()}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=5, init=_init_connection)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(title="shopify-prima ops API", lifespan=lifespan)

    @app.get("/orders/{shopify_order_id}")
    async def get_order(shopify_order_id: int, request: Request):
        pool = request.app.state.pool
        row = await pool.fetchrow("SELECT * FROM readmodel.order_sync WHERE shopify_order_id = $1", shopify_order_id)
        if row is None:
            raise HTTPException(404, f"order {shopify_order_id} not seen")
        exceptions = await pool.fetch(
            "SELECT * FROM readmodel.exceptions WHERE shopify_order_id = $1 ORDER BY raised_at", shopify_order_id
        )
        return {**_row(row), "exceptions": [_row(e) for e in exceptions]}

    @app.get("/orders")
    async def list_orders(
        request: Request, state: str | None = Query(None), limit: int = Query(100, ge=1, le=1000),
    ):
        if state is not None and state not in ORDER_STATES:
            raise HTTPException(400, f"unknown state {state!r}; one of {', '.join(ORDER_STATES)}")
        rows = await request.app.state.pool.fetch(
            "SELECT * FROM readmodel.order_sync WHERE ($1::text IS NULL OR state = $1) "
            "ORDER BY last_event_at DESC LIMIT $2", state, limit,
        )
        return {"orders": [_row(r) for r in rows]}

    @app.get("/exceptions")
    async def list_exceptions(request: Request, status: str = Query("open", pattern="^(open|resolved|all)$"),
                              source: str = Query("all", pattern="^(order|inventory|all)$"),
                              limit: int = Query(100, ge=1, le=1000)):
        """Order and inventory exceptions, newest first. Every row names its `source` and carries
        both key sets (shopify_order_id/order_name for orders, sku/location_id for inventory)."""
        pool = request.app.state.pool
        found: list[dict[str, Any]] = []
        if source in ("order", "all"):
            rows = await pool.fetch(
                "SELECT * FROM readmodel.exceptions WHERE ($1 = 'all' OR status = $1) ORDER BY raised_at DESC LIMIT $2",
                status, limit,
            )
            found += [{"source": "order", **_row(r), "sku": None, "location_id": None} for r in rows]
        if source in ("inventory", "all"):
            rows = await pool.fetch(
                "SELECT * FROM readmodel.inventory_exceptions WHERE ($1 = 'all' OR status = $1) "
                "ORDER BY raised_at DESC LIMIT $2", status, limit,
            )
            found += [{"source": "inventory", "shopify_order_id": None, "order_name": None, **_row(r)} for r in rows]
        found.sort(key=lambda e: (e["raised_at"], str(e["exception_id"])), reverse=True)
        return {"exceptions": found[:limit]}

    # -- inventory ----------------------------------------------------------------------------
    # Declared before /inventory/{sku:path} so that these paths are not taken for SKUs.

    @app.get("/inventory/summary")
    async def inventory_summary(request: Request, sku: str | None = Query(None, description="SKU prefix")):
        pool = request.app.state.pool
        pattern = None if sku is None else sku.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        states = await inventory_health.health_counts(pool, pattern)
        return {"states": states, "total": sum(states.values()),
                "exceptions_open": await inventory_health.exception_counts(pool)}

    @app.post("/inventory/resync", status_code=202)
    async def request_resync(request: Request):
        """Ask the catalogue reader for a full comparison now; follow it at /inventory/resync/{run_id}."""
        try:
            run_id = await request.app.state.pool.fetchval(
                "INSERT INTO inventory.sync_runs (run_id, trigger, status, requested_at) "
                "VALUES (gen_random_uuid(), 'operator', 'requested', now()) RETURNING run_id"
            )
        except asyncpg.UndefinedTableError as exc:
            raise HTTPException(503, SYNC_RUNS_MISSING) from exc
        return {"run_id": str(run_id)}

    @app.get("/inventory/resync/{run_id}")
    async def get_resync(run_id: UUID, request: Request):
        pool = request.app.state.pool
        try:
            run = await pool.fetchrow("SELECT * FROM inventory.sync_runs WHERE run_id = $1", run_id)
        except asyncpg.UndefinedTableError as exc:
            raise HTTPException(503, SYNC_RUNS_MISSING) from exc
        if run is None:
            raise HTTPException(404, f"resync run {run_id} not found")
        observed = await pool.fetchval(
            "SELECT count(*) FROM readmodel.inventory_health WHERE last_sync_run_id = $1", run_id)
        return {"run": _row(run), "states": await inventory_health.health_counts(pool), "observed": observed}

    @app.get("/inventory")
    async def list_inventory(
        request: Request, state: str | None = Query(None), sku: str | None = Query(None, description="SKU prefix"),
        limit: int = Query(100, ge=1, le=1000),
    ):
        if state is not None and state not in inventory_health.STATES:
            raise HTTPException(400, f"unknown state {state!r}; one of {', '.join(inventory_health.STATES)}")
        rows = await request.app.state.pool.fetch(
            "SELECT * FROM readmodel.inventory_health WHERE ($1::text IS NULL OR state = $1) "
            "AND ($2::text IS NULL OR starts_with(sku, $2)) ORDER BY updated_at DESC, sku, location_id LIMIT $3",
            state, sku, limit,
        )
        return {"inventory": [_row(r) for r in rows]}

    @app.get("/inventory/{sku:path}")
    async def get_inventory(sku: str, request: Request):
        pool = request.app.state.pool
        catalog = await pool.fetchrow("SELECT * FROM readmodel.catalog_items WHERE sku = $1", sku)
        locations = await pool.fetch("SELECT * FROM readmodel.inventory_health WHERE sku = $1 ORDER BY location_id", sku)
        exceptions = await pool.fetch(
            "SELECT * FROM readmodel.inventory_exceptions WHERE sku = $1 ORDER BY raised_at, exception_id", sku)
        if catalog is None and not locations:
            raise HTTPException(404, f"SKU {sku} is not known to the inventory read model "
                                     "(no Prima stock or item and no Shopify variant seen for it)")
        return {"sku": sku, "catalog": _row(catalog) if catalog else None, "locations": [_row(r) for r in locations],
                "exceptions": [_row(e) for e in exceptions]}

    @app.get("/health")
    async def health(request: Request):
        await request.app.state.pool.fetchval("SELECT 1")
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics(request: Request):
        pool = request.app.state.pool
        states, kinds = await order_sync.state_counts(pool)
        for state in ORDER_STATES:
            ORDERS_BY_STATE.labels(state=state).set(states.get(state, 0))
        for kind in {*ORDER_EXCEPTION_KINDS, *kinds}:
            EXCEPTIONS_OPEN.labels(kind=kind).set(kinds.get(kind, 0))
        for state, n in (await inventory_health.health_counts(pool)).items():
            INVENTORY_LEVELS.labels(state=state).set(n)
        for kind, n in (await inventory_health.exception_counts(pool)).items():
            EXCEPTIONS_OPEN.labels(kind=kind).set(n)
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app


def main() -> None:
    settings = start()
    uvicorn.run(create_app(settings), host=settings.ops_api_host, port=settings.ops_api_port, log_level="warning")


if __name__ == "__main__":
    main()
