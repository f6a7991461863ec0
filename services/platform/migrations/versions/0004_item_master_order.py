"""The item-master read model keeps Prima's item-change sequence, so that of two facts about one
item the later change wins even when their updated_at times are equal or out of order.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE readmodel.item_master ADD COLUMN change_id bigint")


def downgrade() -> None:
    raise NotImplementedError("forward only")
