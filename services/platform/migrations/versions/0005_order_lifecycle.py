"""The order lifecycle (issue 9): edits, cancellations, refunds to credit memos, the order reconciler.

Revision ID: 0005
Revises: 0004
"""

from alembic import op  # noqa: F401 - used once this revision has statements

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    raise NotImplementedError("forward only")
