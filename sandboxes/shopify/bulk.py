"""Bulk query operations (`bulkOperationRunQuery`), run in the background and written as Shopify's
JSONL (https://shopify.dev/docs/api/usage/bulk-operations/queries).

Validation, before anything runs (a failure is a userError with code INVALID on ["query"]): the
query must parse and validate against the Admin schema, be a single query operation without
variables, have exactly one top-level field and that field a connection (not node/nodes), contain
at most 5 connections, nest connections at most 2 levels deep, have no connection inside a list
field, and select `id` on every node that has a nested connection (it becomes the children's
__parentId). One query bulk operation runs at a time per shop: a second while one is CREATED or
RUNNING gets OPERATION_IN_PROGRESS. The sandbox requires the top-level field to be a connection
(Shopify also allows e.g. a single object wrapping connections); the integration's queries do.

Execution is generic over the submitted selections, not graphql-core: the query is compiled once
into a plan of (response key, resolver, arguments, sub-plan) steps over the same resolvers the API
uses (resolvers.py), connections are read whole (first/after are ignored, as in Shopify bulk
queries), and each object is rendered into a dict. That keeps 100,000 variants with a level each
to a few seconds, where graphql-core's executor would take minutes. The result follows Shopify's
format: one JSON object per line; each node of a nested connection on its own line after its
parent's line, with "__parentId" = the id of the enclosing connection node, and the nested
connection itself left out of the parent's line. objectCount counts every line, rootObjectCount the
top-level nodes. The task yields to the event loop every 2,000 top-level nodes, so the API stays
responsive; it walks a snapshot of the top-level list taken when it starts.

Files are written to a temporary directory and served, without rate limiting, at
GET /_sandbox/bulk/<n>.jsonl (an absolute URL from the request's base URL). A query that returns
nothing completes with objectCount 0 and url null, as on Shopify.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from graphql import (
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
    is_object_type,
    parse,
    validate,
)
from graphql.execution.values import get_argument_values

from contracts.shopify_admin import admin_schema
from sandboxes.shopify.cost import CostCalculator, FieldsByKey, _is_object_list, is_connection
from sandboxes.shopify.resolvers import CONNECTIONS, RESOLVERS, Ctx
from sandboxes.shopify.store import gid_number, now_iso

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 5
MAX_NESTING = 2
YIELD_EVERY = 2000


class BulkOperation:
    typename = "BulkOperation"

    def __init__(self, num: int, query: str) -> None:
        self.num, self.query = num, query
        self.status = "CREATED"
        self.error_code: str | None = None
        self.object_count = 0
        self.root_object_count = 0
        self.file_size: int | None = None
        self.url: str | None = None
        self.path: Path | None = None
        self.created_at = now_iso()
        self.completed_at: str | None = None

    @property
    def gid(self) -> str:
        return f"gid://shopify/BulkOperation/{self.num}"


class BulkQueryInvalid(ValueError):
    pass


# ---------------------------------------------------------------------- validation


def _check(calc: CostCalculator, operation: OperationDefinitionNode) -> tuple[str, Any, FieldsByKey]:
    """The top-level connection: (response key, field definition, fields) or BulkQueryInvalid."""
    schema = calc.schema
    if operation.operation != OperationType.QUERY:
        raise BulkQueryInvalid("Bulk queries must be a query operation; use bulkOperationRunMutation for mutations.")
    if operation.variable_definitions:
        raise BulkQueryInvalid("Bulk queries cannot use variables.")
    root = calc.flatten([operation.selection_set], schema.query_type)
    if len(root) != 1:
        raise BulkQueryInvalid("Bulk queries must contain exactly one top-level field.")
    key, entries = next(iter(root.items()))
    node, field_def = calc._field_def(entries)  # noqa: SLF001
    if node.name.value in ("node", "nodes"):
        raise BulkQueryInvalid("The `node` and `nodes` fields are not supported at the top level of bulk queries.")
    if field_def is None or not is_connection(get_named_type(field_def.type)):
        raise BulkQueryInvalid("Bulk queries must contain at least one connection, starting at the top-level field.")
    counts = {"connections": 0}
    _walk(calc, root, schema.query_type, depth=0, enclosing=None, in_list=False, counts=counts)
    if counts["connections"] > MAX_CONNECTIONS:
        raise BulkQueryInvalid(f"Bulk queries cannot contain more than {MAX_CONNECTIONS} connections.")
    return key, field_def, root


def _walk(calc: CostCalculator, fields: FieldsByKey, parent: Any, *, depth: int, enclosing: FieldsByKey | None,
          in_list: bool, counts: dict[str, int]) -> None:
    for entries in fields.values():
        node, field_def = calc._field_def(entries)  # noqa: SLF001
        if field_def is None:
            continue
        named = get_named_type(field_def.type)
        if is_leaf_type(named):
            continue
        sub = calc._sub(entries, named)  # noqa: SLF001
        if is_connection(named):
            counts["connections"] += 1
            if in_list:
                raise BulkQueryInvalid("Queries that contain a connection field within a list field are not supported.")
            if depth + 1 > MAX_NESTING:
                raise BulkQueryInvalid(f"Bulk queries cannot contain connections with a nesting depth greater than {MAX_NESTING}.")
            if enclosing is not None and not any(
                    n.alias is None and n.name.value == "id" for n, _ in enclosing.get("id", [])):
                raise BulkQueryInvalid(f"The parent 'node' field for a nested connection must select the 'id' field "
                                       f"without an alias. Connection: '{node.name.value}'.")
            node_fields, node_type, _ = calc._connection_nodes(sub, named)  # noqa: SLF001
            _walk(calc, node_fields, node_type, depth=depth + 1, enclosing=node_fields, in_list=False, counts=counts)
        else:
            _walk(calc, sub, named, depth=depth, enclosing=enclosing,
                  in_list=in_list or _is_object_list(field_def.type), counts=counts)


# ---------------------------------------------------------------------- compiled plans


class _Step:
    __slots__ = ("kind", "key", "fn", "args", "sub")

    def __init__(self, kind: str, key: str, fn: Any, args: dict[str, Any], sub: Any = None) -> None:
        self.kind, self.key, self.fn, self.args, self.sub = kind, key, fn, args, sub


class _Plans:
    """Compiled steps for one selection, per concrete type (one entry unless the type is abstract)."""

    def __init__(self, calc: CostCalculator, fields: FieldsByKey, parent: Any) -> None:
        self.calc, self.fields, self.parent = calc, fields, parent
        self.by_type: dict[str, list[_Step]] = {}

    def for_value(self, value: Any) -> list[_Step]:
        name = value.get("__typename", self.parent.name) if isinstance(value, dict) else getattr(value, "typename", self.parent.name)
        plan = self.by_type.get(name)
        if plan is None:
            concrete = self.calc.schema.get_type(name) if is_abstract_type(self.parent) else self.parent
            plan = self.by_type[name] = _compile(self.calc, self.fields, concrete)
        return plan


def _unserved(type_name: str, field_name: str) -> Any:
    def get(obj: Any, _args: dict[str, Any], _ctx: Ctx) -> Any:
        if isinstance(obj, dict):
            return obj.get(field_name)
        raise GraphQLError(f"{type_name}.{field_name} is not served by the Shopify sandbox")
    return get


def _compile(calc: CostCalculator, fields: FieldsByKey, concrete: Any) -> list[_Step]:
    steps = []
    for key, all_entries in fields.items():
        entries = [e for e in all_entries if e[1] is concrete or not is_object_type(e[1])]
        if not entries:
            continue
        node, field_def = calc._field_def(entries)  # noqa: SLF001
        name = node.name.value
        if field_def is None:
            steps.append(_Step("leaf", key, lambda _o, _a, _c, t=concrete.name: t, {}))
            continue
        args = get_argument_values(field_def, node)
        named = get_named_type(field_def.type)
        if is_leaf_type(named):
            steps.append(_Step("leaf", key, RESOLVERS.get((concrete.name, name)) or _unserved(concrete.name, name), args))
            continue
        sub = calc._sub(entries, named)  # noqa: SLF001
        if is_connection(named):
            node_fields, node_type, _ = calc._connection_nodes(sub, named)  # noqa: SLF001
            source = CONNECTIONS.get((concrete.name, name))
            if source is None:
                raise BulkQueryInvalid(f"{concrete.name}.{name} is not served by the Shopify sandbox.")
            steps.append(_Step("connection", key, source, args, _Plans(calc, node_fields, node_type)))
        else:
            kind = "list" if _is_object_list(field_def.type) else "object"
            fn = RESOLVERS.get((concrete.name, name)) or _unserved(concrete.name, name)
            steps.append(_Step(kind, key, fn, args, _Plans(calc, sub, named)))
    return steps


def _render(obj: Any, plan: list[_Step], ctx: Ctx, parent_id: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for step in plan:
        kind = step.kind
        if kind == "leaf":
            out[step.key] = step.fn(obj, step.args, ctx)
        elif kind == "object":
            value = step.fn(obj, step.args, ctx)
            out[step.key] = None if value is None else _render(value, step.sub.for_value(value), ctx, parent_id, lines)
        elif kind == "list":
            values = step.fn(obj, step.args, ctx)
            out[step.key] = None if values is None else [
                None if v is None else _render(v, step.sub.for_value(v), ctx, parent_id, lines) for v in values]
        else:  # a nested connection: its nodes are lines of their own
            for child in step.fn(obj, step.args, ctx):
                grandchildren: list[dict[str, Any]] = []
                line = _render(child, step.sub.for_value(child), ctx, child.gid, grandchildren)
                line["__parentId"] = parent_id
                lines.append(line)
                lines.extend(grandchildren)
    return out


# ---------------------------------------------------------------------- operations


class BulkManager:
    def __init__(self) -> None:
        self.ops: dict[int, BulkOperation] = {}
        self.current: BulkOperation | None = None
        self._next = 1
        self._tasks: set[asyncio.Task[None]] = set()
        self._dir: Path | None = None

    def get(self, gid: Any) -> BulkOperation | None:
        num = gid_number(gid, "BulkOperation")
        return self.ops.get(num) if num is not None else None

    def start(self, query: str, ctx: Ctx) -> tuple[BulkOperation | None, list[dict[str, Any]]]:
        if self.current is not None and self.current.status in ("CREATED", "RUNNING"):
            return None, [{"field": None, "code": "OPERATION_IN_PROGRESS",
                           "message": f"A bulk query operation for this app and shop is already in progress: "
                                      f"{self.current.gid}."}]
        try:
            plan = self._prepare(query)
        except BulkQueryInvalid as exc:
            return None, [{"field": ["query"], "message": str(exc), "code": "INVALID"}]
        op = BulkOperation(self._next, query)
        self._next += 1
        self.ops[op.num] = op
        self.current = op
        task = asyncio.get_running_loop().create_task(self._run(op, plan, ctx))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return op, []

    @staticmethod
    def _prepare(query: str) -> tuple[Any, dict[str, Any], _Plans, CostCalculator]:
        schema = admin_schema()
        try:
            document = parse(query)
        except GraphQLError as exc:
            raise BulkQueryInvalid(f"Invalid bulk query: {exc.message}") from exc
        errors = validate(schema, document)
        if errors:
            raise BulkQueryInvalid(f"Invalid bulk query: {errors[0].message}")
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) != 1:
            raise BulkQueryInvalid("Bulk queries must contain exactly one operation.")
        fragments = {d.name.value: d for d in document.definitions if not isinstance(d, OperationDefinitionNode)}
        calc = CostCalculator(schema, fragments, {})
        key, field_def, root = _check(calc, operations[0])
        node, _ = calc._field_def(root[key])  # noqa: SLF001
        source = CONNECTIONS.get((schema.query_type.name, node.name.value))
        if source is None:
            raise BulkQueryInvalid(f"QueryRoot.{node.name.value} is not served by the Shopify sandbox.")
        named = get_named_type(field_def.type)
        node_fields, node_type, _ = calc._connection_nodes(calc._sub(root[key], named), named)  # noqa: SLF001
        plans = _Plans(calc, node_fields, node_type)  # compiled per concrete type on first use
        return source, get_argument_values(field_def, node), plans, calc

    async def _run(self, op: BulkOperation, prepared: tuple[Any, dict[str, Any], _Plans, CostCalculator], ctx: Ctx) -> None:
        source, args, plans, _ = prepared
        await asyncio.sleep(0)  # the mutation answers CREATED first
        op.status = "RUNNING"
        try:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="shopify-sandbox-bulk-"))
            op.path = self._dir / f"{op.num}.jsonl"
            roots = list(source(None, args, ctx))
            dumps = json.JSONEncoder(separators=(",", ":")).encode
            with op.path.open("w", encoding="utf-8") as out:
                buffer: list[str] = []
                for i, node in enumerate(roots, start=1):
                    lines: list[dict[str, Any]] = []
                    line = _render(node, plans.for_value(node), ctx, node.gid, lines)
                    buffer.append(dumps(line))
                    buffer.extend(dumps(child) for child in lines)
                    op.root_object_count = i
                    op.object_count += 1 + len(lines)
                    if i % YIELD_EVERY == 0:
                        out.write("\n".join(buffer) + "\n")
                        buffer.clear()
                        await asyncio.sleep(0)
                if buffer:
                    out.write("\n".join(buffer) + "\n")
            op.file_size = op.path.stat().st_size
            op.url = f"{ctx.base_url.rstrip('/')}/_sandbox/bulk/{op.num}.jsonl" if op.object_count else None
            op.status = "COMPLETED"
        except asyncio.CancelledError:
            op.status = "CANCELED"
            raise
        except Exception:
            log.exception("bulk operation %s failed", op.gid)
            op.status, op.error_code = "FAILED", "INTERNAL_SERVER_ERROR"
        finally:
            op.completed_at = now_iso()

    async def wait(self) -> None:
        """Until the running operation (if any) has finished; for tests."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def file(self, num: int) -> Path | None:
        op = self.ops.get(num)
        if op is None or op.status != "COMPLETED" or op.path is None or not op.path.exists():
            return None
        return op.path

    def reset(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self.ops.clear()
        self.current = None
        self._next = 1
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
