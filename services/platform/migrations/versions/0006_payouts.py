"""Payouts (issue 11): Shopify payouts and their balance transactions, journals in Prima.

Revision ID: 0006
Revises: 0005
"""

from alembic import op  # noqa: F401 - used once this revision has statements

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    raise NotImplementedError("forward only")
