"""The Prima sandbox: serves contracts/prima/openapi.yaml, data in PostgreSQL, fault switches."""

from __future__ import annotations

import asyncio
import hmac
from collections import Counter, defaultdict
from contextlib import asynccontextmanager
from pathlib import Path

import yaml
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime
from starlette.exceptions import HTTPException
from starlette.routing import Match

import contracts

from .despatches import Despatches, add_despatch_routes
from .faults import Faults
from .journals import Journals, add_journal_routes
from .lifecycle import Lifecycle, add_lifecycle_routes
from .models import FaultConfig, ItemsUpsert, SalesOrderCreate, StockUpsertBody
from .store import ApiError, Store

OPENAPI_PATH = Path(contracts.__file__).parent / "prima" / "openapi.yaml"
SCHEMA = "prima_sandbox"


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def create_app(database_url: str, api_key: str, *, schema: str = SCHEMA) -> FastAPI:
    openapi_yaml = OPENAPI_PATH.read_text()
    openapi_doc = yaml.safe_load(openapi_yaml)
    faults = Faults()
    requests: defaultdict[str, Counter[str]] = defaultdict(Counter)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.store = await Store.open(database_url, schema)
        app.state.lifecycle = Lifecycle(app.state.store.pool)  # lifecycle.py: statuses, amend, cancel, memos
        await app.state.lifecycle.create_tables()
        app.state.journals = Journals(app.state.store.pool)  # journals.py, in the same schema
        await app.state.journals.create_tables()
        app.state.despatches = Despatches(app.state.store.pool)  # despatches.py: despatch notes, their feed
        await app.state.despatches.create_tables()
        try:
            yield
        finally:
            await app.state.store.close()

    app = FastAPI(title=openapi_doc["info"]["title"], version="v1", lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None)

    async def store(request: Request) -> Store:  # async: a sync dependency would run in a thread
        return request.app.state.store

    async def require_api_key(authorization: str = Header("")) -> None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError("unauthorized", "send Authorization: Bearer <api key>", 401,
                           {"WWW-Authenticate": 'Bearer realm="prima"'})

    # errors: one body everywhere
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error(422, "validation_error", details)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error(exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        return error(500, "internal_error", f"{type(exc).__name__}: {exc}")

    # faults (before or after the work) and request counters
    def route_path(scope: dict) -> str:
        for route in app.router.routes:
            if route.matches(scope)[0] is Match.FULL:
                return route.path
        return "(no route)"

    class FaultsAndCounts:
        """Pure ASGI middleware (Starlette's BaseHTTPMiddleware costs a task and a stream per
        request): a fault switch answers before the request reaches its route, or lets the route
        run and then answers late or not at all; every answer is counted per route and status."""

        def __init__(self, inner) -> None:
            self.inner = inner

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            method, path = scope["method"], scope["path"]
            status: list[int] = []

            async def counted(message) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                await send(message)

            body = None
            if faults.wants_body(method, path):  # read it whole, then hand it on as it came
                chunks = []
                while True:
                    message = await receive()
                    chunks.append(message.get("body", b""))
                    if message["type"] != "http.request" or not message.get("more_body"):
                        break
                body = b"".join(chunks)
                sent = False

                async def receive():  # the body read above, once, for the route
                    nonlocal sent
                    if sent:
                        return {"type": "http.disconnect"}
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
            fault = await faults.apply(method, path, body)
            if fault == "fail":
                response = error(faults.config.fail_status, "injected_fault",
                                 "injected by the sandbox fault switch; nothing was done")
                await response(scope, receive, counted)
            elif fault == "timeout":
                await error(504, "injected_timeout", "injected timeout; nothing was done")(scope, receive, counted)
            elif fault in ("commit_then_timeout", "commit_then_drop"):
                await self.after_work(fault, scope, receive, counted)
            else:
                await self.inner(scope, receive, counted)
            route = scope.get("route")  # set by the router once it matched (a fault answers before it)
            requests[f"{method} {route.path if route is not None else route_path(scope)}"][
                str(status[0] if status else 500)] += 1

        async def after_work(self, fault: str, scope, receive, send) -> None:
            """The route runs (what it does is committed), its answer is held back; then it is
            sent late (commit_then_timeout: the client gave up by then) or only its status line
            and headers are, and the connection is closed with the body missing
            (commit_then_drop: uvicorn closes it when the app returns with the response
            incomplete)."""
            delay = faults.config.commit_then_delay_seconds
            held: list[dict] = []

            async def hold(message) -> None:
                held.append(message)

            await self.inner(scope, receive, hold)
            if fault == "commit_then_timeout":
                await asyncio.sleep(delay)
                for message in held:
                    await send(message)
            else:
                await send(next(m for m in held if m["type"] == "http.response.start"))

    app.add_middleware(FaultsAndCounts)

    # the API
    @app.get("/v1/health")
    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/openapi.yaml")
    async def openapi_as_yaml() -> Response:
        return Response(openapi_yaml, media_type="application/yaml")

    @app.get("/openapi.json")
    async def openapi_as_json() -> dict:
        return openapi_doc

    auth = [Depends(require_api_key)]  # every /v1 route but health
    add_lifecycle_routes(app, auth)
    add_journal_routes(app, auth)
    add_despatch_routes(app, auth)
    from .omlink import add_omlink_routes  # Prima's own interface (SOAP, urn:omlink) beside the REST API

    add_omlink_routes(app)

    @app.get("/v1/items", dependencies=auth)
    async def list_items(changed_since: AwareDatetime | None = None, cursor: str | None = None,
                         after: str | None = None, limit: int = Query(200, ge=1, le=500),
                         db: Store = Depends(store)) -> dict:
        items, next_cursor = await db.list_items(changed_since, cursor, limit, after)
        return {"items": [i.model_dump(mode="json") for i in items], "next_cursor": next_cursor}

    @app.get("/v1/items/{sku}", dependencies=auth)
    async def get_item(sku: str, db: Store = Depends(store)) -> dict:
        if (item := await db.get_item(sku)) is None:
            raise ApiError("not_found", f"no item with SKU {sku!r}", 404)
        return item.model_dump(mode="json")

    @app.get("/v1/stock", dependencies=auth)
    async def list_stock(after: str | None = None, limit: int = Query(1000, ge=1, le=5000),
                         db: Store = Depends(store)) -> JSONResponse:
        rows, next_cursor, has_more = await db.list_stock(after, limit)
        # a JSONResponse as is: up to 5000 rows skip FastAPI's per-value encoder
        return JSONResponse({"stock": rows, "next_cursor": next_cursor, "has_more": has_more})

    @app.post("/v1/sales-orders", dependencies=auth)
    async def create_sales_order(body: SalesOrderCreate, idempotency_key: str | None = Header(None),
                                 db: Store = Depends(store)) -> JSONResponse:
        if idempotency_key is None:
            raise ApiError("idempotency_key_missing", "the Idempotency-Key header is required", 400)
        if not 1 <= len(idempotency_key) <= 128:
            raise ApiError("idempotency_key_invalid", "Idempotency-Key must be 1 to 128 characters", 400)
        created = await db.create_sales_order(idempotency_key, body)
        order = created.order.model_dump(mode="json")
        if created.replayed:
            return JSONResponse(order, 200, headers={"Idempotent-Replayed": "true"})
        return JSONResponse(order, 201, headers={"Location": f"/v1/sales-orders/{order['sales_order_number']}"})

    @app.get("/v1/sales-orders", dependencies=auth)
    async def find_sales_orders(external_reference: str | None = Query(None, min_length=1),
                                created_since: AwareDatetime | None = None, cursor: str | None = None,
                                limit: int = Query(100, ge=1, le=500), db: Store = Depends(store)) -> dict:
        if external_reference is not None:
            if cursor is not None or created_since is not None:
                raise ApiError("invalid_cursor", "external_reference is not combined with cursor or created_since", 400)
            orders = await db.find_sales_orders(external_reference)
            return {"sales_orders": [o.model_dump(mode="json") for o in orders]}
        orders, next_cursor = await db.list_sales_orders(created_since, cursor, limit)
        return {"sales_orders": [o.model_dump(mode="json") for o in orders], "next_cursor": next_cursor}

    @app.get("/v1/sales-orders/{sales_order_number}", dependencies=auth)
    async def get_sales_order(sales_order_number: str, db: Store = Depends(store)) -> dict:
        if (order := await db.get_sales_order(sales_order_number)) is None:
            raise ApiError("not_found", f"no sales order {sales_order_number}", 404)
        return order.model_dump(mode="json")

    # sandbox controls (no auth)
    @app.get("/_sandbox/faults")
    async def get_faults() -> dict:
        return faults.state()

    @app.post("/_sandbox/faults")
    async def set_faults(config: FaultConfig) -> dict:
        faults.config = config
        return faults.state()

    @app.delete("/_sandbox/faults")
    async def clear_faults() -> dict:
        faults.clear()
        return faults.state()

    @app.put("/_sandbox/items")
    async def upsert_items(body: ItemsUpsert, db: Store = Depends(store)) -> dict:
        return {"items": [i.model_dump(mode="json") for i in await db.upsert_items(body.items)]}

    @app.put("/_sandbox/stock")
    async def upsert_stock(body: StockUpsertBody, db: Store = Depends(store)) -> dict:
        return await db.upsert_stock(body.stock)

    @app.post("/_sandbox/reset")
    async def reset(items: bool = False, stock: bool = False, db: Store = Depends(store)) -> dict:
        await db.reset(items, stock)
        await app.state.lifecycle.reset()
        await app.state.journals.reset()
        await app.state.despatches.reset()
        faults.reset()
        requests.clear()
        return {"status": "reset"}

    @app.post("/_sandbox/sales-orders/{sales_order_number}/release")
    async def release(sales_order_number: str, db: Store = Depends(store)) -> dict:
        if (order := await db.release(sales_order_number)) is None:
            raise ApiError("not_found", f"no sales order {sales_order_number}", 404)
        return order.model_dump(mode="json")

    @app.get("/_sandbox/stats")
    async def stats(db: Store = Depends(store)) -> dict:
        return {**await db.stats(), "journals": await app.state.journals.count(),
                "credit_memos": await app.state.lifecycle.count(),
                "requests": {k: dict(v) for k, v in requests.items()}}

    return app
