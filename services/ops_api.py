"""Ops HTTP API over the read models: orders, exceptions, health and metrics."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.config import Settings, get_settings
from services.metrics import EXCEPTIONS_OPEN, ORDERS_BY_STATE
from services.runtime import start
from projections import order_sync

ORDER_STATES = ("received", "awaiting_payment", "quarantined", "sent", "in_prima", "failed")


def _row(record: asyncpg.Record) -> dict[str, Any]:
    return {k: (str(v) if k in ("total_price", "total_tax", "command_id", "exception_id") and v is not None else v)
            for k, v in dict(record).items()}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=5)
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
                              limit: int = Query(100, ge=1, le=1000)):
        rows = await request.app.state.pool.fetch(
            "SELECT * FROM readmodel.exceptions WHERE ($1 = 'all' OR status = $1) ORDER BY raised_at DESC LIMIT $2",
            status, limit,
        )
        return {"exceptions": [_row(r) for r in rows]}

    @app.get("/health")
    async def health(request: Request):
        await request.app.state.pool.fetchval("SELECT 1")
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics(request: Request):
        states, kinds = await order_sync.state_counts(request.app.state.pool)
        for state in ORDER_STATES:
            ORDERS_BY_STATE.labels(state=state).set(states.get(state, 0))
        for kind, n in kinds.items():
            EXCEPTIONS_OPEN.labels(kind=kind).set(n)
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app


def main() -> None:
    settings = start()
    uvicorn.run(create_app(settings), host=settings.ops_api_host, port=settings.ops_api_port, log_level="warning")


if __name__ == "__main__":
    main()
