"""Calculated query cost and the leaky bucket, as Shopify publishes them for the Admin GraphQL API.

Sources: https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits (cost table, plans,
single-query limit, requested vs actual cost), https://shopify.dev/docs/api/usage/limits (leaky
bucket), https://shopify.engineering/rate-limiting-graphql-apis-calculating-query-complexity
(connections: two points plus the objects), and response bodies Shopify sends (the THROTTLED and
MAX_COST_EXCEEDED shapes, `throttleStatus` values).

Cost of a field, by what it returns (Shopify's defaults; the sandbox has no per-field overrides):

- scalar or enum: 0
- object: 1 + the cost of its selection
- interface or union: the maximum over the concrete types selected (fragments), each costed as an
  object (`node(id:) { ... on BulkOperation { ... } }` = 1)
- connection (an object type named *Connection with pageInfo and edges/nodes): 2 + n x per-node,
  n = `first` or `last`; per-node = 1 + the cost of the node's selection (edges { node } and
  nodes count once; edges, cursor and pageInfo are inside the 2). A connection without first/last
  is an error ("you must provide one of first or last"); first/last > 250 is an error.
- a list of objects that is not a connection: `nodes(ids:)` is sized by the number of ids
  (n x (1 + selection); more than 250 ids is MAX_INPUT_SIZE_EXCEEDED); any other list (`quantities(names:)`, `userErrors`) costs as one object.
- a mutation field: 10, whatever its payload selects. (Shopify's table lists "Mutation: 10";
  Shopify's own responses for e.g. `bulkOperationRunQuery { bulkOperation { id status }
  userErrors { field message } }` report requestedQueryCost 10, so the payload is not added.)

Example (the integration's InventoryItemsBySku with first: 10):
inventoryItems(first: 10) { nodes { variant { product } inventoryLevels(first: 10) { nodes {
location quantities } } } } = 2 + 10 x (1 + variant(1 + product 1) + levels(2 + 10 x (1 + location 1
+ quantities 1))) = 2 + 10 x (1 + 2 + 32) = 352.

requestedQueryCost is computed from the document and variables before anything runs; a query
whose requested cost exceeds 1000 is refused with MAX_COST_EXCEEDED and not charged.
actualQueryCost walks the response: objects that came back null cost 0, connections cost 2 + the
nodes actually returned. The bucket is charged the requested cost up front (a request finding less
than that available is THROTTLED and nothing runs) and refunded requested - actual afterwards.

Bucket: per access token (per app and shop on Shopify), restoring continuously at the plan's rate:
standard 100, advanced 200, plus 1000, enterprise 2000 points/s. Shopify's docs no longer state
the bucket size; the throttleStatus Shopify returns today shows maximumAvailable = 20 x the restore
rate (2000 at 100/s on standard, 20000 at 1000/s on Plus), so the sandbox uses 20 x restore rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
    is_object_type,
    value_from_ast,
)
from graphql.language import get_location
from graphql.pyutils import Undefined
from graphql.utilities import value_from_ast_untyped

MAX_QUERY_COST = 1000
MUTATION_COST = 10
MAX_PAGE_SIZE = 250
MAX_INPUT_ARRAY = 250  # any array argument (https://shopify.dev/docs/api/usage/limits)
PLANS = {"standard": 100.0, "advanced": 200.0, "plus": 1000.0, "enterprise": 2000.0}
BUCKET_SECONDS = 20  # maximumAvailable = 20 x restoreRate (see the module docstring)

FieldsByKey = dict[str, list[tuple[FieldNode, Any]]]  # response key -> [(field node, owner type)]


class CostError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


def is_connection(named: Any) -> bool:
    return (is_object_type(named) and named.name.endswith("Connection") and "pageInfo" in named.fields
            and ("edges" in named.fields or "nodes" in named.fields))


def _is_object_list(field_type: Any) -> bool:
    t = field_type.of_type if isinstance(field_type, GraphQLNonNull) else field_type
    return isinstance(t, GraphQLList)


class CostCalculator:
    """Cost of one operation with its variables. `errors` collects argument errors found on the way
    (missing first/last, page size over 250), `input_errors` array arguments over 250 items: Shopify
    refuses such a query before it runs."""

    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode],
                 variables: dict[str, Any] | None) -> None:
        self.schema, self.fragments, self.variables = schema, fragments, variables or {}
        self.errors: list[dict[str, Any]] = []  # found while costing: charged, nothing runs (as Shopify does)
        self.input_errors: list[dict[str, Any]] = []  # arrays over 250: refused before cost, not charged

    # ----------------------------------------------------------------- selections

    def _skipped(self, node: Any) -> bool:
        for directive in node.directives or ():
            name = directive.name.value
            if name in ("skip", "include"):
                arg = next((a for a in directive.arguments if a.name.value == "if"), None)
                value = value_from_ast(arg.value, GraphQLNonNull(self.schema.get_type("Boolean")), self.variables) if arg else None
                if (name == "skip" and value is True) or (name == "include" and value is False):
                    return True
        return False

    def flatten(self, selection_sets: list[SelectionSetNode], parent: Any, out: FieldsByKey | None = None) -> FieldsByKey:
        out = {} if out is None else out
        for selection_set in selection_sets:
            self._flatten_one(selection_set, parent, out)
        return out

    def _flatten_one(self, selection_set: SelectionSetNode, owner: Any, out: FieldsByKey) -> None:
        for sel in selection_set.selections:
            if self._skipped(sel):
                continue
            if isinstance(sel, FieldNode):
                key = sel.alias.value if sel.alias else sel.name.value
                out.setdefault(key, []).append((sel, owner))
            elif isinstance(sel, InlineFragmentNode):
                t = self.schema.get_type(sel.type_condition.name.value) if sel.type_condition else owner
                self._flatten_one(sel.selection_set, t, out)
            elif isinstance(sel, FragmentSpreadNode):
                frag = self.fragments.get(sel.name.value)
                if frag is not None:
                    self._flatten_one(frag.selection_set, self.schema.get_type(frag.type_condition.name.value), out)

    @staticmethod
    def _field_def(entries: list[tuple[FieldNode, Any]]) -> tuple[FieldNode, GraphQLField | None]:
        node = entries[0][0]
        name = node.name.value
        for _, owner in entries:
            fields = getattr(owner, "fields", None)
            if fields and name in fields:
                return node, fields[name]
        return node, None

    def _sub(self, entries: list[tuple[FieldNode, Any]], parent: Any) -> FieldsByKey:
        return self.flatten([n.selection_set for n, _ in entries if n.selection_set], parent)

    def _connection_nodes(self, sub: FieldsByKey, conn_type: GraphQLObjectType) -> tuple[FieldsByKey, Any, bool]:
        node_type = get_named_type(conn_type.fields["nodes"].type) if "nodes" in conn_type.fields else None
        node_fields: FieldsByKey = {}
        selected = False
        if "nodes" in sub:
            selected = True
            self.flatten([n.selection_set for n, _ in sub["nodes"] if n.selection_set], node_type, node_fields)
        if "edges" in sub:
            selected = True
            edge_type = get_named_type(conn_type.fields["edges"].type)
            node_type = node_type or get_named_type(edge_type.fields["node"].type)
            edge_fields = self._sub(sub["edges"], edge_type)
            if "node" in edge_fields:
                self.flatten([n.selection_set for n, _ in edge_fields["node"] if n.selection_set], node_type, node_fields)
        return node_fields, node_type, selected

    def _arg(self, node: FieldNode, field_def: GraphQLField, name: str) -> Any:
        arg = next((a for a in node.arguments or () if a.name.value == name), None)
        if arg is None or name not in field_def.args:
            return None
        value = value_from_ast(arg.value, field_def.args[name].type, self.variables)
        return None if value is Undefined else value

    @staticmethod
    def _where(node: FieldNode) -> dict[str, Any]:
        loc = get_location(node.loc.source, node.loc.start) if node.loc else None
        return {"locations": [{"line": loc.line, "column": loc.column}]} if loc else {}

    def _page_size(self, node: FieldNode, field_def: GraphQLField, path: list[str]) -> int:
        first, last = self._arg(node, field_def, "first"), self._arg(node, field_def, "last")
        where = self._where(node)
        if not isinstance(first, int) and not isinstance(last, int):
            self.errors.append({"message": "you must provide one of first or last", **where, "path": list(path),
                                "extensions": {"code": "BAD_REQUEST"}})
            return 0
        size = first if isinstance(first, int) else last
        if size > MAX_PAGE_SIZE or size < 0:
            arg = "first" if isinstance(first, int) else "last"
            self.errors.append({
                "message": f"Argument '{arg}' on Field '{node.name.value}' has an invalid value ({size}). "
                           f"Expected a page size from 0 to {MAX_PAGE_SIZE}.",
                **where, "path": list(path), "extensions": {"code": "BAD_REQUEST"}})
            return max(0, min(size, MAX_PAGE_SIZE))
        return size

    # ----------------------------------------------------------------- requested

    def requested(self, operation: OperationDefinitionNode) -> int:
        for definition in operation.variable_definitions or ():  # a variable left out takes its default
            name = definition.variable.name.value
            if name not in self.variables and definition.default_value is not None:
                self.variables = {**self.variables, name: value_from_ast_untyped(definition.default_value)}
        if operation.operation == OperationType.MUTATION:
            root = self.schema.mutation_type
            return MUTATION_COST * len(self.flatten([operation.selection_set], root))
        return self._requested(self.flatten([operation.selection_set], self.schema.query_type),
                               self.schema.query_type, [])

    def _requested(self, fields: FieldsByKey, parent: Any, path: list[str]) -> int:
        if is_abstract_type(parent):
            candidates = {owner for entries in fields.values() for _, owner in entries if is_object_type(owner)}
            if candidates:
                return max(self._sum_requested(fields, path, lambda o, c=c: o is c or not is_object_type(o))
                           for c in candidates)
        return self._sum_requested(fields, path, lambda o: True)

    def _sum_requested(self, fields: FieldsByKey, path: list[str], applies: Callable[[Any], bool]) -> int:
        total = 0
        for key, all_entries in fields.items():
            entries = [e for e in all_entries if applies(e[1])]
            if entries:
                total += self._field_requested(key, entries, path + [key])
        return total

    def _field_requested(self, key: str, entries: list[tuple[FieldNode, Any]], path: list[str]) -> int:
        node, field_def = self._field_def(entries)
        if field_def is None:  # __typename
            return 0
        named = get_named_type(field_def.type)
        if is_leaf_type(named):
            return 0
        sub = self._sub(entries, named)
        if is_connection(named):
            n = self._page_size(node, field_def, path)
            node_fields, node_type, selected = self._connection_nodes(sub, named)
            per_node = 1 + self._requested(node_fields, node_type, path) if selected else 0
            return 2 + n * per_node
        children = self._requested(sub, named, path)
        if _is_object_list(field_def.type) and "ids" in field_def.args:
            ids = self._arg(node, field_def, "ids") or ()
            if len(ids) > MAX_INPUT_ARRAY:
                self.input_errors.append({
                    "message": f"The input array size of {len(ids)} is greater than the maximum allowed of {MAX_INPUT_ARRAY}.",
                    **self._where(node), "path": [*path, "ids"], "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"}})
            return len(ids) * (1 + children)
        return 1 + children

    # ----------------------------------------------------------------- actual

    def actual(self, operation: OperationDefinitionNode, data: dict[str, Any] | None) -> int:
        if not data:
            return 0
        if operation.operation == OperationType.MUTATION:
            fields = self.flatten([operation.selection_set], self.schema.mutation_type)
            return MUTATION_COST * sum(1 for key in fields if key in data)
        return self._actual(self.flatten([operation.selection_set], self.schema.query_type), data)

    def _actual(self, fields: FieldsByKey, obj: dict[str, Any]) -> int:
        total = 0
        for key, entries in fields.items():
            if key not in obj or obj[key] is None:
                continue
            node, field_def = self._field_def(entries)
            if field_def is None:
                continue
            named = get_named_type(field_def.type)
            if is_leaf_type(named):
                continue
            value = obj[key]
            sub = self._sub(entries, named)
            if is_connection(named):
                node_fields, _, _ = self._connection_nodes(sub, named)
                by_nodes = [n for n in value.get("nodes") or () if n is not None]
                by_edges = [e["node"] for e in value.get("edges") or () if e and e.get("node") is not None]
                total += 2 + max(sum(1 + self._actual(node_fields, n) for n in by_nodes),
                                 sum(1 + self._actual(node_fields, n) for n in by_edges))
            elif isinstance(value, list):
                items = [v for v in value if v is not None]
                if "ids" in field_def.args:
                    total += sum(1 + self._actual(sub, v) for v in items)
                else:
                    total += 1 + max((self._actual(sub, v) for v in items), default=0)
            else:
                total += 1 + self._actual(sub, value)
        return total


def max_cost_error(cost: int) -> dict[str, Any]:
    return {
        "message": f"Query cost is {cost}, which exceeds the single query max cost limit ({MAX_QUERY_COST}).\n\n"
                   "See https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\n"
                   "cost of a query is calculated.\n\n"
                   "To query larger amounts of data with fewer limits, bulk operations should be used instead.\n"
                   "See https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api for usage details.\n",
        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": cost, "maxCost": MAX_QUERY_COST,
                       "documentation": "https://shopify.dev/api/usage/rate-limits"},
    }


THROTTLED_ERROR = {"message": "Throttled",
                   "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}


class Bucket:
    """A leaky bucket of cost points on a monotonic clock, refilling continuously."""

    def __init__(self, restore_rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.set_rate(restore_rate)

    def set_rate(self, restore_rate: float) -> None:
        """A plan change: new rate and size, bucket full."""
        with self._lock:
            self.restore_rate = float(restore_rate)
            self.maximum = float(restore_rate * BUCKET_SECONDS)
            self._available = self.maximum
            self._at = self._clock()

    def _refill(self) -> float:
        now = self._clock()
        self._available = min(self.maximum, self._available + (now - self._at) * self.restore_rate)
        self._at = now
        return self._available

    def try_take(self, cost: int) -> bool:
        with self._lock:
            if self._refill() < cost:
                return False
            self._available -= cost
            return True

    def refund(self, points: float) -> None:
        if points > 0:
            with self._lock:
                self._refill()
                self._available = min(self.maximum, self._available + points)

    def drain(self) -> None:
        with self._lock:
            self._refill()
            self._available = 0.0

    def fill(self) -> None:
        with self._lock:
            self._available = self.maximum
            self._at = self._clock()

    def status(self, *, empty: bool = False) -> dict[str, Any]:
        with self._lock:
            available = 0 if empty else math.floor(self._refill())
        return {"maximumAvailable": self.maximum, "currentlyAvailable": available, "restoreRate": self.restore_rate}
