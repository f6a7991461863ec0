"""The inventory-health read model: per SKU and Shopify location what Prima has available, the
buffer, the level this integration wants in Shopify, what Shopify shows, the last push and the
drift; per SKU the catalogue entry (Prima item, Shopify variant); and the inventory exceptions
that need a person. Built from the stock-events topic; rebuildable from offset zero.

Rows are derived from event data and event timestamps only (never the clock), so a rebuild
gives identical rows. Each batch is applied in one transaction with the Kafka positions it
advances to. Besides the positions, each row remembers the version of the aggregate event it
last applied, so an event relayed twice (same event, another offset) changes nothing. Event
types this projection does not know are counted and skipped, never fatal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, get_args
from uuid import UUID

import asyncpg
from pydantic import TypeAdapter, ValidationError

from contracts.inventory import StockEvent, StockEventType
from contracts.topics import STOCK_EVENTS
from projections.store import Record, apply_in_order, stored_positions
from services.metrics import PROJECTION_IGNORED, UNDECODABLE

log = logging.getLogger("shopify_prima.projections.inventory_health")

NAME = "inventory_health"
TOPIC = STOCK_EVENTS.name
TABLES = ("readmodel.inventory_health", "readmodel.catalog_items", "readmodel.inventory_exceptions")
LOCK_KEY = 7_310_102  # advisory lock: held by a rebuild, taken by each projector batch
EVENT = TypeAdapter(StockEvent)

STATES = ("unknown", "not_in_shopify", "exception", "pending", "in_sync", "drift")
PUSH_KINDS = ("push_rejected", "push_failed")  # a StockItem holds one exception at a time
EXCEPTION_KINDS = (*PUSH_KINDS, "unmapped_warehouse", "variant_without_prima_item", "product_status_refused")

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


def _ts(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _uuid(value: Any) -> UUID | None:
    return None if value is None else (value if isinstance(value, UUID) else UUID(str(value)))


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

    async def load(self, events: Sequence[StockEvent]) -> None:
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

    async def raise_exception(self, e: StockEvent, kind: str, reason: str, payload: dict[str, Any], action: str,
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

    async def resolve(self, e: StockEvent, kinds: Iterable[str], location_id: str | None | bool = True,
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

    async def apply(self, e: StockEvent) -> bool:
        aggregate, _, name = e.event_type.partition(".")
        if aggregate == "StockItem" and e.location_id is not None:
            handler = STOCK_HANDLERS.get(name)
            if handler is None:
                return _ignored(e)
            key = (e.sku, e.location_id)
            row = dict(self.health.get(key) or _new_health(*key))
            if e.aggregate_version <= row["last_event_version"]:
                return False  # applied already (relayed twice)
            if not await _handle(handler, self, e, row):
                return False
            row["drift"] = (row["shopify_level"] - row["desired"]
                            if row["shopify_level"] is not None and row["desired"] is not None else None)
            row["state"] = derive_state(row)
            row["updated_at"] = e.timestamp
            row["last_event_version"] = e.aggregate_version
            self.health[key] = row
            self.dirty_health.add(key)
            return True
        if aggregate == "CatalogItem":
            handler = CATALOG_HANDLERS.get(name)
            if handler is None:
                return _ignored(e)
            row = dict(self.catalog.get(e.sku) or _new_catalog(e.sku))
            if e.aggregate_version <= row["last_event_version"]:
                return False
            if not await _handle(handler, self, e, row):
                return False
            row["updated_at"] = e.timestamp
            row["last_event_version"] = e.aggregate_version
            self.catalog[e.sku] = row
            self.dirty_catalog.add(e.sku)
            return True
        return _ignored(e)


async def _handle(handler: Any, batch: _Batch, e: StockEvent, row: dict[str, Any]) -> bool:
    """Run a handler on a copy of the row; an event whose data lacks what its type promises is
    logged, counted as undecodable and skipped (the row stays as it was), never a crash loop."""
    try:
        await handler(batch, e, row, e.data)
        return True
    except (KeyError, TypeError, ValueError) as exc:
        log.error("%s event %s (%s v%s) has unusable data, skipped: %r", e.event_type, e.event_id, e.sku,
                  e.aggregate_version, exc)
        UNDECODABLE.labels(topic=TOPIC).inc()
        return False


def _ignored(e: StockEvent) -> bool:
    log.info("ignoring %s event %s (not known to %s)", e.event_type, e.event_id, NAME)
    PROJECTION_IGNORED.labels(projection=NAME, event_type=e.event_type[:100]).inc()
    return False


def _upsert_sql(table: str, columns: Sequence[str], key: Sequence[str], jsonb: set[str] = frozenset()) -> str:
    values = ", ".join(f"${i + 1}{'::jsonb' if c in jsonb else ''}" for i, c in enumerate(columns))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")


# ---------------------------------------------------------------- StockItem (per SKU and location)


async def _stock_registered(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    row["warehouse"] = d.get("warehouse")
    if row["warehouse"]:  # the warehouse is mapped now
        await b.resolve(e, ("unmapped_warehouse",), location_id=None, warehouse=row["warehouse"])


async def _prima_recorded(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    row.update(prima_available=d["available"], prima_reference=d.get("reference"), source=d.get("source"))


async def _desired_changed(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    row.update(prima_available=d["prima_available"], buffer=d["buffer"], buffer_rule=d.get("buffer_rule"),
               desired=d["desired"])


async def _observed(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    observed_at = _ts(d["observed_at"])
    row.update(inventory_item_id=d["inventory_item_id"], shopify_level=d["available"], shopify_level_at=observed_at,
               last_sync_run_id=_uuid(d.get("sync_run_id")))
    if row["pending_command_id"] is not None and row["last_push_at"] is not None and row["last_push_at"] < observed_at:
        row.update(pending_command_id=None, pending_quantity=None)  # read after the command was issued


async def _push_requested(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    command = d["command"]
    row.update(pending_command_id=_uuid(command["command_id"]), pending_quantity=command["quantity"],
               last_push_at=_ts(command["issued_at"]), last_push_quantity=command["quantity"],
               pushes=row["pushes"] + 1)
    if row["inventory_item_id"] is None:
        row["inventory_item_id"] = command.get("inventory_item_id")


async def _push_confirmed(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    occurred_at = _ts(d["occurred_at"])
    if row["shopify_level_at"] is None or occurred_at >= row["shopify_level_at"]:
        row.update(shopify_level=d["quantity"], shopify_level_at=occurred_at)
    if row["pending_command_id"] is not None and row["pending_command_id"] == _uuid(d["command_id"]):
        row.update(pending_command_id=None, pending_quantity=None)
    if row["last_confirmed_at"] is None or occurred_at > row["last_confirmed_at"]:
        row["last_confirmed_at"] = occurred_at
    row.update(exception_kind=None, exception_reason=None)
    await b.resolve(e, PUSH_KINDS)


async def _push_rejected(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    level = f" {row['pending_quantity']}" if row["pending_quantity"] is not None else ""
    reason = f"Shopify rejected the level{level}: {d.get('code')}: {d.get('reason')}"
    await _push_exception(b, e, row, "push_rejected", reason,
                          {"command_id": d["command_id"], "code": d.get("code"), "reason": d.get("reason")})


async def _push_failed(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    reason = f"the Shopify gateway gave up after {d.get('attempts')} attempts: {d.get('reason')}"
    await _push_exception(b, e, row, "push_failed", reason,
                          {"command_id": d["command_id"], "attempts": d.get("attempts"), "reason": d.get("reason")})


async def _push_exception(b: _Batch, e: StockEvent, row: dict, kind: str, reason: str, payload: dict) -> None:
    payload = {**payload, "quantity": row["pending_quantity"], "desired": row["desired"],
               "shopify_level": row["shopify_level"], "inventory_item_id": row["inventory_item_id"]}
    row.update(pending_command_id=None, pending_quantity=None, exception_kind=kind, exception_reason=reason)
    await b.raise_exception(e, kind, reason, payload, release_action(e.sku, e.location_id), supersedes=PUSH_KINDS)


async def _push_released(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    row.update(exception_kind=None, exception_reason=None)
    await b.resolve(e, PUSH_KINDS)


STOCK_HANDLERS = {
    "Registered": _stock_registered,
    "PrimaAvailabilityRecorded": _prima_recorded,
    "DesiredLevelChanged": _desired_changed,
    "ShopifyLevelObserved": _observed,
    "PushRequested": _push_requested,
    "PushConfirmed": _push_confirmed,
    "PushRejected": _push_rejected,
    "PushFailed": _push_failed,
    "PushReleased": _push_released,
}


# ------------------------------------------------------------------------ CatalogItem (per SKU)


async def _catalog_registered(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    pass


async def _item_recorded(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    row.update(item_id=d["item_id"], item_type=d["item_type"], active=d["active"],
               components=dict(d.get("components") or {}), prima_updated_at=_ts(d.get("updated_at")))


async def _variant_recorded(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    row.update(variant_id=d["variant_id"], product_id=d["product_id"], product_status=d["product_status"],
               inventory_item_id=d.get("inventory_item_id"), variant_observed_at=_ts(d.get("observed_at")))


async def _unmapped_warehouse(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    warehouse = d["warehouse"]
    reason = (f"Prima has {d.get('available')} of {e.sku} available in warehouse {warehouse}, "
              "which no Shopify location is mapped to")
    await b.raise_exception(e, "unmapped_warehouse", reason,
                            {"warehouse": warehouse, "available": d.get("available"), "change_id": d.get("change_id")},
                            unmapped_warehouse_action(warehouse), warehouse=warehouse)


async def _guard_raised(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    row["guard_reason"] = d["reason"]
    reason = f"Shopify sells {e.sku} (variant {d.get('variant_id')}) but {d['reason']}"
    await b.raise_exception(e, "variant_without_prima_item", reason,
                            {"reason": d["reason"], "product_id": d.get("product_id"),
                             "variant_id": d.get("variant_id")},
                            guard_action(e.sku))


async def _guard_cleared(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    row["guard_reason"] = None
    await b.resolve(e, ("variant_without_prima_item",))


async def _status_requested(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    command = d["command"]
    row.update(status_requested=command["status"], status_command_id=_uuid(command["command_id"]))


async def _status_confirmed(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    if row["variant_id"] is not None:
        row["product_status"] = d["status"]
    if row["status_command_id"] == _uuid(d["command_id"]):
        row.update(status_requested=None)
    await b.resolve(e, ("product_status_refused",))


async def _status_refused(b: _Batch, e: StockEvent, row: dict, d: dict) -> None:
    status = row["status_requested"]
    if row["status_command_id"] == _uuid(d["command_id"]):
        row.update(status_requested=None)
    reason = f"Shopify refused to set product {row['product_id']} to {status}: {d.get('reason')}"
    await b.raise_exception(e, "product_status_refused", reason,
                            {"command_id": d["command_id"], "product_id": row["product_id"], "status": status,
                             "reason": d.get("reason")},
                            f"set product {row['product_id']} to {status} in Shopify's admin, "
                            f"or fix: {d.get('reason')}")


CATALOG_HANDLERS = {
    "Registered": _catalog_registered,
    "PrimaItemRecorded": _item_recorded,
    "ShopifyVariantRecorded": _variant_recorded,
    "UnmappedWarehouseFound": _unmapped_warehouse,
    "VariantWithoutPrimaItem": _guard_raised,
    "VariantGuardCleared": _guard_cleared,
    "ProductStatusRequested": _status_requested,
    "ProductStatusConfirmed": _status_confirmed,
    "ProductStatusRefused": _status_refused,
}


# ------------------------------------------------------------------------------ the projection


KNOWN_TYPES = frozenset(get_args(StockEventType))


def decode(value: bytes, partition: int | None = None, offset: int | None = None) -> StockEvent | None:
    """The event, or None: an event type this projection does not know is counted and skipped,
    an undecodable message logged (with its position), counted and skipped."""
    try:
        return EVENT.validate_json(value)
    except ValidationError as exc:
        try:
            raw = json.loads(value)
        except ValueError:
            raw = None
        event_type = raw.get("event_type") if isinstance(raw, dict) else None
        if isinstance(raw, dict) and raw.get("message_type") == "StockEvent" and event_type not in KNOWN_TYPES:
            log.info("ignoring event type %r at %s partition %s offset %s", event_type, TOPIC, partition, offset)
            PROJECTION_IGNORED.labels(projection=NAME, event_type=str(event_type)[:100]).inc()
            return None
        log.error("undecodable message on %s partition %s offset %s skipped: %s", TOPIC, partition, offset, exc)
        UNDECODABLE.labels(topic=TOPIC).inc()
        return None


async def apply_events(conn: asyncpg.Connection, events: Sequence[StockEvent]) -> int:
    """Apply events in order (inside the caller's transaction); returns how many changed rows."""
    batch = _Batch(conn)
    await batch.load(events)
    applied = 0
    for e in events:
        applied += await batch.apply(e)
    await batch.flush()
    return applied


async def positions(conn: asyncpg.Connection) -> dict[int, int]:
    return await stored_positions(conn, NAME, TOPIC)


async def apply_batch(
    conn: asyncpg.Connection, records: Sequence[Record], expected: dict[int, int] | None
) -> bool:
    """Apply (partition, offset, value) records and advance the positions (store.apply_in_order).
    Undecodable records are counted, logged and skipped; their positions advance."""

    async def apply(conn: asyncpg.Connection, fresh: list[Record]) -> None:
        events = [decode(value, partition, offset) for partition, offset, value in fresh]
        await apply_events(conn, [e for e in events if e is not None])

    return await apply_in_order(conn, NAME, TOPIC, LOCK_KEY, records, expected, apply)


async def reset(conn: asyncpg.Connection) -> None:
    """Empty the read model and its positions (inside the caller's transaction)."""
    await conn.execute(f"TRUNCATE {', '.join(TABLES)}")
    await conn.execute("DELETE FROM readmodel.positions WHERE projection = $1", NAME)


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
