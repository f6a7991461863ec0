"""How the sandbox answers Admin GraphQL fields: one resolver per (type, field) over the in-memory
shop, shared by graphql-core execution (admin.py) and the bulk operation runner (bulk.py).

A resolver is `fn(obj, args, ctx)`; connections are registered as sources `fn(obj, args, ctx) ->
ordered list`, paginated here for ordinary queries and read whole by bulk operations. A field of a
dict source (payloads, page info, quantities) is its key. A field nobody registered is an error
naming it: the sandbox serves the subset the integration uses, and says so instead of answering
null.

Search (`query:` on productVariants, products, inventoryItems, locations): terms `field:value`,
joined by whitespace or AND (all must match) and OR (either side); `-field:value` negates; a value
may be quoted and may end in `*` (prefix). Matching is case-insensitive. Fields served:
productVariants: sku, id, product_id, title, product_status; products: sku, id, status, title;
inventoryItems: sku, id; locations: name, id, active. As on Shopify, a term on a field the search
does not know is ignored (matches everything). Parentheses are not supported.

Pagination: first/last (<= 250, see cost.py), after/before cursors (base64 JSON
{"last_id", "last_value"} like Shopify's), reverse; order is by id.
"""

from __future__ import annotations

import base64
import json
import re
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError

from sandboxes.shopify.store import (
    QUANTITY_NAMES,
    InventoryItem,
    Level,
    Location,
    Product,
    Store,
    Variant,
    after_position,
    parse_gid,
)


@dataclass
class Ctx:
    state: Any  # state.ShopState
    version: str
    base_url: str
    token: str

    @property
    def store(self) -> Store:
        return self.state.store


Resolver = Callable[[Any, dict[str, Any], Ctx], Any]
RESOLVERS: dict[tuple[str, str], Resolver] = {}
CONNECTIONS: dict[tuple[str, str], Resolver] = {}
MUTATIONS: dict[str, Callable[..., Any]] = {}  # name -> fn(args, ctx, info)


def field(type_name: str, *names: str) -> Callable[[Resolver], Resolver]:
    def register(fn: Resolver) -> Resolver:
        for name in names:
            RESOLVERS[(type_name, name)] = fn
        return fn
    return register


def connection(type_name: str, name: str) -> Callable[[Resolver], Resolver]:
    def register(fn: Resolver) -> Resolver:
        CONNECTIONS[(type_name, name)] = fn
        RESOLVERS[(type_name, name)] = lambda obj, args, ctx: paginate(fn(obj, args, ctx), args)
        return fn
    return register


# ---------------------------------------------------------------------- pagination


