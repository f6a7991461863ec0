"""Fulfilment (issue 10): the Shopify gateway's journal of fulfilment writes (what it asked
Shopify, with the fulfilments the order already had, so that an answer lost in transit is found
and adopted rather than written twice) and the order read model's fulfilment.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # -- the Shopify gateway's fulfilment journal (services/shopify/fulfilment_writer.py) --------
    op.execute("""
        -- One row per fulfilment idempotency key ("prima-despatch:<despatch id>"; a tracking update's
        -- key has its versions). Written before the call to Shopify, with the command (the last
        -- attempt's) and the ids of the order's fulfilments as read just before; the fulfilment's
        -- id and name once Shopify made it (or it was found made and adopted); `answer` is the last
        -- answer (created, adopted, refused, updated), `user_errors` a refusal's "field: message".
        CREATE TABLE gateway.fulfilment_writes (
            idempotency_key text PRIMARY KEY,
            kind text NOT NULL CHECK (kind IN ('create', 'tracking')),
            command_id uuid NOT NULL,
            shopify_order_id bigint NOT NULL,
            despatch_id text NOT NULL,
            command jsonb NOT NULL,
            known_fulfilment_ids text[] NOT NULL DEFAULT '{}',
            fulfilment_id text,
            fulfilment_name text,
            attempts integer NOT NULL DEFAULT 0,
            first_sent_at timestamptz NOT NULL,
            last_sent_at timestamptz NOT NULL,
            answer text CHECK (answer IN ('created', 'adopted', 'refused', 'updated')),
            user_errors text[] NOT NULL DEFAULT '{}',
            answered_at timestamptz
        );
        CREATE INDEX fulfilment_writes_order ON gateway.fulfilment_writes (shopify_order_id);
    """)

    # -- the order read model's fulfilment (projections/order_fulfilment.py) ----------------------
    op.execute("""
        -- One row per Shopify order: its fulfilment state, its lines (bundles with their
        -- components, units fulfilled), Prima's despatch notes, the fulfilments asked of and made
        -- by Shopify (with their tracking and its updates), Shopify's fulfillment orders as last
        -- read, the open exception and those released. Rows come from the events only.
        CREATE TABLE readmodel.order_fulfilment (
            shopify_order_id bigint PRIMARY KEY,
            state text NOT NULL,
            lines jsonb NOT NULL DEFAULT '[]',
            despatches jsonb NOT NULL DEFAULT '[]',
            fulfilments jsonb NOT NULL DEFAULT '[]',
            tracking_numbers text[] NOT NULL DEFAULT '{}',
            fulfillment_orders jsonb,
            fulfillment_orders_read_at timestamptz,
            exception_kind text,
            exception jsonb,
            released_exceptions jsonb NOT NULL DEFAULT '[]',
            opened_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            last_event_version integer NOT NULL
        );
        CREATE INDEX order_fulfilment_exceptions ON readmodel.order_fulfilment (exception_kind)
            WHERE exception_kind IS NOT NULL;
        CREATE INDEX order_fulfilment_state ON readmodel.order_fulfilment (state, updated_at);
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS readmodel.order_fulfilment")
    op.execute("DROP TABLE IF EXISTS gateway.fulfilment_writes")
