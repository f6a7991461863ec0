"""The platform: one parked-commands table for both gateways, the projections' dedupe by
aggregate version and their rebuilds, the item-master read model, the dead letters.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both gateways park in one table: which gateway, what the command is about, its type.
    op.execute("""
        ALTER TABLE gateway.parked_commands ADD COLUMN gateway text NOT NULL DEFAULT 'prima';
        ALTER TABLE gateway.parked_commands ADD COLUMN subject text;
        ALTER TABLE gateway.parked_commands ADD COLUMN message_type text NOT NULL DEFAULT 'CreateSalesOrder';
        ALTER TABLE gateway.parked_commands ADD COLUMN retried_at timestamptz;
        UPDATE gateway.parked_commands SET subject = shopify_order_id::text;
        ALTER TABLE gateway.parked_commands ALTER COLUMN subject SET NOT NULL;
        ALTER TABLE gateway.parked_commands DROP COLUMN shopify_order_id;
        ALTER TABLE gateway.parked_commands ALTER COLUMN gateway DROP DEFAULT;
        ALTER TABLE gateway.parked_commands ALTER COLUMN message_type DROP DEFAULT;
        INSERT INTO gateway.parked_commands (command_id, gateway, subject, message_type, command, reason, attempts,
                                             parked_at)
            SELECT command_id, 'shopify', sku, message_type, command, reason, attempts, parked_at
            FROM gateway.parked_shopify_commands ON CONFLICT (command_id) DO NOTHING;
        DROP TABLE gateway.parked_shopify_commands;
        CREATE INDEX parked_commands_subject ON gateway.parked_commands (gateway, subject);
    """)
    op.execute("""
        CREATE TABLE readmodel.applied_versions (
            projection text NOT NULL, aggregate_id uuid NOT NULL, version integer NOT NULL,
            PRIMARY KEY (projection, aggregate_id)
        );
        CREATE TABLE readmodel.rebuilds (
            projection text PRIMARY KEY, command_id uuid NOT NULL, target jsonb NOT NULL,
            requested_at timestamptz NOT NULL, finished_at timestamptz
        );
        CREATE TABLE readmodel.item_master (
            sku text PRIMARY KEY,
            item_id text NOT NULL,
            description text NOT NULL,
            item_type text NOT NULL,
            active boolean NOT NULL,
            components jsonb NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE TABLE readmodel.dead_letters (
            dead_letter_id uuid PRIMARY KEY,
            consumer_group text NOT NULL,
            topic text NOT NULL,
            kafka_partition integer NOT NULL,
            kafka_offset bigint NOT NULL,
            key_base64 text,
            value_base64 text NOT NULL,
            headers jsonb NOT NULL,
            original_message_type text,
            reason text NOT NULL,
            error text NOT NULL,
            attempts integer NOT NULL,
            status text NOT NULL,
            dead_lettered_at timestamptz NOT NULL,
            resolved_at timestamptz
        );
        CREATE INDEX dead_letters_open ON readmodel.dead_letters (status, dead_lettered_at);
    """)


def downgrade() -> None:
    raise NotImplementedError("forward only: restore from a backup to go back")
