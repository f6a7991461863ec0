"""The ops API: reads the read models, and changes things only by sending operator commands
(contracts/platform.py) that the owning process handles. Every route but /health and /metrics
requires `Authorization: Bearer <SHOPIFY_PRIMA_OPS_API_TOKEN>` (the OpenAPI document and /docs
too); without a configured token the API does not start.

Reads: orders, inventory health, exceptions (orders, inventory, dead letters, the order
reconciler's), parked commands, projections (positions, rebuilds), full-comparison runs, reconcile
runs and the orphan watch (services/ops/reconcile_routes.py).
Writes (202 Accepted, the command's id): release an order, release a SKU-location, run a full
comparison, rebuild a read model, retry a parked command, re-drive a dead letter, reconcile orders,
release an order's fulfilment (services/ops/fulfilment_routes.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel, Field, ValidationError

from contracts.platform import (
    RebuildProjection,
    RedriveDeadLetter,
    ReleaseOrder,
    ReleaseStockLevel,
    RequestFullComparison,
    RetryParkedCommand,
)
from contracts.prima.inventory import sku_key
from contracts.topics import OPERATIONS, order_key
from contracts.validation import Code
from projections import PROJECTIONS, READ_MODELS
from projections import inventory_health as ih
from projections.order_sync import ORDER_SYNC
from services.ops import (
    fulfilment_routes,
    order_routes,
    payout_routes,
    reconcile_routes,
)
from services.platform.kafka import Outgoing, make_broker, publish_within
from services.platform.runner import run_http, start_broker
from services.platform.settings import Settings, get_settings

EXCEPTION_SOURCES = ("order", "inventory", "dead_letter", "reconciler", "payout", "fulfilment")
MAX_ORDER_ID = 2**63 - 1


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {k: (str(v) if isinstance(v, UUID) or (k in ("total_price", "total_tax") and v is not None) else v)
            for k, v in dict(record).items()}


class Accepted(BaseModel):
    command_id: UUID
    message_type: str
    detail: str


class StockRelease(BaseModel):
    sku: Code = Field(min_length=1)
    location_id: Code = Field(min_length=1)


def _problems(errors: list[Any]) -> list[dict[str, Any]]:
    """pydantic's errors without the input (never echoed: it may be large, or a customer's) and
    at most ten of them."""
    return [{"loc": [str(part)[:100] for part in e.get("loc", ())], "msg": str(e.get("msg", ""))[:200],
             "type": e.get("type")} for e in errors[:10]]


def refuse_bad_input(app: FastAPI) -> None:
    """Nothing a client sends is a 500 (issue 13), on every route, those to come included:
    a path, query or body that does not validate is 422 without its input echoed; a command the
    contracts refuse (contracts/validation.py: a NUL, an id beyond int64) is 422; a value
    PostgreSQL cannot take (asyncpg's DataError: a NUL in text, a number out of range) is 422."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _problems(list(exc.errors()))}, status_code=422)

    @app.exception_handler(ValidationError)
    async def invalid_command(request: Request, exc: ValidationError) -> JSONResponse:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        return JSONResponse({"detail": _problems(errors)}, status_code=422)

    @app.exception_handler(asyncpg.DataError)
    async def invalid_value(request: Request, exc: asyncpg.DataError) -> JSONResponse:
        return JSONResponse({"detail": f"a parameter is not a value the read models hold ({type(exc).__name__})"},
                            status_code=422)


def create_app(settings: Settings | None = None, *, operations_topic: str = OPERATIONS.name) -> FastAPI:
    """The ops API. `operations_topic`: where operator commands go (tests give a topic of their
    own, so that no process of a running stack acts on them)."""
    settings = settings or get_settings()
    if settings.ops_api_token is None or not settings.ops_api_token.get_secret_value():
        raise SystemExit("SHOPIFY_PRIMA_OPS_API_TOKEN is not set: the ops API does not run without a bearer token")
    token = settings.ops_api_token.get_secret_value().encode()
    broker = make_broker(settings, "ops-api")

    async def require_token(authorization: str = Header("", include_in_schema=False)) -> None:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
            raise HTTPException(401, "send Authorization: Bearer <ops API token>",
                                headers={"WWW-Authenticate": 'Bearer realm="shopify-prima ops"'})

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # min_size=0 and Kafka connected in the background: the API starts, and answers 503 for
        # what needs them, while PostgreSQL or Kafka is down
        app.state.pool = await asyncpg.create_pool(settings.database_url, min_size=0, max_size=5,
                                                   init=_init_connection, timeout=5)
        stop = asyncio.Event()
        connecting = asyncio.create_task(start_broker(broker, stop))
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(connecting, return_exceptions=True)
            await broker.stop()
            await app.state.pool.close()

    app = FastAPI(title="shopify-prima ops API", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    auth = [Depends(require_token)]
    refuse_bad_input(app)

    @app.exception_handler(asyncpg.PostgresConnectionError)
    @app.exception_handler(asyncpg.InterfaceError)
    @app.exception_handler(asyncpg.CannotConnectNowError)
    @app.exception_handler(OSError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        """PostgreSQL (or Kafka, for a write) is down: 503, try again shortly; never a 500."""
        return JSONResponse({"detail": f"a dependency is unavailable ({type(exc).__name__}); try again shortly"},
                            status_code=503, headers={"Retry-After": "5"})

    async def send(command: Any, key: bytes, detail: str) -> Accepted:
        try:
            await publish_within(broker, [Outgoing(operations_topic, key, command)], 5.0)
        except Exception as exc:  # noqa: BLE001 - Kafka down or slow: the command was not sent
            raise HTTPException(503, f"Kafka unavailable, the command was not sent ({type(exc).__name__}); "
                                     "try again shortly", headers={"Retry-After": "5"}) from exc
        return Accepted(command_id=command.command_id, message_type=command.message_type, detail=detail)

    def stamp(requested_by: str) -> dict[str, Any]:
        return {"command_id": uuid4(), "requested_by": requested_by[:200], "requested_at": datetime.now(UTC)}

    # the order reconciler's routes (/orders/reconcile, /orders/orphans) before /orders/{shopify_order_id}
    reconcile_routes.register(app, send, stamp, auth)
    # the payout flow's routes (/payouts, /payouts/report, /payouts/{payout_id}, its commands)
    payout_routes.register(app, send, stamp, auth, settings.payout_unpaid_after_days, settings.payout_clearing_accounts)
    # the order lifecycle's routes (/orders/{id}/resolve, /credit-memos)
    order_routes.register(app, send, stamp, auth)
    # the order fulfilment's routes (/fulfilments, /fulfilments/{id}, its release)
    fulfilment_routes.register(app, send, stamp, auth)

    # -- orders ---------------------------------------------------------------------------------

    @app.get("/orders/{shopify_order_id}", dependencies=auth)
    async def get_order(request: Request, shopify_order_id: int = Path(ge=1, le=MAX_ORDER_ID)):
        pool = request.app.state.pool
        row = await pool.fetchrow("SELECT * FROM readmodel.order_sync WHERE shopify_order_id = $1", shopify_order_id)
        if row is None:
            raise HTTPException(404, f"order {shopify_order_id} not seen")
        exceptions = await pool.fetch(
            "SELECT * FROM readmodel.exceptions WHERE shopify_order_id = $1 ORDER BY raised_at", shopify_order_id)
        return {**_row(row), "exceptions": [_row(e) for e in exceptions],
                **await order_routes.details(pool, shopify_order_id, row),
                "fulfilment": await fulfilment_routes.fulfilment(pool, shopify_order_id)}

    @app.get("/orders", dependencies=auth)
    async def list_orders(request: Request, state: str | None = Query(None),
                          limit: int = Query(100, ge=1, le=1000)):
        if state is not None and state not in ORDER_SYNC.states:
            raise HTTPException(422, f"unknown state; one of {', '.join(ORDER_SYNC.states)}")
        rows = await request.app.state.pool.fetch(
            "SELECT * FROM readmodel.order_sync WHERE ($1::text IS NULL OR state = $1) "
            "ORDER BY last_event_at DESC LIMIT $2", state, limit)
        return {"orders": [_row(r) for r in rows]}

    @app.post("/orders/{shopify_order_id}/release", status_code=202, dependencies=auth)
    async def release_order(shopify_order_id: int = Path(ge=1, le=MAX_ORDER_ID),
                            requested_by: str = Query("ops-api", max_length=200)) -> Accepted:
        """Ask the order decider to decide a quarantined or failed order again."""
        command = ReleaseOrder(shopify_order_id=shopify_order_id, **stamp(requested_by))
        return await send(command, order_key(shopify_order_id), "the order decider decides the order again")

    @app.get("/items/{sku:path}", dependencies=auth)
    async def get_item(request: Request, sku: str = Path(max_length=255)):
        """A SKU as the item-master read model knows it (what the order decider maps SKUs with)."""
        if "\x00" in sku:
            raise HTTPException(422, "a SKU has no NUL character")
        row = await request.app.state.pool.fetchrow("SELECT * FROM readmodel.item_master WHERE sku = $1", sku)
        if row is None:
            raise HTTPException(404, "SKU not in the item master (no Prima item fact for it yet)")
        return _row(row)

    # -- exceptions -------------------------------------------------------------------------------

    @app.get("/exceptions", dependencies=auth)
    async def list_exceptions(request: Request, status: str = Query("open", pattern="^(open|resolved|all)$"),
                              source: str = Query("all", pattern="^(order|inventory|dead_letter|reconciler|payout|fulfilment|all)$"),
                              limit: int = Query(100, ge=1, le=1000)):
        """Order, inventory and dead-letter exceptions, newest first; each names its `source`."""
        pool = request.app.state.pool
        found: list[dict[str, Any]] = []
        if source in ("order", "all"):
            rows = await pool.fetch(
                "SELECT * FROM readmodel.exceptions WHERE ($1 = 'all' OR status = $1) ORDER BY raised_at DESC LIMIT $2",
                status, limit)
            found += [{"source": "order", **_row(r), "sku": None, "location_id": None} for r in rows]
        if source in ("inventory", "all"):
            rows = await pool.fetch(
                "SELECT * FROM readmodel.inventory_exceptions WHERE ($1 = 'all' OR status = $1) "
                "ORDER BY raised_at DESC LIMIT $2", status, limit)
            found += [{"source": "inventory", "shopify_order_id": None, "order_name": None, **_row(r)} for r in rows]
        if source in ("dead_letter", "all"):
            rows = await pool.fetch(
                "SELECT * FROM readmodel.dead_letters WHERE ($1 = 'all' OR status = $1) "
                "ORDER BY dead_lettered_at DESC LIMIT $2", status, limit)
            found += [_dead_letter_exception(r) for r in rows]
        if source in ("reconciler", "all"):
            found += [reconcile_routes.exception_record(r)
                      for r in await reconcile_routes.reconciler_exceptions(pool, status, limit)]
        if source in ("payout", "all"):
            found += [payout_routes.exception_record(r) for r in await payout_routes.payout_exceptions(pool, status, limit)]
        if source in ("fulfilment", "all"):
            found += [fulfilment_routes.exception_record(r)
                      for r in await fulfilment_routes.fulfilment_exceptions(pool, status, limit)]
        found.sort(key=lambda e: (e["raised_at"], str(e["exception_id"])), reverse=True)
        return {"exceptions": found[:limit]}

    # -- dead letters and parked commands ----------------------------------------------------------

    @app.get("/dead-letters", dependencies=auth)
    async def list_dead_letters(request: Request, status: str = Query("open", pattern="^(open|resolved|all)$"),
                                limit: int = Query(100, ge=1, le=1000)):
        rows = await request.app.state.pool.fetch(
            "SELECT dead_letter_id, consumer_group, topic, kafka_partition, kafka_offset, original_message_type, "
            "reason, error, attempts, status, dead_lettered_at, resolved_at FROM readmodel.dead_letters "
            "WHERE ($1 = 'all' OR status = $1) ORDER BY dead_lettered_at DESC LIMIT $2", status, limit)
        return {"dead_letters": [_row(r) for r in rows]}

    @app.post("/dead-letters/{dead_letter_id}/redrive", status_code=202, dependencies=auth)
    async def redrive(request: Request, dead_letter_id: UUID,
                      requested_by: str = Query("ops-api", max_length=200)) -> Accepted:
        """Hand a dead letter to its consumer group's handler again (after fixing the cause)."""
        row = await request.app.state.pool.fetchrow(
            "SELECT * FROM readmodel.dead_letters WHERE dead_letter_id = $1", dead_letter_id)
        if row is None:
            raise HTTPException(404, f"dead letter {dead_letter_id} not found")
        if row["topic"].startswith("notification-log:"):
            raise HTTPException(409, "a notification the outbox relay could not relay is not re-driven by a "
                                     "consumer group: fix the relay table and rebuild the event's message")
        command = RedriveDeadLetter(
            dead_letter_id=dead_letter_id, group=row["consumer_group"], topic=row["topic"],
            key_base64=row["key_base64"], value_base64=row["value_base64"], headers=row["headers"],
            **stamp(requested_by))
        return await send(command, str(dead_letter_id).encode(), f"{row['consumer_group']} handles it again")

    @app.get("/parked-commands", dependencies=auth)
    async def list_parked(request: Request, gateway: str | None = Query(None, pattern="^(prima|shopify)$"),
                          status: str = Query("open", pattern="^(open|all)$"),
                          limit: int = Query(100, ge=1, le=1000)):
        """Parked commands; `open` (the default): not yet resolved. Each says where it stands:
        `redriving` (its gateway sends it again once the target answers; next_attempt_at),
        `given_up` (past the horizon: a person must look), or `resolved`."""
        rows = await request.app.state.pool.fetch(
            """SELECT command_id, gateway, subject, message_type, reason, attempts, parked_at, retried_at,
                      redrives, next_attempt_at, given_up_at, resolved_at,
                      CASE WHEN resolved_at IS NOT NULL THEN 'resolved'
                           WHEN given_up_at IS NOT NULL THEN 'given_up' ELSE 'redriving' END AS status
               FROM gateway.parked_commands
               WHERE ($1::text IS NULL OR gateway = $1) AND ($2 = 'all' OR resolved_at IS NULL)
               ORDER BY parked_at DESC LIMIT $3""",
            gateway, status, limit)
        return {"parked_commands": [_row(r) for r in rows]}

    @app.post("/parked-commands/{command_id}/retry", status_code=202, dependencies=auth)
    async def retry_parked(request: Request, command_id: UUID,
                           requested_by: str = Query("ops-api", max_length=200)) -> Accepted:
        row = await request.app.state.pool.fetchrow(
            "SELECT gateway, subject FROM gateway.parked_commands WHERE command_id = $1", command_id)
        if row is None:
            raise HTTPException(404, f"no parked command {command_id}")
        command = RetryParkedCommand(parked_command_id=command_id, gateway=row["gateway"], **stamp(requested_by))
        return await send(command, row["subject"].encode(), f"the {row['gateway']} gateway sends it again")

    # -- projections ---------------------------------------------------------------------------------

    @app.get("/projections", dependencies=auth)
    async def list_projections(request: Request):
        pool = request.app.state.pool
        return {"projections": [await _projection(pool, name) for name in PROJECTIONS]}

    @app.get("/projections/{name}", dependencies=auth)
    async def get_projection(request: Request, name: str = Path(max_length=100)):
        if name not in PROJECTIONS:
            raise HTTPException(404, f"no projection {name!r}; one of {', '.join(PROJECTIONS)}")
        return await _projection(request.app.state.pool, name)

    @app.post("/projections/{name}/rebuild", status_code=202, dependencies=auth)
    async def rebuild(name: str = Path(max_length=100), requested_by: str = Query("ops-api", max_length=200)
                      ) -> Accepted:
        """Empty the read model and rebuild it from offset zero of its topic (the projector does)."""
        if name not in PROJECTIONS:
            raise HTTPException(404, f"no projection {name!r}; one of {', '.join(PROJECTIONS)}")
        command = RebuildProjection(projection=name, **stamp(requested_by))
        return await send(command, name.encode(), "the projector empties the read model and replays its topic")

    # -- inventory ----------------------------------------------------------------------------------
    # Declared before /inventory/{sku:path} so that these paths are not taken for SKUs.

    @app.get("/inventory/summary", dependencies=auth)
    async def inventory_summary(request: Request, sku: str | None = Query(None, max_length=255,
                                                                         description="SKU prefix")):
        pool = request.app.state.pool
        pattern = None if sku is None else sku.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        states = await ih.health_counts(pool, pattern)
        return {"states": states, "total": sum(states.values()), "exceptions_open": await ih.exception_counts(pool)}

    @app.post("/inventory/resync", status_code=202, dependencies=auth)
    async def request_resync(requested_by: str = Query("ops-api", max_length=200)) -> dict[str, Any]:
        """Ask the catalogue reader for a full comparison now; follow it at /inventory/resync/{run_id}."""
        command = RequestFullComparison(run_id=uuid4(), **stamp(requested_by))
        accepted = await send(command, str(command.run_id).encode(), "the catalogue reader runs a full comparison")
        return {**accepted.model_dump(mode="json"), "run_id": str(command.run_id)}

    @app.get("/inventory/resync/{run_id}", dependencies=auth)
    async def get_resync(request: Request, run_id: UUID):
        pool = request.app.state.pool
        run = await pool.fetchrow("SELECT * FROM inventory.sync_runs WHERE run_id = $1", run_id)
        if run is None:
            raise HTTPException(404, f"resync run {run_id} not recorded (yet) by the catalogue reader")
        observed = await pool.fetchval(
            "SELECT count(*) FROM readmodel.inventory_health WHERE last_sync_run_id = $1", run_id)
        return {"run": _row(run), "states": await ih.health_counts(pool), "observed": observed}

    @app.post("/inventory/release", status_code=202, dependencies=auth)
    async def release_stock(body: StockRelease, requested_by: str = Query("ops-api", max_length=200)) -> Accepted:
        """Ask the stock decider to decide a SKU-location again after its push exception."""
        command = ReleaseStockLevel(sku=body.sku, location_id=body.location_id, **stamp(requested_by))
        return await send(command, sku_key(body.sku), "the stock decider decides the SKU-location again")

    @app.get("/inventory", dependencies=auth)
    async def list_inventory(request: Request, state: str | None = Query(None),
                             sku: str | None = Query(None, max_length=255, description="SKU prefix"),
                             limit: int = Query(100, ge=1, le=1000)):
        if state is not None and state not in ih.STATES:
            raise HTTPException(422, f"unknown state; one of {', '.join(ih.STATES)}")
        rows = await request.app.state.pool.fetch(
            "SELECT * FROM readmodel.inventory_health WHERE ($1::text IS NULL OR state = $1) "
            "AND ($2::text IS NULL OR starts_with(sku, $2)) ORDER BY updated_at DESC, sku, location_id LIMIT $3",
            state, sku, limit)
        return {"inventory": [_row(r) for r in rows]}

    @app.get("/inventory/{sku:path}", dependencies=auth)
    async def get_inventory(request: Request, sku: str = Path(max_length=255)):
        if "\x00" in sku:
            raise HTTPException(422, "a SKU has no NUL character")
        pool = request.app.state.pool
        catalog = await pool.fetchrow("SELECT * FROM readmodel.catalog_items WHERE sku = $1", sku)
        locations = await pool.fetch("SELECT * FROM readmodel.inventory_health WHERE sku = $1 ORDER BY location_id", sku)
        exceptions = await pool.fetch(
            "SELECT * FROM readmodel.inventory_exceptions WHERE sku = $1 ORDER BY raised_at, exception_id", sku)
        if catalog is None and not locations:
            raise HTTPException(404, "SKU not known to the inventory read model "
                                     "(no Prima stock or item and no Shopify variant seen for it)")
        return {"sku": sku, "catalog": _row(catalog), "locations": [_row(r) for r in locations],
                "exceptions": [_row(e) for e in exceptions]}

    # -- the API itself -------------------------------------------------------------------------------

    @app.get("/read-models", dependencies=auth)
    async def read_models():
        """Each read model's states and exception kinds, as declared (projections/)."""
        return {name: {"states": list(rm.states), "exception_kinds": list(rm.exception_kinds)}
                for name, rm in READ_MODELS.items()}

    @app.get("/openapi.json", dependencies=auth, include_in_schema=False)
    async def openapi():
        return get_openapi(title=app.title, version="1", routes=app.routes)

    @app.get("/docs", dependencies=auth, include_in_schema=False)
    async def docs():
        spec = json.dumps(get_openapi(title=app.title, version="1", routes=app.routes))
        return HTMLResponse(_SWAGGER.replace("__SPEC__", spec.replace("</", "<\\/")))

    @app.get("/health")
    async def health(request: Request):
        await request.app.state.pool.fetchval("SELECT 1")
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app


def _dead_letter_exception(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "source": "dead_letter", "exception_id": str(r["dead_letter_id"]), "kind": r["reason"],
        "reason": f"{r['consumer_group']} could not handle {r['original_message_type'] or 'a message'} from "
                  f"{r['topic']}[{r['kafka_partition']}]@{r['kafka_offset']}: {r['error']}",
        "payload": {"consumer_group": r["consumer_group"], "topic": r["topic"], "attempts": r["attempts"]},
        "action": f"fix the cause, then: shopify-prima dead-letters redrive {r['dead_letter_id']}",
        "status": r["status"], "raised_at": r["dead_lettered_at"], "resolved_at": r["resolved_at"],
        "shopify_order_id": None, "order_name": None, "sku": None, "location_id": None,
    }


async def _projection(pool: asyncpg.Pool, name: str) -> dict[str, Any]:
    projection = PROJECTIONS[name]
    rows = await pool.fetch("SELECT kafka_partition, next_offset FROM readmodel.positions WHERE projection = $1",
                            name)
    rebuild = await pool.fetchrow("SELECT * FROM readmodel.rebuilds WHERE projection = $1", name)
    positions = {str(r["kafka_partition"]): r["next_offset"] for r in rows}
    out: dict[str, Any] = {"name": name, "topic": projection.topic.name, "positions": positions,
                           "applied": sum(positions.values()), "rebuild": None}
    if rebuild is not None:
        target = rebuild["target"]
        out["rebuild"] = {"command_id": str(rebuild["command_id"]), "requested_at": rebuild["requested_at"],
                          "finished_at": rebuild["finished_at"], "target": target,
                          "total": sum(target.values()),
                          "done": sum(min(positions.get(p, 0), o) for p, o in target.items())}
    return out


_SWAGGER = """<!doctype html><html><head><title>shopify-prima ops API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div><script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({dom_id: "#ui", spec: __SPEC__});</script></body></html>"""


if __name__ == "__main__":
    run_http(create_app, lambda s: s.ops_api_host, lambda s: s.ops_api_port)
