"""The sandbox's data in PostgreSQL (asyncpg), one schema, created at startup."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .models import Item, ItemUpsert, SalesOrder, SalesOrderCreate, SalesOrderLine, StockUpsert

DDL = """
CREATE TABLE IF NOT EXISTS items (
    item_id         text PRIMARY KEY,
    sku             text NOT NULL UNIQUE,
    description     text NOT NULL,
    active          boolean NOT NULL,
    item_type       text NOT NULL CHECK (item_type IN ('stock', 'bundle', 'service')),
    components      jsonb NOT NULL DEFAULT '[]',
    unit_of_measure text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS items_changes ON items (updated_at, item_id);
-- Item changes, like stock's: change_id from a sequence, renewed on every change, given while a
-- lock serializes item writers, so change_ids become visible in increasing order ("change_id >
-- cursor" misses nothing; updated_at is now() of the transaction and may commit out of order).
CREATE SEQUENCE IF NOT EXISTS item_change_id;
ALTER TABLE items ADD COLUMN IF NOT EXISTS change_id bigint;
UPDATE items SET change_id = numbered.change_id
FROM (SELECT item_id, nextval('item_change_id') AS change_id
      FROM (SELECT item_id FROM items WHERE change_id IS NULL ORDER BY updated_at, item_id) AS unnumbered) AS numbered
WHERE items.item_id = numbered.item_id;
CREATE UNIQUE INDEX IF NOT EXISTS items_change_id ON items (change_id);
CREATE TABLE IF NOT EXISTS counters (name text PRIMARY KEY, value bigint NOT NULL);
INSERT INTO counters VALUES ('sales_order', 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS sales_orders (
    sales_order_number text PRIMARY KEY,
    external_reference text NOT NULL UNIQUE,
    idempotency_key    text NOT NULL,
    status             text NOT NULL DEFAULT 'open',
    body               jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    released_at        timestamptz
);
-- Stock per SKU and warehouse. change_id comes from a sequence (never reset) and is renewed on
-- every change, so "change_id > cursor" is exactly what changed since the cursor.
CREATE SEQUENCE IF NOT EXISTS stock_change_id;
CREATE TABLE IF NOT EXISTS stock (
    sku        text NOT NULL,
    warehouse  text NOT NULL,
    on_hand    bigint NOT NULL CHECK (on_hand >= 0),
    allocated  bigint NOT NULL CHECK (allocated >= 0),
    available  bigint GENERATED ALWAYS AS (on_hand - allocated) STORED,
    change_id  bigint NOT NULL UNIQUE,
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (sku, warehouse)
);
-- The latest sales order allocated on the record (its external reference and number): kept
-- through later changes, since the record includes every sales order up to that number.
ALTER TABLE stock ADD COLUMN IF NOT EXISTS allocated_for text;
ALTER TABLE stock ADD COLUMN IF NOT EXISTS allocated_sales_order text;
-- the order lifecycle (lifecycle.py): amendments count versions, a cancellation its time
ALTER TABLE sales_orders ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 1;
ALTER TABLE sales_orders ADD COLUMN IF NOT EXISTS cancelled_at timestamptz;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key                text PRIMARY KEY,
    request_hash       text NOT NULL,
    sales_order_number text REFERENCES sales_orders,
    replays            integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now()
);
"""

SEED_ITEMS = [
    ItemUpsert(item_id="ITM-0001", sku="TEE-BLK-M", description="Organic tee, black, M", item_type="stock"),
    ItemUpsert(item_id="ITM-0002", sku="TEE-BLK-L", description="Organic tee, black, L", item_type="stock"),
    ItemUpsert(item_id="ITM-0003", sku="MUG-STONE", description="Stoneware mug", item_type="stock"),
    ItemUpsert(item_id="ITM-0004", sku="GIFT-WRAP", description="Gift wrapping", item_type="service"),
    ItemUpsert(item_id="ITM-0005", sku="CAP-RETIRED", description="Logo cap (retired)", item_type="stock",
               active=False),
    ItemUpsert(item_id="ITM-0010", sku="GIFT-SET-TEE-MUG", description="Gift set: tee (M) and two mugs",
               item_type="bundle", components=[
                   {"item_id": "ITM-0001", "sku": "TEE-BLK-M", "quantity": 1},
                   {"item_id": "ITM-0003", "sku": "MUG-STONE", "quantity": 2},
               ]),
]

SEED_STOCK = [
    StockUpsert(sku="TEE-BLK-M", warehouse="WH-MAIN", on_hand=25),
    StockUpsert(sku="TEE-BLK-L", warehouse="WH-MAIN", on_hand=12),
    StockUpsert(sku="MUG-STONE", warehouse="WH-MAIN", on_hand=40),
]

STOCK_COLUMNS = ("sku", "warehouse", "on_hand", "allocated", "available", "change_id", "changed_at", "allocated_for",
                 "allocated_sales_order")
ALLOCATION_WAREHOUSE = "WH-MAIN"  # where Prima allocates a sales order's lines (its default warehouse)

# A sales order's allocation: each line's stock (a bundle's components) in the allocation
# warehouse, one new change per record, naming the sales order; a record that does not exist
# yet is made (nothing on hand: available goes negative, oversold).
ALLOCATE_STOCK = """
WITH wanted AS (
    SELECT sku, sum(units)::bigint AS units
    FROM unnest($1::text[], $2::bigint[]) AS w(sku, units) GROUP BY sku ORDER BY sku
)
INSERT INTO stock AS s (sku, warehouse, on_hand, allocated, change_id, changed_at, allocated_for,
                        allocated_sales_order)
SELECT sku, $3, 0, units, nextval('stock_change_id'), now(), $4, $5 FROM wanted ORDER BY sku
ON CONFLICT (sku, warehouse) DO UPDATE SET
    allocated = s.allocated + EXCLUDED.allocated, change_id = EXCLUDED.change_id,
    changed_at = EXCLUDED.changed_at, allocated_for = EXCLUDED.allocated_for,
    allocated_sales_order = EXCLUDED.allocated_sales_order
"""

# One statement for any number of rows: the wanted on_hand/allocated per row from what was given
# and what is stored; only rows that differ get written, each with a new change_id.
UPSERT_STOCK = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
        AS i(sku, warehouse, available, on_hand, allocated)
), given AS (
    SELECT i.sku, i.warehouse, i.available, s.on_hand AS old_on_hand, s.allocated AS old_allocated,
           CASE WHEN i.available IS NULL THEN coalesce(i.on_hand, s.on_hand, 0)
                ELSE greatest(i.available + coalesce(i.allocated, s.allocated, 0), 0) END AS on_hand,
           coalesce(i.allocated, s.allocated, 0) AS allocated
    FROM input i LEFT JOIN stock s USING (sku, warehouse)
), wanted AS (
    SELECT sku, warehouse, on_hand, old_on_hand, old_allocated,
           CASE WHEN available IS NULL THEN allocated ELSE on_hand - available END AS allocated
    FROM given
), changed AS (
    SELECT sku, warehouse, on_hand, allocated FROM wanted
    WHERE (on_hand, allocated) IS DISTINCT FROM (old_on_hand, old_allocated)
    ORDER BY sku, warehouse
), written AS (
    INSERT INTO stock AS s (sku, warehouse, on_hand, allocated, change_id, changed_at)
    SELECT sku, warehouse, on_hand, allocated, nextval('stock_change_id'), now() FROM changed
    ON CONFLICT (sku, warehouse) DO UPDATE SET
        on_hand = EXCLUDED.on_hand, allocated = EXCLUDED.allocated,
        change_id = EXCLUDED.change_id, changed_at = EXCLUDED.changed_at
    RETURNING change_id
)
SELECT count(*) AS changed, max(change_id) AS last_change_id FROM written
"""

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ApiError(Exception):
    """An answer other than success: HTTP status, stable code, message for people."""

    def __init__(self, code: str, message: str, status: int = 409, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


@dataclass(frozen=True)
class Created:
    order: SalesOrder
    replayed: bool


def request_hash(body: SalesOrderCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_cursor(updated_at: datetime, item_id: str) -> str:
    raw = json.dumps([updated_at.isoformat(), item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_at, item_id = json.loads(raw)
        return datetime.fromisoformat(updated_at), str(item_id)
    except (ValueError, TypeError) as exc:
        raise ApiError("invalid_cursor", "cursor is not one this API returned", 400) from exc


def decode_stock_cursor(cursor: str) -> int:
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise ApiError("invalid_cursor", "cursor is not one this API returned", 400)
    return int(cursor)


decode_change_cursor = decode_stock_cursor  # items' `after`: a change_id too


def _stock(row: asyncpg.Record) -> dict:
    return {**dict(row), "changed_at": row["changed_at"].isoformat().replace("+00:00", "Z")}


def _item(row: asyncpg.Record) -> Item:
    return Item(**{**dict(row), "components": json.loads(row["components"])})


def _order(row: asyncpg.Record) -> SalesOrder:
    meta = {k: row[k] for k in ("sales_order_number", "status", "created_at", "updated_at", "released_at", "version",
                                "cancelled_at")}
    return SalesOrder(**json.loads(row["body"]), **meta)


DDL_LOCK = "SELECT pg_advisory_xact_lock(hashtext('prima_sandbox_ddl'))"  # one process at a time makes tables


async def create_tables(pool: asyncpg.Pool, ddl: str) -> None:
    """Run a part's CREATE ... IF NOT EXISTS statements (journals, lifecycle, despatches), under
    the lock that Store.open takes too."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(DDL_LOCK)
        await conn.execute(ddl)


class Store:
    def __init__(self, pool: asyncpg.Pool, allocation_warehouse: str = ALLOCATION_WAREHOUSE):
        self.pool = pool
        self.allocation_warehouse = allocation_warehouse

    @classmethod
    async def open(cls, database_url: str, schema: str) -> Store:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"not a plain schema name: {schema!r}")
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():  # one process at a time creates the schema
                await conn.execute(DDL_LOCK)
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                await conn.execute(f"SET LOCAL search_path TO {schema}")
                await conn.execute(DDL)
                if not await conn.fetchval("SELECT EXISTS (SELECT FROM items)"):
                    await _upsert_items(conn, SEED_ITEMS)
                if not await conn.fetchval("SELECT EXISTS (SELECT FROM stock)"):
                    await _upsert_stock(conn, SEED_STOCK)
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=10,
                                         server_settings={"search_path": schema})
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    # items
    async def list_items(self, changed_since: datetime | None, cursor: str | None,
                         limit: int, after_change: str | None = None) -> tuple[list[Item], str | None]:
        if after_change is not None:
            if cursor is not None or changed_since is not None:
                raise ApiError("invalid_cursor", "after is not combined with cursor or changed_since", 400)
            return await self._items_after(decode_change_cursor(after_change), limit)
        after = decode_cursor(cursor) if cursor else None
        rows = await self.pool.fetch(
            """SELECT * FROM items
               WHERE ($1::timestamptz IS NULL OR updated_at >= $1)
                 AND ($2::timestamptz IS NULL OR (updated_at, item_id) > ($2, $3::text))
               ORDER BY updated_at, item_id LIMIT $4""",
            changed_since, after and after[0], after and after[1], limit + 1)
        page = rows[:limit]
        more = len(rows) > limit
        return [_item(r) for r in page], (encode_cursor(page[-1]["updated_at"], page[-1]["item_id"])
                                          if more else None)

    async def _items_after(self, position: int, limit: int) -> tuple[list[Item], str | None]:
        """Items changed after a change_id, in change_id order; next_cursor only when more wait."""
        rows = await self.pool.fetch("SELECT * FROM items WHERE change_id > $1 ORDER BY change_id LIMIT $2",
                                     position, limit + 1)
        page = rows[:limit]
        return [_item(r) for r in page], (str(page[-1]["change_id"]) if len(rows) > limit else None)

    async def get_item(self, sku: str) -> Item | None:
        row = await self.pool.fetchrow("SELECT * FROM items WHERE sku = $1", sku)
        return _item(row) if row else None

    async def upsert_items(self, items: list[ItemUpsert]) -> list[Item]:
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                await _upsert_items(conn, items)
            except asyncpg.UniqueViolationError as exc:
                raise ApiError("sku_conflict", f"a SKU belongs to another item: {exc.detail}") from exc
            wanted = {(c.item_id, c.sku) for item in items for c in item.components}
            known = {(r["item_id"], r["sku"]) for r in await conn.fetch(
                "SELECT item_id, sku FROM items WHERE item_id = ANY($1)", [i for i, _ in wanted])}
            if missing := sorted(wanted - known):
                names = ", ".join(f"{i} ({s})" for i, s in missing)
                raise ApiError("unknown_item", f"bundle components not in the item master: {names}", 422)
            rows = await conn.fetch("SELECT * FROM items WHERE item_id = ANY($1) ORDER BY item_id",
                                    [i.item_id for i in items])
        return [_item(r) for r in rows]

    # stock
    async def list_stock(self, after: str | None, limit: int) -> tuple[list[dict], str, bool]:
        """Rows changed after the cursor, in change_id order; the cursor is the last change_id."""
        position = decode_stock_cursor(after) if after is not None else 0
        rows = await self.pool.fetch(
            f"SELECT {', '.join(STOCK_COLUMNS)} FROM stock WHERE change_id > $1 ORDER BY change_id LIMIT $2",
            position, limit + 1)
        page = [_stock(r) for r in rows[:limit]]
        return page, str(page[-1]["change_id"] if page else position), len(rows) > limit

    async def upsert_stock(self, rows: list[StockUpsert]) -> dict[str, int | None]:
        async with self.pool.acquire() as conn, conn.transaction():
            return await _upsert_stock(conn, rows)

    # sales orders
    async def create_sales_order(self, key: str, body: SalesOrderCreate) -> Created:
        digest = request_hash(body)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                # Claim the key; a concurrent holder of the same key makes this wait for its commit.
                claimed = await conn.fetchval(
                    """INSERT INTO idempotency_keys (key, request_hash) VALUES ($1, $2)
                       ON CONFLICT (key) DO NOTHING RETURNING true""", key, digest)
                if not claimed:
                    return Created(await self._replay(conn, key, digest), replayed=True)
                await _check_items(conn, body)
                if mismatches := body.totals_mismatches():
                    raise ApiError("totals_mismatch", "; ".join(mismatches), 422)
                if existing := await conn.fetchval(
                        "SELECT sales_order_number FROM sales_orders WHERE external_reference = $1",
                        body.external_reference):
                    raise _duplicate(body.external_reference, existing)
                seq = await conn.fetchval(  # row lock: numbers are gapless and in commit order
                    "UPDATE counters SET value = value + 1 WHERE name = 'sales_order' RETURNING value")
                number = f"SO-{seq:06d}"
                row = await conn.fetchrow(
                    """INSERT INTO sales_orders (sales_order_number, external_reference, idempotency_key, body)
                       VALUES ($1, $2, $3, $4) RETURNING *""",
                    number, body.external_reference, key, body.model_dump_json())
                await conn.execute("UPDATE idempotency_keys SET sales_order_number = $2 WHERE key = $1",
                                   key, number)
                await _allocate(conn, body, number, self.allocation_warehouse)
                return Created(_order(row), replayed=False)
        except asyncpg.UniqueViolationError as exc:  # same external_reference committed meanwhile
            existing = await self.pool.fetchval(
                "SELECT sales_order_number FROM sales_orders WHERE external_reference = $1",
                body.external_reference)
            raise _duplicate(body.external_reference, existing) from exc

    async def _replay(self, conn: asyncpg.Connection, key: str, digest: str) -> SalesOrder:
        stored = await conn.fetchrow(
            "SELECT request_hash, sales_order_number FROM idempotency_keys WHERE key = $1", key)
        if stored["request_hash"] != digest:
            raise ApiError("idempotency_key_reused",
                           f"Idempotency-Key {key!r} was used for a different request "
                           f"(sales order {stored['sales_order_number']})")
        await conn.execute("UPDATE idempotency_keys SET replays = replays + 1 WHERE key = $1", key)
        row = await conn.fetchrow("SELECT * FROM sales_orders WHERE sales_order_number = $1",
                                  stored["sales_order_number"])
        return _order(row)

    async def get_sales_order(self, number: str) -> SalesOrder | None:
        row = await self.pool.fetchrow("SELECT * FROM sales_orders WHERE sales_order_number = $1", number)
        return _order(row) if row else None

    async def find_sales_orders(self, external_reference: str) -> list[SalesOrder]:
        rows = await self.pool.fetch(
            "SELECT * FROM sales_orders WHERE external_reference = $1 ORDER BY sales_order_number",
            external_reference)
        return [_order(r) for r in rows]

    async def list_sales_orders(self, created_since: datetime | None, cursor: str | None,
                                limit: int) -> tuple[list[SalesOrder], str | None]:
        """Sales orders created since `created_since`, by (created_at, number), keyset paged."""
        after_at, after_number = decode_cursor(cursor) if cursor else (None, None)
        rows = await self.pool.fetch(
            """SELECT * FROM sales_orders
               WHERE ($1::timestamptz IS NULL OR created_at >= $1)
                 AND ($2::timestamptz IS NULL OR (created_at, sales_order_number) > ($2, $3))
               ORDER BY created_at, sales_order_number LIMIT $4""",
            created_since, after_at, after_number, limit + 1)
        page = rows[:limit]
        more = len(rows) > limit
        return [_order(r) for r in page], (encode_cursor(page[-1]["created_at"], page[-1]["sales_order_number"])
                                           if more else None)

    async def release(self, number: str) -> SalesOrder | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM sales_orders WHERE sales_order_number = $1 FOR UPDATE", number)
            if row is None:
                return None
            if row["status"] == "open":
                row = await conn.fetchrow(
                    """UPDATE sales_orders SET status = 'released_to_warehouse', released_at = now(),
                       updated_at = now() WHERE sales_order_number = $1 RETURNING *""", number)
            elif row["status"] != "released_to_warehouse":
                raise ApiError("invalid_status", f"sales order {number} is {row['status']}")
            return _order(row)

    # sandbox
    async def stats(self) -> dict[str, int]:
        row = await self.pool.fetchrow(
            """SELECT (SELECT count(*) FROM sales_orders) AS sales_orders,
                      (SELECT coalesce(sum(replays), 0) FROM idempotency_keys) AS idempotent_replays""")
        return dict(row)

    async def reset(self, items: bool, stock: bool = False) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("TRUNCATE idempotency_keys, sales_orders")
            await conn.execute("UPDATE counters SET value = 0 WHERE name = 'sales_order'")
            if items:
                await conn.execute("TRUNCATE items")
                await _upsert_items(conn, SEED_ITEMS)
            if stock:  # the change_id sequence goes on: a poller's cursor stays valid
                await conn.execute("TRUNCATE stock")
                await _upsert_stock(conn, SEED_STOCK)


def _duplicate(external_reference: str, existing: str | None) -> ApiError:
    return ApiError("duplicate_external_reference",
                    f"external_reference {external_reference!r} already has sales order {existing}")


async def _check_items(conn: asyncpg.Connection, body: SalesOrderCreate) -> None:
    rows = await conn.fetch("SELECT item_id, sku, active FROM items WHERE item_id = ANY($1)",
                            [line.item_id for line in body.lines if line.kind == "item"])
    items = {r["item_id"]: r for r in rows}
    problems = []
    for line in body.lines:
        if line.kind == "account":
            continue  # booked to a ledger account, no item
        item = items.get(line.item_id)
        if item is None or not item["active"]:
            problems.append(f"line {line.line_number}: item {line.item_id} is "
                            f"{'unknown' if item is None else 'inactive'}")
        elif item["sku"] != line.sku:
            problems.append(f"line {line.line_number}: item {line.item_id} has SKU {item['sku']}, "
                            f"not {line.sku}")
    if problems:
        raise ApiError("unknown_item", "; ".join(problems), 422)


async def _allocate(conn: asyncpg.Connection, body: SalesOrderCreate, number: str, warehouse: str) -> None:
    """Allocate the order's lines in `warehouse`, in the transaction that creates the sales order
    (after its number: numbers and allocations are in commit order). A stock item allocates
    itself, a bundle its components; a service nothing."""
    skus, units = allocation_units(await conn.fetch(
        "SELECT item_id, item_type, components FROM items WHERE item_id = ANY($1)",
        [line.item_id for line in body.lines if line.kind == "item"]), body.lines)
    if not skus:
        return
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('prima_sandbox_stock:' || current_schema()))")
    await conn.execute(ALLOCATE_STOCK, skus, units, warehouse, body.external_reference, number)


def allocation_units(rows: list[asyncpg.Record], lines: list[SalesOrderLine]) -> tuple[list[str], list[int]]:
    """The stock a sales order's lines take: a stock item itself, a bundle its components, a
    service or an account line nothing."""
    items = {r["item_id"]: r for r in rows}
    skus, units = [], []
    for line in lines:
        if line.kind != "item" or line.item_id not in items:
            continue
        item = items[line.item_id]
        if item["item_type"] == "stock":
            skus.append(line.sku)
            units.append(line.quantity)
        elif item["item_type"] == "bundle":
            for component in json.loads(item["components"]):
                skus.append(component["sku"])
                units.append(line.quantity * component["quantity"])
    return skus, units


async def _upsert_items(conn: asyncpg.Connection, items: list[ItemUpsert]) -> None:
    # updated_at and change_id move only for rows that are new or actually changed. Writers take
    # a lock first, so change_ids become visible in increasing order (no gap a cursor could skip).
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('prima_sandbox_items:' || current_schema()))")
    await conn.executemany(
        """INSERT INTO items AS i (item_id, sku, description, active, item_type, components, unit_of_measure,
                                   change_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, nextval('item_change_id'))
           ON CONFLICT (item_id) DO UPDATE SET
               sku = EXCLUDED.sku, description = EXCLUDED.description, active = EXCLUDED.active,
               item_type = EXCLUDED.item_type, components = EXCLUDED.components,
               unit_of_measure = EXCLUDED.unit_of_measure, updated_at = now(), change_id = EXCLUDED.change_id
           WHERE (i.sku, i.description, i.active, i.item_type, i.components, i.unit_of_measure)
                 IS DISTINCT FROM (EXCLUDED.sku, EXCLUDED.description, EXCLUDED.active,
                                   EXCLUDED.item_type, EXCLUDED.components, EXCLUDED.unit_of_measure)""",
        [(i.item_id, i.sku, i.description, i.active, i.item_type,
          json.dumps([c.model_dump() for c in i.components]), i.unit_of_measure) for i in items])


async def _upsert_stock(conn: asyncpg.Connection, rows: list[StockUpsert]) -> dict[str, int | None]:
    """Set stock records (the last one wins for a repeated SKU and warehouse) in one statement.
    Writers take a lock first, so change_ids become visible in increasing order: a reader that
    has seen change_id N never later finds a new change below N (no gap a cursor could skip)."""
    latest = {(r.sku, r.warehouse): r for r in rows}
    columns = [list(c) for c in zip(*((r.sku, r.warehouse, r.available, r.on_hand, r.allocated)
                                      for r in latest.values()))] if latest else [[]] * 5
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('prima_sandbox_stock:' || current_schema()))")
    row = await conn.fetchrow(UPSERT_STOCK, *columns)
    return {"received": len(rows), "changed": row["changed"], "unchanged": len(latest) - row["changed"],
            "last_change_id": row["last_change_id"]}
