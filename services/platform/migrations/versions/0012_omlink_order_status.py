"""Prima OM link (issue 15): the order status feed's memory (services/prima/omlink/status_feed.py).

OM link has no despatch feed: the Prima poller asks OrderStatus for each open order (a Prima
sales order not yet despatched in full or cancelled), each at most every status interval, the
order asked longest ago first. One row per order it has asked about: Prima's status as last
answered, when it was asked, the despatch fact it published (once Kafka acknowledged it), and
when the order was closed (no longer asked: despatched and published, or cancelled in Prima).

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE ingest.omlink_order_status (
            shopify_order_id bigint PRIMARY KEY,
            order_number text NOT NULL,         -- the OrderNumber Prima knows the order by
            status text,                        -- Prima's word, as last answered (NULL: never known)
            port_status text,                   -- open, picking, despatched, cancelled
            details jsonb NOT NULL DEFAULT '{}',  -- the answer's other values (DespatchDate, Carrier, ...)
            status_since timestamptz,           -- when Prima's answer last changed
            asked_at timestamptz NOT NULL,      -- the last OrderStatus asked (answered, or unknown to Prima)
            last_error text,                    -- why the last answer did not settle the order, if it did not
            despatch_id text,                   -- the PrimaDespatchRecorded published for it
            published_at timestamptz,           -- when Kafka acknowledged that fact
            closed_at timestamptz               -- no longer asked (despatched and published, or cancelled)
        );
        CREATE INDEX omlink_order_status_open ON ingest.omlink_order_status (asked_at) WHERE closed_at IS NULL;
        CREATE INDEX omlink_order_status_cancelled ON ingest.omlink_order_status (closed_at)
            WHERE port_status = 'cancelled';
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS ingest.omlink_order_status")
