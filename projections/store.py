"""Read-model tables (schema `readmodel`), each projection with its tracked Kafka position."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import asyncpg

Record = tuple[int, int, bytes]  # (partition, offset, value) of one Kafka message

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS readmodel;
CREATE TABLE IF NOT EXISTS readmodel.positions (
    projection text NOT NULL, topic text NOT NULL, kafka_partition integer NOT NULL,
    next_offset bigint NOT NULL, PRIMARY KEY (projection, topic, kafka_partition)
);
CREATE TABLE IF NOT EXISTS readmodel.order_sync (
    shopify_order_id bigint PRIMARY KEY,
    order_name text NOT NULL,
    state text NOT NULL,
    financial_status text,
    currency text,
    total_price numeric(18, 2),
    total_tax numeric(18, 2),
    prima_sales_order_number text,
    command_id uuid,
    first_received_at timestamptz NOT NULL,
    shopify_updated_at timestamptz,
    sent_at timestamptz,
    in_prima_at timestamptz,
    last_event_at timestamptz NOT NULL,
    last_event_version integer NOT NULL
);
CREATE INDEX IF NOT EXISTS order_sync_state ON readmodel.order_sync (state, last_event_at);
CREATE TABLE IF NOT EXISTS readmodel.exceptions (
    exception_id uuid PRIMARY KEY,
    shopify_order_id bigint NOT NULL,
    order_name text,
    kind text NOT NULL,
    reason text NOT NULL,
    payload jsonb NOT NULL,
    action text NOT NULL,
    status text NOT NULL,
    raised_at timestamptz NOT NULL,
    resolved_at timestamptz
);
CREATE INDEX IF NOT EXISTS exceptions_open ON readmodel.exceptions (status, raised_at);

-- inventory_health (projections/inventory_health.py), from shopify-prima.stock-events.v1
CREATE TABLE IF NOT EXISTS readmodel.inventory_health (
    sku text NOT NULL,
    location_id text NOT NULL,
    warehouse text,
    prima_available integer,
    prima_reference text,
    source text,
    buffer integer,
    buffer_rule text,
    desired integer,
    inventory_item_id text,
    shopify_level integer,
    shopify_level_at timestamptz,
    pending_command_id uuid,
    pending_quantity integer,
    last_push_at timestamptz,
    last_push_quantity integer,
    last_confirmed_at timestamptz,
    pushes integer NOT NULL DEFAULT 0,
    drift integer,
    state text NOT NULL,
    exception_kind text,
    exception_reason text,
    last_sync_run_id uuid,
    updated_at timestamptz NOT NULL,
    last_event_version integer NOT NULL,
    PRIMARY KEY (sku, location_id)
);
CREATE INDEX IF NOT EXISTS inventory_health_state ON readmodel.inventory_health (state, updated_at);
CREATE TABLE IF NOT EXISTS readmodel.catalog_items (
    sku text PRIMARY KEY,
    item_id text,
    item_type text,
    active boolean,
    components jsonb,
    prima_updated_at timestamptz,
    variant_id text,
    product_id text,
    product_status text,
    inventory_item_id text,
    variant_observed_at timestamptz,
    guard_reason text,
    status_requested text,
    status_command_id uuid,
    updated_at timestamptz NOT NULL,
    last_event_version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS readmodel.inventory_exceptions (
    exception_id uuid PRIMARY KEY,
    sku text NOT NULL,
    location_id text,
    kind text NOT NULL,
    reason text NOT NULL,
    payload jsonb NOT NULL,
    action text NOT NULL,
    status text NOT NULL,
    raised_at timestamptz NOT NULL,
    resolved_at timestamptz
);
CREATE INDEX IF NOT EXISTS inventory_exceptions_open ON readmodel.inventory_exceptions (status, raised_at);
CREATE INDEX IF NOT EXISTS inventory_exceptions_sku ON readmodel.inventory_exceptions (sku, location_id, kind, status);
"""


async def create_read_model_schema(conn: asyncpg.Connection) -> None:
    await conn.execute(SCHEMA_SQL)


async def stored_positions(conn: asyncpg.Connection, projection: str, topic: str) -> dict[int, int]:
    """Where a projection stands in its topic: partition -> next offset to apply."""
    rows = await conn.fetch(
        "SELECT kafka_partition, next_offset FROM readmodel.positions WHERE projection = $1 AND topic = $2",
        projection, topic,
    )
    return {r["kafka_partition"]: r["next_offset"] for r in rows}


async def apply_in_order(
    conn: asyncpg.Connection, projection: str, topic: str, lock_key: int, records: Sequence[Record],
    expected: dict[int, int] | None, apply: Callable[[asyncpg.Connection, list[Record]], Awaitable[None]],
) -> bool:
    """Apply (partition, offset, value) records not applied yet and advance the positions, in
    one transaction under the projection's advisory lock (a rebuild holds it meanwhile).

    `expected` is where the caller believes each partition stands; if the stored position
    differs (a rebuild ran meanwhile), nothing is applied and False is returned."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
        stored = await stored_positions(conn, projection, topic)
        if expected is not None and any(stored.get(p, 0) != off for p, off in expected.items()):
            return False
        fresh = [r for r in records if r[1] >= stored.get(r[0], 0)]  # older ones are applied already
        await apply(conn, fresh)
        advanced: dict[int, int] = {}
        for partition, offset, _ in fresh:
            advanced[partition] = max(advanced.get(partition, 0), offset + 1)
        for partition, next_offset in advanced.items():
            await conn.execute(
                """INSERT INTO readmodel.positions VALUES ($1, $2, $3, $4)
                   ON CONFLICT (projection, topic, kafka_partition) DO UPDATE SET next_offset = EXCLUDED.next_offset""",
                projection, topic, partition, next_offset,
            )
    return True
