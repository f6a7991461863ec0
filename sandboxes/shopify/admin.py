"""HTTP side of the Shopify sandbox's Admin API: `POST /admin/api/{version}/graphql.json` executed
against Shopify's schema (contracts.shopify_admin.admin_schema()) with graphql-core, with Shopify's
authentication, cost and throttling, plus the sandbox's control endpoints under /_sandbox (no auth).

Order of handling a GraphQL request, as Shopify answers it:
1. version not YYYY-MM -> 404; fault switches: latency, then `fail_next` (HTTP 500/502/503/504,
   nothing runs);
2. X-Shopify-Access-Token must be the configured token, else 401
   {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"};
3. body must be JSON with a `query` string (and `variables` an object), else 400;
4. parse + validate (cached per query text) -> HTTP 200 with `errors` (message, locations);
5. `graphql_error_next` fault -> HTTP 200 INTERNAL_SERVER_ERROR, nothing runs;
6. an array argument over 250 items (nodes(ids:)) -> MAX_INPUT_SIZE_EXCEEDED, not charged;
   requestedQueryCost (cost.py) > 1000 -> MAX_COST_EXCEEDED, not charged;
7. throttle storm, or the bucket holds less than the requested cost -> THROTTLED, nothing runs;
8. charge the requested cost, execute, refund requested - actual.
Every answer from 4 on carries extensions.cost {requestedQueryCost, actualQueryCost,
throttleStatus {maximumAvailable, currentlyAvailable, restoreRate}}; actualQueryCost is null when
nothing ran. A `Server-Timing: app;dur=<ms>` header reports the time spent in the handler.

Versions >= 2026-04 require changeFromQuantity and @idempotent on inventorySetQuantities
(mutations.py). The sandbox serves one schema for every version.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from time import perf_counter
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    execute,
    parse,
    validate,
)
from graphql.utilities import get_operation_ast

import sandboxes.shopify.fulfillments  # noqa: F401  (registers fulfillment orders, fulfillmentCreate, holds)
import sandboxes.shopify.mutations  # noqa: F401  (registers the mutations)
import sandboxes.shopify.order_queries  # noqa: F401  (registers the order queries)
import sandboxes.shopify.payouts  # noqa: F401  (registers shopifyPaymentsAccount)
from contracts.shopify_admin import admin_schema
from sandboxes.shopify.cost import (
    MAX_QUERY_COST,
    THROTTLED_ERROR,
    CostCalculator,
    max_cost_error,
)
from sandboxes.shopify.resolvers import Ctx, field_resolver, type_resolver
from sandboxes.shopify.state import ShopState, Stats
from sandboxes.shopify.store import UnknownLocation, now_iso

log = logging.getLogger(__name__)

VERSION = re.compile(r"^\d{4}-\d{2}$")
INVALID_TOKEN = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}


@dataclass(frozen=True)
class Prepared:
    document: DocumentNode | None
    errors: list[dict[str, Any]]
    fragments: dict[str, FragmentDefinitionNode]


@lru_cache(maxsize=1024)
def prepare(query: str) -> Prepared:
    """Parse and validate once per query text."""
    schema = admin_schema()
    try:
        document = parse(query)
    except GraphQLError as exc:
        return Prepared(None, [exc.formatted], {})
    errors = validate(schema, document)
    if errors:
        return Prepared(None, [e.formatted for e in errors], {})
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    return Prepared(document, [], fragments)


def _json(body: dict[str, Any], status: int = 200, started: float | None = None) -> Response:
    headers = {"Server-Timing": f"app;dur={(perf_counter() - started) * 1000:.2f}"} if started is not None else None
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json",
                    headers=headers)


def _cost(requested: int, actual: int | None, status: dict[str, Any]) -> dict[str, Any]:
    return {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": status}}


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        return ...


def _bad(message: str, status: int = 422) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def admin_router(state: ShopState) -> APIRouter:
    router = APIRouter()
    schema = admin_schema()

    @router.post("/admin/api/{version}/graphql.json")
    async def graphql(version: str, request: Request) -> Response:
        started = perf_counter()
        if not VERSION.match(version):
            return _json({"errors": "Not Found"}, 404)
        faults = state.faults
        await faults.delay()
        if faults.take("fail_next"):
            status = faults.fail_status
            return _json({"errors": HTTPStatus(status).phrase}, status)
        token = request.headers.get("x-shopify-access-token")
        if token != state.access_token:
            return _json(INVALID_TOKEN, 401)
        payload = await _body(request)
        if not isinstance(payload, dict):
            return _json({"errors": "Bad Request: the body must be a JSON object"}, 400)
        query, variables, operation_name = payload.get("query"), payload.get("variables"), payload.get("operationName")
        if not isinstance(query, str) or not query.strip():
            return _json({"errors": {"query": "Required parameter missing or invalid"}}, 400)
        if variables is None:
            variables = {}
        if not isinstance(variables, dict) or (operation_name is not None and not isinstance(operation_name, str)):
            return _json({"errors": "Bad Request: variables must be an object and operationName a string"}, 400)

        stats = state.stats
        stats.requests += 1
        bucket = state.bucket(token)
        prepared = prepare(query)
        if prepared.document is None:
            return _json({"errors": prepared.errors, "extensions": _cost(0, None, bucket.status())}, 200, started)
        operation = get_operation_ast(prepared.document, operation_name)
        if operation is None:
            message = (f"Unknown operation named \"{operation_name}\"." if operation_name
                       else "An operation name is required when the document contains more than one operation.")
            return _json({"errors": [{"message": message}], "extensions": _cost(0, None, bucket.status())}, 200, started)
        name = operation.name.value if operation.name else "(anonymous)"
        stats.by_operation[name] = stats.by_operation.get(name, 0) + 1

        if faults.take("graphql_error_next"):
            return _json({"errors": [{"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}],
                          "extensions": _cost(0, None, bucket.status())}, 200, started)
        calc = CostCalculator(schema, prepared.fragments, variables)
        requested = calc.requested(operation)
        if calc.input_errors:
            return _json({"errors": calc.input_errors, "data": None, "extensions": _cost(requested, None, bucket.status())},
                         200, started)
        if requested > MAX_QUERY_COST:
            return _json({"errors": [max_cost_error(requested)], "extensions": _cost(requested, None, bucket.status())},
                         200, started)
        storm = faults.storming()
        if storm or not bucket.try_take(requested):
            stats.throttled += 1
            return _json({"errors": [THROTTLED_ERROR], "extensions": _cost(requested, None, bucket.status(empty=storm))},
                         200, started)
        stats.points_requested += requested
        if calc.errors:  # argument errors (first/last): charged, like Shopify, nothing runs
            stats.points_actual += requested
            return _json({"errors": calc.errors, "data": None, "extensions": _cost(requested, requested, bucket.status())},
                         200, started)

        ctx = Ctx(state, version, str(request.base_url), token)
        result = execute(schema, prepared.document, None, ctx, variables, operation_name,
                         field_resolver=field_resolver, type_resolver=type_resolver)
        body: dict[str, Any] = {}
        if result.errors:
            for error in result.errors:
                if error.original_error is not None and not isinstance(error.original_error, GraphQLError):
                    log.error("resolver failed at %s", error.path, exc_info=error.original_error)
            body["errors"] = [e.formatted for e in result.errors]
        body["data"] = result.data
        actual = calc.actual(operation, result.data) if result.data is not None else 0
        bucket.refund(requested - actual)
        stats.points_actual += actual
        body["extensions"] = _cost(requested, actual, bucket.status())
        return _json(body, 200, started)

    # ------------------------------------------------------------------ controls

    @router.post("/_sandbox/reset")
    async def reset() -> dict[str, Any]:
        state.reset()
        return {"reset": True, "plan": state.plan}

    @router.get("/_sandbox/plan")
    async def get_plan() -> dict[str, Any]:
        return {"plan": state.plan, "throttleStatus": state.bucket(state.access_token).status()}

    @router.post("/_sandbox/plan")
    async def set_plan(request: Request) -> Response:
        body = await _body(request)
        if not isinstance(body, dict) or not isinstance(body.get("plan"), str):
            return _bad('body: {"plan": "standard" | "advanced" | "plus" | "enterprise"}')
        try:
            state.set_plan(body["plan"].lower())
        except ValueError as exc:
            return _bad(str(exc))
        return JSONResponse({"plan": state.plan, "throttleStatus": state.bucket(state.access_token).status()})

    @router.post("/_sandbox/locations")
    async def add_locations(request: Request) -> Response:
        body = await _body(request)
        specs = body.get("locations") if isinstance(body, dict) else None
        if not isinstance(specs, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in specs):
            return _bad('body: {"locations": [{"name": "...", "id"?: "gid://shopify/Location/N", "isActive"?: true}]}')
        try:
            created = [state.store.add_location(s["name"], s.get("id"), bool(s.get("isActive", s.get("is_active", True))))
                       for s in specs]
        except ValueError as exc:
            return _bad(str(exc))
        return JSONResponse({"locations": [{"id": loc.gid, "name": loc.name, "isActive": loc.is_active}
                                           for loc in created]})

    @router.post("/_sandbox/catalog")
    async def add_catalog(request: Request) -> Response:
        body = await _body(request)
        specs = body.get("variants") if isinstance(body, dict) else None
        if not isinstance(specs, list):
            return _bad('body: {"variants": [{"sku", "title"?, "status"?, "product"?, "tracked"?, '
                        '"levels": {"<location gid>": <available>}}]}')
        try:
            created = state.store.add_variants(specs)
        except (UnknownLocation, ValueError) as exc:
            return _bad(str(exc))
        return _json({"variants": created})

    @router.get("/_sandbox/inventory")
    async def inventory(sku: str | None = None, location_id: str | None = None,
                        sku_prefix: str | None = None) -> Response:
        rows = [level.row() for level in state.store.levels_of_sku(sku)
                if (location_id is None or level.location.gid == location_id)
                and (sku_prefix is None or (level.item.sku or "").startswith(sku_prefix))]
        return _json(rows)  # type: ignore[arg-type]

    @router.put("/_sandbox/inventory")
    async def set_inventory(request: Request) -> Response:
        body = await _body(request)
        specs = body.get("levels") if isinstance(body, dict) else None
        if not isinstance(specs, list):
            return _bad('body: {"levels": [{"sku" | "inventory_item_id", "location_id", "available", "committed"?}]}')
        store = state.store
        targets = []
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict):
                return _bad(f"levels[{i}] must be an object")
            if "inventory_item_id" in spec:
                items = [store.item(spec["inventory_item_id"])]
            else:
                items = [v.item for v in store.variants_with_sku(str(spec.get("sku", "")))]
            if not items or items[0] is None:
                return _bad(f"levels[{i}]: no inventory item for {spec.get('inventory_item_id') or spec.get('sku')!r}")
            location = store.location(spec.get("location_id"))
            if location is None:
                return _bad(f"levels[{i}]: unknown location {spec.get('location_id')!r}")
            for key in ("available", "committed"):
                if key in spec and (not isinstance(spec[key], int) or isinstance(spec[key], bool)):
                    return _bad(f"levels[{i}].{key} must be an integer")
            targets.extend((item, location, spec) for item in items)
        rows = []
        for item, location, spec in targets:  # a sale or a merchant's edit: no bucket, no adjustment record
            level = store.stock(item, location)
            if "available" in spec:
                level.available = spec["available"]
            if "committed" in spec:
                level.committed = spec["committed"]
            level.updated_at = now_iso()
            rows.append(level.row())
        return _json({"levels": rows})

    @router.get("/_sandbox/products")
    async def products(sku: str | None = None) -> Response:
        variants = state.store.variants_with_sku(sku) if sku is not None else state.store.variant_order
        return _json([{"sku": v.sku, "product_id": v.product.gid, "variant_id": v.gid, "title": v.product.title,
                       "status": v.product.status} for v in variants])  # type: ignore[arg-type]

    @router.get("/_sandbox/adjustments")
    async def adjustments(sku: str | None = None) -> Response:
        rows = [a for a in state.store.adjustments if sku is None or a["sku"].lower() == sku.lower()]
        return _json(rows)  # type: ignore[arg-type]

    @router.get("/_sandbox/stats")
    async def stats() -> dict[str, Any]:
        return state.stats.as_dict()

    @router.post("/_sandbox/stats/reset")
    async def reset_stats() -> dict[str, Any]:
        state.stats = Stats()
        return state.stats.as_dict()

    @router.get("/_sandbox/faults")
    async def get_faults() -> dict[str, Any]:
        return state.faults.state()

    @router.post("/_sandbox/faults")
    async def set_faults(request: Request) -> Response:
        body = await _body(request)
        if not isinstance(body, dict):
            return _bad("body: a JSON object of fault switches")
        try:
            state.faults.set(body, state.bucket(state.access_token))
        except ValueError as exc:
            return _bad(str(exc))
        return JSONResponse(state.faults.state())

    @router.delete("/_sandbox/faults")
    async def clear_faults() -> dict[str, Any]:
        state.faults.clear()
        return state.faults.state()

    @router.get("/_sandbox/bulk")
    async def bulk_operations() -> list[dict[str, Any]]:
        return [{"id": op.gid, "status": op.status, "objectCount": op.object_count,
                 "rootObjectCount": op.root_object_count, "url": op.url, "errorCode": op.error_code,
                 "createdAt": op.created_at, "completedAt": op.completed_at} for op in state.bulk.ops.values()]

    @router.get("/_sandbox/bulk/{num}.jsonl")
    async def bulk_file(num: int) -> Response:
        path = state.bulk.file(num)
        if path is None:
            return JSONResponse({"detail": "no completed bulk operation with that number"}, status_code=404)
        return FileResponse(path, media_type="application/jsonl")

    return router
