"""The inventory-health read model: per SKU and Shopify location what Prima has available, the
buffer, the level this integration wants in Shopify, what Shopify shows, the last push and the
drift; per SKU the catalogue entry (Prima item, Shopify variant); and the inventory exceptions
that need a person. Built from the stock-events topic; rebuildable from offset zero.

Rows are derived from event data and event timestamps only (never the clock), so a rebuild
gives identical rows. The projection base (projections/base.py) applies each batch in one
transaction with its positions and applies each aggregate version once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import asyncpg

from contracts.inventory import events as ev
from contracts.topics import STOCK_EVENTS
from projections.base import Projection, ReadModel

log = logging.getLogger("shopify_prima.projections.inventory_health")

PUSH_KINDS = ("push_rejected", "push_failed")  # a StockItem holds one exception at a time
INVENTORY_HEALTH = ReadModel(
    name="inventory_health",
    states=("unknown", "not_in_shopify", "exception", "pending", "in_sync", "drift"),
    exception_kinds=(*PUSH_KINDS, "unmapped_warehouse", "variant_without_prima_item", "product_status_refused"),
)
STATES = INVENTORY_HEALTH.states
EXCEPTION_KINDS = INVENTORY_HEALTH.exception_kinds

HEALTH_COLUMNS = (
    "sku", "location_id", "warehouse", "prima_available", "prima_reference", "source", "buffer", "buffer_rule",
    "desired", "inventory_item_id", "shopify_level", "shopify_level_at", "pending_command_id", "pending_quantity",
    "last_push_at", "last_push_quantity", "last_confirmed_at", "pushes", "drift", "state", "exception_kind",
    "exception_reason", "last_sync_run_id", "updated_at", "last_event_version",
)
CATALOG_COLUMNS = (
    "sku", "item_id", "item_type", "active", "components", "prima_updated_at", "variant_id", "product_id",
    "product_status", "inventory_item_id", "variant_observed_at", "guard_reason", "status_requested",
    "status_command_id", "updated_at", "last_event_version",
)


def release_action(sku: str, location_id: str) -> str:
    return f"shopify-prima inventory release {sku} --location {location_id}"


def unmapped_warehouse_action(warehouse: str) -> str:
    return f"map the warehouse {warehouse} in SHOPIFY_PRIMA_INVENTORY_LOCATION_MAP"


def guard_action(sku: str) -> str:
    return f"create or activate the Prima item for SKU {sku}"


def derive_state(row: dict[str, Any]) -> str:
    if row["prima_available"] is None or row["desired"] is None:
        return "unknown"
    if row["inventory_item_id"] is None:
        return "not_in_shopify"
    if row["exception_kind"] is not None:
        return "exception"
    if row["pending_command_id"] is not None:
        return "pending"
    return "in_sync" if row["shopify_level"] == row["desired"] else "drift"


def _new_health(sku: str, location_id: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(HEALTH_COLUMNS)
    row.update(sku=sku, location_id=location_id, pushes=0, state="unknown", last_event_version=0)
    return row


def _new_catalog(sku: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(CATALOG_COLUMNS)
    row.update(sku=sku, last_event_version=0)
    return row


class _Batch:
    """The rows a batch touches, loaded once, changed in memory, written once at the end.
    Exceptions are written as they happen (in event order)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.health: dict[tuple[str, str], dict[str, Any]] = {}
        self.catalog: dict[str, dict[str, Any]] = {}
        self.dirty_health: set[tuple[str, str]] = set()
        self.dirty_catalog: set[str] = set()
        # open exceptions of the batch's SKUs: (sku, location, kind) -> [(exception_id, warehouse)]
        self.open: dict[tuple[str, str | None, str], list[tuple[UUID, str | None]]] = {}

    async def load(self, events: Sequence[Any]) -> None:
        keys = {(e.sku, e.location_id) for e in events if e.location_id is not None}
        skus = {e.sku for e in events}
        if keys:
            rows = await self.conn.fetch(
                """SELECT h.* FROM readmodel.inventory_health h
                   JOIN unnest($1::text[], $2::text[]) AS k(sku, location_id) USING (sku, location_id)""",
                [k[0] for k in keys], [k[1] for k in keys],
            )
            self.health.update({(r["sku"], r["location_id"]): dict(r) for r in rows})
        if skus:
            rows = await self.conn.fetch("SELECT * FROM readmodel.catalog_items WHERE sku = ANY($1::text[])",
                                         list(skus))
            for r in rows:
                row = dict(r)
                row["components"] = json.loads(row["components"]) if row["components"] is not None else None
                self.catalog[r["sku"]] = row
            rows = await self.conn.fetch(
                """SELECT exception_id, sku, location_id, kind, payload->>'warehouse' AS warehouse
                   FROM readmodel.inventory_exceptions WHERE status = 'open' AND sku = ANY($1::text[])""", list(skus))
            for r in rows:
                key = (r["sku"], r["location_id"], r["kind"])
                self.open.setdefault(key, []).append((r["exception_id"], r["warehouse"]))

    async def flush(self) -> None:
        if self.dirty_health:
            rows = [tuple(self.health[k][c] for c in HEALTH_COLUMNS) for k in sorted(self.dirty_health)]
            await self.conn.executemany(
                _upsert_sql("readmodel.inventory_health", HEALTH_COLUMNS, ("sku", "location_id")), rows)
        if self.dirty_catalog:
            rows = []
            for sku in sorted(self.dirty_catalog):
                row = dict(self.catalog[sku])
                if row["components"] is not None:
                    row["components"] = json.dumps(row["components"], sort_keys=True)
                rows.append(tuple(row[c] for c in CATALOG_COLUMNS))
            await self.conn.executemany(
                _upsert_sql("readmodel.catalog_items", CATALOG_COLUMNS, ("sku",), jsonb={"components"}), rows)

    # -- exceptions ---------------------------------------------------------------------------

    async def raise_exception(self, e: Any, kind: str, reason: str, payload: dict[str, Any], action: str,
                              supersedes: Iterable[str] | None = None, warehouse: str | None = None) -> None:
        """Open an exception; an open one for the same SKU, location and kind (or the kinds in
        `supersedes`) is resolved by it."""
        await self.resolve(e, supersedes or (kind,), warehouse=warehouse)
        inserted = await self.conn.fetchval(
            """INSERT INTO readmodel.inventory_exceptions
               (exception_id, sku, location_id, kind, reason, payload, action, status, raised_at)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, 'open', $8) ON CONFLICT (exception_id) DO NOTHING
               RETURNING exception_id""",
            e.event_id, e.sku, e.location_id, kind, reason, json.dumps(payload, sort_keys=True, default=str), action,
            e.timestamp,
        )
        if inserted is not None:
            self.open.setdefault((e.sku, e.location_id, kind), []).append((e.event_id, warehouse))

    async def resolve(self, e: Any, kinds: Iterable[str], location_id: str | None | bool = True,
                      warehouse: str | None = None) -> None:
        """Resolve the open exceptions of this SKU (and location, and warehouse if given) of these kinds."""
        location = e.location_id if location_id is True else location_id
        ids: list[UUID] = []
        for kind in kinds:
            entries = self.open.get((e.sku, location, kind), [])
            matching = [(i, w) for i, w in entries if warehouse is None or w == warehouse]
            ids += [i for i, _ in matching]
            self.open[(e.sku, location, kind)] = [entry for entry in entries if entry not in matching]
        if ids:
            await self.conn.execute(
                """UPDATE readmodel.inventory_exceptions SET status = 'resolved', resolved_at = $2
                   WHERE exception_id = ANY($1::uuid[]) AND status = 'open'""", ids, e.timestamp)

    # -- events -------------------------------------------------------------------------------

    async def apply(self, e: Any) -> bool:
        aggregate, _, name = e.event_type.partition(".")
        handler = HANDLERS[e.event_type]
        if aggregate == "StockItem":
            key = (e.sku, e.location_id)
            row = dict(self.health.get(key) or _new_health(*key))
            await handler(self, e, row)
            row["drift"] = (row["shopify_level"] - row["desired"]
                            if row["shopify_level"] is not None and row["desired"] is not None else None)
            row["state"] = derive_state(row)
            row["updated_at"] = e.timestamp
            row["last_event_version"] = e.aggregate_version
            self.health[key] = row
            self.dirty_health.add(key)
            return True
        row = dict(self.catalog.get(e.sku) or _new_catalog(e.sku))
        await handler(self, e, row)
        row["updated_at"] = e.timestamp
        row["last_event_version"] = e.aggregate_version
        self.catalog[e.sku] = row
        self.dirty_catalog.add(e.sku)
        return True