def encode_cursor(num: int) -> str:
    return base64.b64encode(json.dumps({"last_id": num, "last_value": num}, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        value = json.loads(base64.b64decode(cursor.encode(), validate=True))
        return int(value["last_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphQLError("Invalid cursor for current pagination sort.", extensions={"code": "BAD_REQUEST"}) from exc


def paginate(seq: list[Any], args: dict[str, Any]) -> dict[str, Any]:
    """A Relay connection page over `seq` (ordered by .num ascending)."""
    reverse = bool(args.get("reverse"))
    if reverse:
        seq = seq[::-1]
    start, end = 0, len(seq)
    if args.get("after"):
        start = after_position(seq, decode_cursor(args["after"]), reverse)
    if args.get("before"):
        num = decode_cursor(args["before"])
        end = bisect_left(seq, -num if reverse else num, key=(lambda o: -o.num) if reverse else (lambda o: o.num))
    end = max(start, end)
    first, last = args.get("first"), args.get("last")
    lo, hi = start, end
    if first is not None:
        hi = min(hi, lo + first)
    if last is not None:
        lo = max(lo, hi - last)
    page = seq[lo:hi]
    cursors = [encode_cursor(o.num) for o in page]
    return {
        "edges": [{"cursor": c, "node": o} for c, o in zip(cursors, page, strict=True)],
        "nodes": page,
        "pageInfo": {"hasNextPage": hi < len(seq), "hasPreviousPage": lo > 0,
                     "startCursor": cursors[0] if cursors else None, "endCursor": cursors[-1] if cursors else None},
    }


# ---------------------------------------------------------------------- search

_TOKEN = re.compile(r"""-?[\w.]+:(?:"[^"]*"|'[^']*'|[^\s()]+)|"[^"]*"|[^\s()]+""")


@dataclass(frozen=True)
class Term:
    field: str | None
    value: str
    negated: bool

    def test(self, candidate: Any) -> bool:
        text = "" if candidate is None else str(candidate).lower()
        value = self.value.lower()
        hit = text.startswith(value[:-1]) if value.endswith("*") else text == value
        return hit != self.negated


def parse_search(query: str | None) -> list[list[Term]]:
    """OR-groups of AND-terms; [] when there is no query."""
    if not query or not query.strip():
        return []
    groups: list[list[Term]] = [[]]
    for token in _TOKEN.findall(query):
        if token == "OR":
            groups.append([])
            continue
        if token == "AND":
            continue
        negated = token.startswith("-")
        body = token[1:] if negated else token
        name, sep, value = body.partition(":")
        if not sep:
            name, value = None, body  # a bare word
        value = value.strip("\"'")
        groups[-1].append(Term(name.lower() if name else None, value, negated))
    return [g for g in groups if g]


def _numeric_id(value: str, kind: str) -> str:
    parsed = parse_gid(value)
    return str(parsed[1]) if parsed and parsed[0] == kind else value


def search(seq: list[Any], query: str | None, fields: dict[str, Callable[[Any], Any]],
           by_sku: Callable[[str], list[Any]] | None = None) -> list[Any]:
    groups = parse_search(query)
    if not groups:
        return seq
    # Fast path: "sku:A OR sku:B ..." with exact values answers from the SKU index.
    if by_sku and all(len(g) == 1 and g[0].field == "sku" and not g[0].negated and not g[0].value.endswith("*")
                      for g in groups):
        found = {o.num: o for g in groups for o in by_sku(g[0].value)}
        return [found[k] for k in sorted(found)]

    def term_ok(obj: Any, term: Term) -> bool:
        getter = fields.get(term.field or "")
        if getter is None:
            return True  # Shopify ignores a field its search does not know
        return term.test(getter(obj))

    return [o for o in seq if any(all(term_ok(o, t) for t in g) for g in groups)]


VARIANT_SEARCH: dict[str, Callable[[Any], Any]] = {
    "sku": lambda v: v.sku, "id": lambda v: v.num, "title": lambda v: v.title,
    "product_id": lambda v: v.product.num, "product_status": lambda v: v.product.status,
}
PRODUCT_SEARCH: dict[str, Callable[[Any], Any]] = {
    "id": lambda p: p.num, "title": lambda p: p.title, "status": lambda p: p.status,
}
ITEM_SEARCH: dict[str, Callable[[Any], Any]] = {"sku": lambda i: i.sku, "id": lambda i: i.num}
LOCATION_SEARCH: dict[str, Callable[[Any], Any]] = {
    "name": lambda loc: loc.name, "id": lambda loc: loc.num, "active": lambda loc: str(loc.is_active).lower(),
}


def _search_query(args: dict[str, Any]) -> str | None:
    query = args.get("query")
    if query:  # "id:gid://shopify/X/1" is searched by its number
        query = re.sub(r"\b(id|product_id):(gid://shopify/\w+/(\d+))", r"\1:\3", query)
    return query


# ---------------------------------------------------------------------- root fields


def resolve_node(ctx: Ctx, gid: Any) -> Any:
    parsed = parse_gid(gid)
    if parsed is None:
        raise GraphQLError(f"Invalid global id '{gid}'", extensions={"code": "BAD_REQUEST"})
    kind = parsed[0]
    store = ctx.store
    return {
        "Location": store.location, "Product": store.product, "ProductVariant": store.variant,
        "InventoryItem": store.item, "InventoryLevel": store.level, "InventoryAdjustmentGroup": store.group,
        "BulkOperation": ctx.state.bulk.get,
    }.get(kind, lambda _gid: None)(gid)


field("QueryRoot", "node")(lambda _o, a, ctx: resolve_node(ctx, a["id"]))
field("QueryRoot", "nodes")(lambda _o, a, ctx: [resolve_node(ctx, i) for i in a["ids"]])
field("QueryRoot", "productVariant")(lambda _o, a, ctx: ctx.store.variant(a["id"]))
field("QueryRoot", "product")(lambda _o, a, ctx: ctx.store.product(a["id"]))
field("QueryRoot", "inventoryItem")(lambda _o, a, ctx: ctx.store.item(a["id"]))
field("QueryRoot", "inventoryLevel")(lambda _o, a, ctx: ctx.store.level(a["id"]))
field("QueryRoot", "currentBulkOperation")(
    lambda _o, a, ctx: ctx.state.bulk.current if a.get("type", "QUERY") == "QUERY" else None)


@field("QueryRoot", "location")
def _location(_o: Any, args: dict[str, Any], ctx: Ctx) -> Location | None:
    if args.get("id") is not None:
        return ctx.store.location(args["id"])
    active = sorted((loc for loc in ctx.store.locations.values() if loc.is_active), key=lambda loc: loc.num)
    return active[0] if active else None  # Shopify: no id -> the shop's primary location


@connection("QueryRoot", "locations")
def _locations(_o: Any, args: dict[str, Any], ctx: Ctx) -> list[Location]:
    locations = sorted(ctx.store.locations.values(), key=lambda loc: loc.num)
    if not args.get("includeInactive"):
        locations = [loc for loc in locations if loc.is_active]
    return search(locations, _search_query(args), LOCATION_SEARCH)


@connection("QueryRoot", "productVariants")
def _product_variants(_o: Any, args: dict[str, Any], ctx: Ctx) -> list[Variant]:
    return search(ctx.store.variant_order, _search_query(args), VARIANT_SEARCH, ctx.store.variants_with_sku)


@connection("QueryRoot", "products")
def _products(_o: Any, args: dict[str, Any], ctx: Ctx) -> list[Product]:
    query = _search_query(args)
    groups = parse_search(query)
    if groups and all(len(g) == 1 and g[0].field == "sku" for g in groups):
        by_sku = search(ctx.store.variant_order, query, VARIANT_SEARCH, ctx.store.variants_with_sku)
        found = {v.product.num: v.product for v in by_sku}
        return [found[k] for k in sorted(found)]
    return search(ctx.store.product_order, query, PRODUCT_SEARCH)


@connection("QueryRoot", "inventoryItems")
def _inventory_items(_o: Any, args: dict[str, Any], ctx: Ctx) -> list[InventoryItem]:
    return search(ctx.store.item_order, _search_query(args), ITEM_SEARCH,
                  lambda sku: [v.item for v in ctx.store.variants_with_sku(sku)])


# ---------------------------------------------------------------------- objects

for _type in ("Location", "Product", "ProductVariant", "InventoryItem", "InventoryLevel",
              "InventoryAdjustmentGroup", "BulkOperation"):
    field(_type, "id")(lambda o, _a, _c: o.gid)
for _type in ("Location", "Product", "ProductVariant", "InventoryItem"):
    field(_type, "legacyResourceId")(lambda o, _a, _c: str(o.num))
for _type in ("Location", "Product", "ProductVariant", "InventoryItem", "InventoryLevel", "InventoryAdjustmentGroup",
              "BulkOperation"):
    field(_type, "createdAt")(lambda o, _a, _c: o.created_at)

field("Location", "name")(lambda o, _a, _c: o.name)
field("Location", "isActive")(lambda o, _a, _c: o.is_active)
field("Location", "activatable")(lambda o, _a, _c: not o.is_active)
field("Location", "deactivatable")(lambda o, _a, _c: o.is_active)
field("Location", "hasActiveInventory")(lambda o, _a, _c: bool(o.levels))
field("Location", "fulfillsOnlineOrders")(lambda _o, _a, _c: True)


@field("Location", "inventoryLevel")
def _location_level(loc: Location, args: dict[str, Any], ctx: Ctx) -> Level | None:
    item = ctx.store.item(args["inventoryItemId"])
    return loc.levels.get(item.num) if item else None


@connection("Location", "inventoryLevels")
def _location_levels(loc: Location, _args: dict[str, Any], _ctx: Ctx) -> list[Level]:
    # ordered by item; Level.num is the location, so wrap for the item order
    return [_ByItem(loc.levels[k]) for k in sorted(loc.levels)]


class _ByItem:
    """A level ordered (and paged) by its item number, for Location.inventoryLevels."""

    __slots__ = ("level",)

    def __init__(self, level: Level) -> None:
        self.level = level

    @property
    def num(self) -> int:
        return self.level.item.num

    def __getattr__(self, name: str) -> Any:
        return getattr(self.level, name)


field("Product", "title")(lambda o, _a, _c: o.title)
field("Product", "status")(lambda o, _a, _c: o.status)
field("Product", "updatedAt")(lambda o, _a, _c: o.updated_at)
field("Product", "handle")(lambda o, _a, _c: re.sub(r"[^a-z0-9]+", "-", o.title.lower()).strip("-"))
field("Product", "totalInventory")(lambda o, _a, _c: sum(lv.available for v in o.variants for lv in v.item.levels.values()))
field("Product", "tracksInventory")(lambda o, _a, _c: any(v.item.tracked for v in o.variants))
connection("Product", "variants")(lambda o, _a, _c: list(o.variants))

field("ProductVariant", "sku")(lambda o, _a, _c: o.sku)
field("ProductVariant", "title")(lambda o, _a, _c: o.title)
field("ProductVariant", "displayName")(lambda o, _a, _c: f"{o.product.title} - {o.title}")
field("ProductVariant", "product")(lambda o, _a, _c: o.product)
field("ProductVariant", "inventoryItem")(lambda o, _a, _c: o.item)
field("ProductVariant", "inventoryQuantity")(lambda o, _a, _c: sum(lv.available for lv in o.item.levels.values()))
field("ProductVariant", "updatedAt")(lambda o, _a, _c: o.created_at)

field("InventoryItem", "sku")(lambda o, _a, _c: o.sku)
field("InventoryItem", "tracked")(lambda o, _a, _c: o.tracked)
field("InventoryItem", "variant")(lambda o, _a, _c: o.variant)
field("InventoryItem", "requiresShipping")(lambda _o, _a, _c: True)
field("InventoryItem", "updatedAt")(lambda o, _a, _c: o.created_at)
field("InventoryItem", "duplicateSkuCount")(lambda o, _a, ctx: len(ctx.store.variants_with_sku(o.sku)) - 1)


@field("InventoryItem", "inventoryLevel")
def _item_level(item: InventoryItem, args: dict[str, Any], ctx: Ctx) -> Level | None:
    location = ctx.store.location(args["locationId"])
    return item.levels.get(location.num) if location else None


connection("InventoryItem", "inventoryLevels")(lambda o, _a, _c: o.sorted_levels())

field("InventoryLevel", "item")(lambda o, _a, _c: o.item)
field("InventoryLevel", "location")(lambda o, _a, _c: o.location)
field("InventoryLevel", "updatedAt")(lambda o, _a, _c: o.updated_at)
field("InventoryLevel", "canDeactivate")(lambda _o, _a, _c: True)
field("InventoryLevel", "deactivationAlert")(lambda _o, _a, _c: None)


@field("InventoryLevel", "quantities")
def _quantities(level: Level, args: dict[str, Any], _ctx: Ctx) -> list[dict[str, Any]]:
    out = []
    for name in args["names"]:
        if name not in QUANTITY_NAMES:
            raise GraphQLError(f"'{name}' isn't a valid inventory quantity name. Valid names: {', '.join(QUANTITY_NAMES)}.",
                               extensions={"code": "BAD_REQUEST"})
        out.append({"name": name, "quantity": level.quantity(name), "updatedAt": level.updated_at,
                    "id": f"gid://shopify/InventoryQuantity/{level.location.num}?inventory_item_id={level.item.num}&name={name}"})
    return out


field("InventoryAdjustmentGroup", "reason")(lambda o, _a, _c: o.reason)
field("InventoryAdjustmentGroup", "referenceDocumentUri")(lambda o, _a, _c: o.reference_document_uri)
field("InventoryAdjustmentGroup", "app")(lambda _o, _a, _c: None)
field("InventoryAdjustmentGroup", "staffMember")(lambda _o, _a, _c: None)


@field("InventoryAdjustmentGroup", "changes")
def _changes(group: Any, args: dict[str, Any], _ctx: Ctx) -> list[Any]:
    items, locations, names = args.get("inventoryItemIds"), args.get("locationIds"), args.get("quantityNames")
    return [c for c in group.changes
            if (items is None or c.item.gid in items) and (locations is None or c.location.gid in locations)
            and (names is None or c.name in names)]


field("InventoryChange", "name")(lambda o, _a, _c: o.name)
field("InventoryChange", "delta")(lambda o, _a, _c: o.delta)
field("InventoryChange", "quantityAfterChange")(lambda o, _a, _c: o.quantity_after)
field("InventoryChange", "item")(lambda o, _a, _c: o.item)
field("InventoryChange", "location")(lambda o, _a, _c: o.location)
field("InventoryChange", "ledgerDocumentUri")(lambda o, _a, _c: o.ledger_document_uri)

field("BulkOperation", "status")(lambda o, _a, _c: o.status)
field("BulkOperation", "errorCode")(lambda o, _a, _c: o.error_code)
field("BulkOperation", "objectCount")(lambda o, _a, _c: str(o.object_count))
field("BulkOperation", "rootObjectCount")(lambda o, _a, _c: str(o.root_object_count))
field("BulkOperation", "fileSize")(lambda o, _a, _c: str(o.file_size) if o.file_size is not None else None)
field("BulkOperation", "url")(lambda o, _a, _c: o.url)
field("BulkOperation", "partialDataUrl")(lambda _o, _a, _c: None)
field("BulkOperation", "completedAt")(lambda o, _a, _c: o.completed_at)
field("BulkOperation", "query")(lambda o, _a, _c: o.query)
field("BulkOperation", "type")(lambda _o, _a, _c: "QUERY")


# ---------------------------------------------------------------------- graphql-core hooks


def field_resolver(source: Any, info: Any, **args: Any) -> Any:
    parent = info.parent_type.name
    if parent == "Mutation":
        fn = MUTATIONS.get(info.field_name)
        if fn is None:
            raise GraphQLError(f"Mutation.{info.field_name} is not served by the Shopify sandbox")
        return fn(args, info.context, info)
    fn = RESOLVERS.get((parent, info.field_name))
    if fn is not None:
        return fn(source, args, info.context)
    if isinstance(source, dict):
        return source.get(info.field_name)
    if info.field_name == "__typename":
        return parent
    raise GraphQLError(f"{parent}.{info.field_name} is not served by the Shopify sandbox",
                       extensions={"code": "NOT_IMPLEMENTED_IN_SANDBOX"})


def type_resolver(value: Any, _info: Any, _abstract_type: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("__typename")
    return getattr(value, "typename", None)
