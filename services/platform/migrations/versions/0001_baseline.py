"""Baseline: the tables as they were created before migrations (CREATE ... IF NOT EXISTS in each
service), so that a database created by an earlier version upgrades from here.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DDL = """
-- ingest.raw_webhooks (the webhook ingest)
CREATE SCHEMA IF NOT EXISTS ingest;
CREATE TABLE IF NOT EXISTS ingest.raw_webhooks (
    id            uuid PRIMARY KEY,
    webhook_id    text NOT NULL UNIQUE,
    topic         text NOT NULL,
    shop_domain   text NOT NULL,
    event_id      text,
    headers       jsonb NOT NULL,
    body          bytea NOT NULL,
    received_at   timestamptz NOT NULL,
    published_at  timestamptz,
    deliveries    integer NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS raw_webhooks_unpublished ON ingest.raw_webhooks (received_at) WHERE published_at IS NULL;

-- ingest.prima_cursors (the Prima ingest)
CREATE SCHEMA IF NOT EXISTS ingest;
CREATE TABLE IF NOT EXISTS ingest.prima_cursors (
    feed       text PRIMARY KEY,
    cursor     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- readmodel (the projector)
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

-- inventory.sync_runs (the catalogue reader)
CREATE SCHEMA IF NOT EXISTS inventory;
CREATE TABLE IF NOT EXISTS inventory.sync_runs (
    run_id uuid PRIMARY KEY,
    trigger text NOT NULL,
    status text NOT NULL,
    requested_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    variants integer,
    levels integer,
    error text
);
CREATE INDEX IF NOT EXISTS sync_runs_status ON inventory.sync_runs (status, requested_at);

-- gateway (the Shopify gateway)
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE TABLE IF NOT EXISTS gateway.parked_shopify_commands (
    command_id uuid PRIMARY KEY, sku text NOT NULL, message_type text NOT NULL, command jsonb NOT NULL,
    reason text NOT NULL, attempts integer NOT NULL, parked_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS parked_shopify_commands_sku ON gateway.parked_shopify_commands (sku);
CREATE TABLE IF NOT EXISTS gateway.shopify_inventory_batches (
    reference_document_uri text PRIMARY KEY, idempotency_key text NOT NULL,
    adjustment_group_id text, commands jsonb NOT NULL, confirmed_at timestamptz NOT NULL
);

-- gateway (the Prima gateway)
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE TABLE IF NOT EXISTS gateway.parked_commands (
    command_id uuid PRIMARY KEY, shopify_order_id bigint NOT NULL, command jsonb NOT NULL,
    reason text NOT NULL, attempts integer NOT NULL, parked_at timestamptz NOT NULL
);

-- outbox (the relay)
CREATE SCHEMA IF NOT EXISTS outbox;
CREATE TABLE IF NOT EXISTS outbox.relay_position (relay text PRIMARY KEY, position bigint NOT NULL);
"""


def upgrade() -> None:
    op.execute(DDL)


def downgrade() -> None:
    raise NotImplementedError("the baseline is not dropped")
