"""Read-model tables (schema `readmodel`), each projection with its tracked Kafka position."""

from __future__ import annotations

import asyncpg

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
"""


async def create_read_model_schema(conn: asyncpg.Connection) -> None:
    await conn.execute(SCHEMA_SQL)
