"""The order reconciler (issue 9, item 5; services/shopify/reconciler.py): its watermark, its runs
and their progress, the orders it fed (their raw GraphQL body, kept for reprocessing as the
ingest keeps webhook bodies), and its exception records (the orphan watch, unreadable orders).
In the ingest schema beside the other ingests' own tables (raw_webhooks, prima_cursors).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        -- One row per reconciler ('orders'): every order updated in Shopify before `watermark`
        -- has been fed and acknowledged by Kafka; Prima sales orders created before
        -- `prima_checked_until` were checked for a Shopify order by the orphan watch.
        CREATE TABLE ingest.reconciler_state (
            name text PRIMARY KEY,
            watermark timestamptz,
            prima_checked_until timestamptz,
            updated_at timestamptz NOT NULL
        );

        -- Runs, scheduled or asked for by an operator (ReconcileOrders), with their progress.
        CREATE TABLE ingest.reconcile_runs (
            run_id uuid PRIMARY KEY,
            trigger text NOT NULL,
            status text NOT NULL CHECK (status IN ('requested', 'running', 'done', 'failed')),
            since timestamptz,
            requested_at timestamptz NOT NULL,
            started_at timestamptz,
            finished_at timestamptz,
            orders_total integer,
            total_precision text,
            orders_read integer NOT NULL DEFAULT 0,
            orders_fed integer NOT NULL DEFAULT 0,
            orders_known integer NOT NULL DEFAULT 0,
            orders_unreadable integer NOT NULL DEFAULT 0,
            pages integer NOT NULL DEFAULT 0,
            read_up_to timestamptz,
            watermark_before timestamptz,
            watermark_after timestamptz,
            error text
        );
        CREATE INDEX reconcile_runs_status ON ingest.reconcile_runs (status, requested_at);
        CREATE INDEX reconcile_runs_trigger ON ingest.reconcile_runs (trigger, started_at);

        -- Each order version the reconciler fed: the Admin GraphQL order as read, stored before it
        -- is published and marked once Kafka acknowledged it.
        CREATE TABLE ingest.reconciled_orders (
            raw_payload_id uuid PRIMARY KEY,
            shopify_order_id bigint NOT NULL,
            shopify_updated_at timestamptz NOT NULL,
            run_id uuid NOT NULL,
            body jsonb NOT NULL,
            fetched_at timestamptz NOT NULL,
            published_at timestamptz,
            UNIQUE (shopify_order_id, shopify_updated_at)
        );
        CREATE INDEX reconciled_orders_run ON ingest.reconciled_orders (run_id);

        -- Exception records of the reconciler: paid orders without a sales order after the
        -- deadline, Prima sales orders without a Shopify order, orders it could not read.
        CREATE TABLE ingest.reconciler_exceptions (
            exception_id uuid PRIMARY KEY,
            kind text NOT NULL,
            shopify_order_id bigint,
            order_name text,
            sales_order_number text,
            reason text NOT NULL,
            action text NOT NULL,
            payload jsonb NOT NULL,
            status text NOT NULL CHECK (status IN ('open', 'resolved')),
            raised_at timestamptz NOT NULL,
            resolved_at timestamptz
        );
        CREATE INDEX reconciler_exceptions_open ON ingest.reconciler_exceptions (status, kind, raised_at);
    """)


def downgrade() -> None:
    raise NotImplementedError("forward only")