def _upsert_sql(table: str, columns: Sequence[str], key: Sequence[str], jsonb: set[str] = frozenset()) -> str:
    values = ", ".join(f"${i + 1}{'::jsonb' if c in jsonb else ''}" for i, c in enumerate(columns))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")


# ---------------------------------------------------------------- StockItem (per SKU and location)


async def _stock_registered(b: _Batch, e: ev.StockItemRegistered, row: dict) -> None:
    row["warehouse"] = e.warehouse
    if row["warehouse"]:  # the warehouse is mapped now
        await b.resolve(e, ("unmapped_warehouse",), location_id=None, warehouse=row["warehouse"])


async def _prima_recorded(b: _Batch, e: ev.PrimaAvailabilityRecorded, row: dict) -> None:
    row.update(prima_available=e.available, prima_reference=e.reference, source=e.source)


async def _desired_changed(b: _Batch, e: ev.DesiredLevelChanged, row: dict) -> None:
    row.update(prima_available=e.prima_available, buffer=e.buffer, buffer_rule=e.buffer_rule, desired=e.desired)


async def _observed(b: _Batch, e: ev.ShopifyLevelObserved, row: dict) -> None:
    row.update(inventory_item_id=e.inventory_item_id, shopify_level=e.available, shopify_level_at=e.observed_at,
               last_sync_run_id=e.sync_run_id)
    if row["pending_command_id"] is not None and row["last_push_at"] is not None and row["last_push_at"] < e.observed_at:
        row.update(pending_command_id=None, pending_quantity=None)  # read after the command was issued


