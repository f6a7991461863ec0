"""Prima OM link (issue 15): the availability feed's memory (services/prima/omlink/availability_feed.py).

OM link answers ProductAvailableToSell with a full snapshot per product range, not a change feed:
the Prima poller keeps the last snapshot it published of each range, the SKUs whose item fact it
published (the item master has no other source with OM link), the Prima items the SKU matrix
could not name (each an open dead letter), and a sequence its stock and item facts draw their
change_id from.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        -- The change_id of every fact the OM link feed publishes. The stock and item aggregates,
        -- the item master and the inventory health ignore a fact whose change_id is not above the
        -- last they applied per SKU(-location), so these start far above any change_id Prima's
        -- REST feed can have given a shop that switches adapters (Prima's own stock and item
        -- sequences), and leave 8e18 values of room (int64).
        CREATE SEQUENCE ingest.omlink_change_id AS bigint START WITH 1000000000000000000
            MINVALUE 1000000000000000000;

        -- The last snapshot published of each product range: one row per SKU with its level.
        -- Written only after Kafka acknowledged the facts of the difference.
        CREATE TABLE ingest.omlink_availability (
            range_key text NOT NULL,
            sku text NOT NULL,
            warehouse text NOT NULL,
            available bigint NOT NULL,
            change_id bigint NOT NULL,
            seen_at timestamptz NOT NULL,
            PRIMARY KEY (range_key, sku)
        );

        -- Every SKU the feed has told the item master of (one PrimaItemChanged each, ever), or
        -- found already there from Prima's item feed (change_id NULL: nothing published).
        CREATE TABLE ingest.omlink_items (
            scope text NOT NULL,
            sku text NOT NULL,
            item_id text NOT NULL,
            change_id bigint,
            recorded_at timestamptz NOT NULL,
            PRIMARY KEY (scope, sku)
        );

        -- Prima items of a range the SKU matrix cannot name (or that make no fact), each with the
        -- dead letter published for it: published again only when its reason changes, resolved
        -- (DeadLetterRedriven) when the item is named or leaves the snapshot.
        CREATE TABLE ingest.omlink_unmapped (
            range_key text NOT NULL,
            item_code text NOT NULL,
            reason text NOT NULL,
            dead_letter_id uuid NOT NULL,
            seen_at timestamptz NOT NULL,
            PRIMARY KEY (range_key, item_code)
        );

        -- The OM link orders a complete pass named on stock facts (their held units released:
        -- the snapshot included them). Written after Kafka acknowledged the facts.
        CREATE TABLE ingest.omlink_settled_orders (
            scope text NOT NULL,
            shopify_order_id bigint NOT NULL,
            settled_at timestamptz NOT NULL,
            PRIMARY KEY (scope, shopify_order_id)
        );
    """)


def downgrade() -> None:
    op.execute("""
        DROP TABLE IF EXISTS ingest.omlink_settled_orders;
        DROP TABLE IF EXISTS ingest.omlink_unmapped;
        DROP TABLE IF EXISTS ingest.omlink_items;
        DROP TABLE IF EXISTS ingest.omlink_availability;
        DROP SEQUENCE IF EXISTS ingest.omlink_change_id;
    """)
