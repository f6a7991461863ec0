"""Healing without an operator (issue 8): parked commands re-driven on a schedule; the newest
inventory decision written per level, kept durably; webhooks quarantined when a validly signed
body cannot be normalized.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        ALTER TABLE gateway.parked_commands ADD COLUMN redrives integer NOT NULL DEFAULT 0;
        ALTER TABLE gateway.parked_commands ADD COLUMN next_attempt_at timestamptz;
        ALTER TABLE gateway.parked_commands ADD COLUMN given_up_at timestamptz;
        ALTER TABLE gateway.parked_commands ADD COLUMN resolved_at timestamptz;
        CREATE INDEX parked_commands_due ON gateway.parked_commands (gateway, next_attempt_at)
            WHERE resolved_at IS NULL AND given_up_at IS NULL;

        CREATE TABLE gateway.inventory_decisions (
            inventory_item_id text NOT NULL,
            location_id text NOT NULL,
            command_id uuid NOT NULL,
            issued_at timestamptz NOT NULL,
            quantity integer NOT NULL,
            written_at timestamptz NOT NULL,
            PRIMARY KEY (inventory_item_id, location_id)
        );

        ALTER TABLE ingest.raw_webhooks ADD COLUMN quarantined_at timestamptz;
        ALTER TABLE ingest.raw_webhooks ADD COLUMN quarantine_reason text;
    """)


def downgrade() -> None:
    raise NotImplementedError("forward only")