async def _push_requested(b: _Batch, e: ev.PushRequested, row: dict) -> None:
    command = e.command
    row.update(pending_command_id=command.command_id, pending_quantity=command.quantity,
               last_push_at=command.issued_at, last_push_quantity=command.quantity, pushes=row["pushes"] + 1)
    if row["inventory_item_id"] is None:
        row["inventory_item_id"] = command.inventory_item_id


async def _push_confirmed(b: _Batch, e: ev.PushConfirmed, row: dict) -> None:
    if row["shopify_level_at"] is None or e.occurred_at >= row["shopify_level_at"]:
        row.update(shopify_level=e.quantity, shopify_level_at=e.occurred_at)
    if row["pending_command_id"] is not None and row["pending_command_id"] == e.command_id:
        row.update(pending_command_id=None, pending_quantity=None)
    if row["last_confirmed_at"] is None or e.occurred_at > row["last_confirmed_at"]:
        row["last_confirmed_at"] = e.occurred_at
    row.update(exception_kind=None, exception_reason=None)
    await b.resolve(e, PUSH_KINDS)


async def _push_rejected(b: _Batch, e: ev.PushRejected, row: dict) -> None:
    level = f" {row['pending_quantity']}" if row["pending_quantity"] is not None else ""
    reason = f"Shopify rejected the level{level}: {e.code}: {e.reason}"
    await _push_exception(b, e, row, "push_rejected", reason,
                          {"command_id": str(e.command_id), "code": e.code, "reason": e.reason})


