"""The order lifecycle (issue 9): edits, cancellations, refunds to credit memos.

The order-sync read model (projections/order_sync.py) gets each order's Prima status and cut-off
state, its cancellation and the change it last sent; its timeline (every event with its time)
and its credit memos (one row per Shopify refund) are tables of their own; an exception names its
subject (the order, or one refund of it), so that a refund's exception and the order's are
raised and resolved apart.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        ALTER TABLE readmodel.order_sync ADD COLUMN prima_status text;
        ALTER TABLE readmodel.order_sync ADD COLUMN cutoff_state text;
        ALTER TABLE readmodel.order_sync ADD COLUMN cutoff_detail text;
        ALTER TABLE readmodel.order_sync ADD COLUMN cancelled_at timestamptz;
        ALTER TABLE readmodel.order_sync ADD COLUMN cancel_reason text;
        ALTER TABLE readmodel.order_sync ADD COLUMN last_change text;
        ALTER TABLE readmodel.order_sync ADD COLUMN changed_at timestamptz;

        ALTER TABLE readmodel.exceptions ADD COLUMN subject text NOT NULL DEFAULT 'order';
        CREATE INDEX exceptions_order_subject ON readmodel.exceptions (shopify_order_id, subject, status);

        CREATE TABLE readmodel.order_timeline (
            shopify_order_id bigint NOT NULL,
            aggregate_version integer NOT NULL,
            at timestamptz NOT NULL,
            kind text NOT NULL,
            summary text NOT NULL,
            detail jsonb NOT NULL DEFAULT '{}',
            PRIMARY KEY (shopify_order_id, aggregate_version)
        );

        CREATE TABLE readmodel.credit_memos (
            refund_id bigint PRIMARY KEY,
            shopify_order_id bigint NOT NULL,
            state text NOT NULL,
            currency text,
            refunded numeric(18, 2),
            total numeric(18, 2),
            credit_memo_number text,
            sales_order_number text,
            command_id uuid,
            lines jsonb NOT NULL DEFAULT '[]',
            restock_types text[] NOT NULL DEFAULT '{}',
            problem_kind text,
            problem text,
            refunded_at timestamptz,
            received_at timestamptz NOT NULL,
            requested_at timestamptz,
            created_at timestamptz,
            updated_at timestamptz NOT NULL
        );
        CREATE INDEX credit_memos_order ON readmodel.credit_memos (shopify_order_id);
        CREATE INDEX credit_memos_state ON readmodel.credit_memos (state, updated_at);
    """)


def downgrade() -> None:
    raise NotImplementedError("forward only")