async def _push_failed(b: _Batch, e: ev.PushFailed, row: dict) -> None:
    reason = f"the Shopify gateway gave up after {e.attempts} attempts: {e.reason}"
    await _push_exception(b, e, row, "push_failed", reason,
                          {"command_id": str(e.command_id), "attempts": e.attempts, "reason": e.reason})


async def _push_exception(b: _Batch, e: Any, row: dict, kind: str, reason: str, payload: dict) -> None:
    payload = {**payload, "quantity": row["pending_quantity"], "desired": row["desired"],
               "shopify_level": row["shopify_level"], "inventory_item_id": row["inventory_item_id"]}
    row.update(pending_command_id=None, pending_quantity=None, exception_kind=kind, exception_reason=reason)
    await b.raise_exception(e, kind, reason, payload, release_action(e.sku, e.location_id), supersedes=PUSH_KINDS)


async def _push_found_stale(b: _Batch, e: ev.PushFoundStale, row: dict) -> None:
    if row["shopify_level_at"] is None or e.observed_at >= row["shopify_level_at"]:
        row.update(shopify_level=e.shopify_level, shopify_level_at=e.observed_at)
    if row["pending_command_id"] is not None and row["pending_command_id"] == e.command_id:
        row.update(pending_command_id=None, pending_quantity=None)


async def _allocation(b: _Batch, e: Any, row: dict) -> None:
    """Pending allocations show in the desired level (DesiredLevelChanged); nothing else here."""


async def _push_released(b: _Batch, e: ev.PushReleased, row: dict) -> None:
    row.update(exception_kind=None, exception_reason=None)
    await b.resolve(e, PUSH_KINDS)


# ------------------------------------------------------------------------ CatalogItem (per SKU)


async def _catalog_registered(b: _Batch, e: ev.CatalogItemRegistered, row: dict) -> None:
    pass


async def _item_recorded(b: _Batch, e: ev.PrimaItemRecorded, row: dict) -> None:
    row.update(item_id=e.item_id, item_type=e.item_type, active=e.active, components=dict(e.components),
               prima_updated_at=e.updated_at)


async def _variant_recorded(b: _Batch, e: ev.ShopifyVariantRecorded, row: dict) -> None:
    row.update(variant_id=e.variant_id, product_id=e.product_id, product_status=e.product_status,
               inventory_item_id=e.inventory_item_id, variant_observed_at=e.observed_at)


async def _unmapped_warehouse(b: _Batch, e: ev.UnmappedWarehouseFound, row: dict) -> None:
    reason = (f"Prima has {e.available} of {e.sku} available in warehouse {e.warehouse}, "
              "which no Shopify location is mapped to")
    await b.raise_exception(e, "unmapped_warehouse", reason,
                            {"warehouse": e.warehouse, "available": e.available, "change_id": e.change_id},
                            unmapped_warehouse_action(e.warehouse), warehouse=e.warehouse)


async def _guard_raised(b: _Batch, e: ev.VariantWithoutPrimaItem, row: dict) -> None:
    row["guard_reason"] = e.reason
    reason = f"Shopify sells {e.sku} (variant {e.variant_id}) but {e.reason}"
    await b.raise_exception(e, "variant_without_prima_item", reason,
                            {"reason": e.reason, "product_id": e.product_id, "variant_id": e.variant_id},
                            guard_action(e.sku))


async def _guard_cleared(b: _Batch, e: ev.VariantGuardCleared, row: dict) -> None:
    row["guard_reason"] = None
    await b.resolve(e, ("variant_without_prima_item",))


async def _status_requested(b: _Batch, e: ev.ProductStatusRequested, row: dict) -> None:
    row.update(status_requested=e.command.status, status_command_id=e.command.command_id)


async def _status_confirmed(b: _Batch, e: ev.ProductStatusConfirmed, row: dict) -> None:
    if row["variant_id"] is not None:
        row["product_status"] = e.status
    if row["status_command_id"] == e.command_id:
        row.update(status_requested=None)
    await b.resolve(e, ("product_status_refused",))


async def _status_refused(b: _Batch, e: ev.ProductStatusRefused, row: dict) -> None:
    status = row["status_requested"]
    if row["status_command_id"] == e.command_id:
        row.update(status_requested=None)
    reason = f"Shopify refused to set product {row['product_id']} to {status}: {e.reason}"
    await b.raise_exception(e, "product_status_refused", reason,
                            {"command_id": str(e.command_id), "product_id": row["product_id"], "status": status,
                             "reason": e.reason},
                            f"set product {row['product_id']} to {status} in Shopify's admin, or fix: {e.reason}")


HANDLERS = {
    "StockItem.Registered": _stock_registered,
    "StockItem.PrimaAvailabilityRecorded": _prima_recorded,
    "StockItem.DesiredLevelChanged": _desired_changed,
    "StockItem.ShopifyLevelObserved": _observed,
    "StockItem.PushRequested": _push_requested,
    "StockItem.PushConfirmed": _push_confirmed,
    "StockItem.PushRejected": _push_rejected,
    "StockItem.PushFailed": _push_failed,
    "StockItem.PushFoundStale": _push_found_stale,
    "StockItem.PushReleased": _push_released,
    "StockItem.AllocationPending": _allocation,
    "StockItem.AllocationNumbered": _allocation,
    "StockItem.AllocationCleared": _allocation,
    "CatalogItem.Registered": _catalog_registered,
    "CatalogItem.PrimaItemRecorded": _item_recorded,
    "CatalogItem.ShopifyVariantRecorded": _variant_recorded,
    "CatalogItem.UnmappedWarehouseFound": _unmapped_warehouse,
    "CatalogItem.VariantWithoutPrimaItem": _guard_raised,
    "CatalogItem.VariantGuardCleared": _guard_cleared,
    "CatalogItem.ProductStatusRequested": _status_requested,
    "CatalogItem.ProductStatusConfirmed": _status_confirmed,
    "CatalogItem.ProductStatusRefused": _status_refused,
}


# ------------------------------------------------------------------------------ the projection


class InventoryHealthProjection(Projection):
    read_model = INVENTORY_HEALTH
    topic = STOCK_EVENTS
    accepts = (ev.StockEvent,)
    tables = ("readmodel.inventory_health", "readmodel.catalog_items", "readmodel.inventory_exceptions")

    async def apply(self, conn: asyncpg.Connection, messages: Sequence[Any]) -> None:
        await apply_events(conn, messages)

    async def counts(self, db: asyncpg.Pool | asyncpg.Connection) -> tuple[dict[str, int], dict[str, int]]:
        return await health_counts(db), await exception_counts(db)


async def apply_events(conn: asyncpg.Connection, events: Sequence[Any]) -> int:
    """Apply events in order (inside the caller's transaction); returns how many changed rows."""
    batch = _Batch(conn)
    await batch.load(events)
    applied = 0
    for e in events:
        applied += await batch.apply(e)
    await batch.flush()
    return applied


async def health_counts(db: asyncpg.Connection | asyncpg.Pool, sku_like: str | None = None) -> dict[str, int]:
    """SKU-locations by state (every state named, zero included). `sku_like`: a LIKE pattern."""
    rows = await db.fetch(
        "SELECT state, count(*) AS n FROM readmodel.inventory_health WHERE ($1::text IS NULL OR sku LIKE $1) "
        "GROUP BY state", sku_like,
    )
    counts = dict.fromkeys(STATES, 0)
    counts.update({r["state"]: r["n"] for r in rows})
    return counts


async def exception_counts(db: asyncpg.Connection | asyncpg.Pool) -> dict[str, int]:
    """Open inventory exceptions by kind (every kind named, zero included)."""
    rows = await db.fetch(
        "SELECT kind, count(*) AS n FROM readmodel.inventory_exceptions WHERE status = 'open' GROUP BY kind"
    )
    counts = dict.fromkeys(EXCEPTION_KINDS, 0)
    counts.update({r["kind"]: r["n"] for r in rows})
    return counts
