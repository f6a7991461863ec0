"""The edge (issue 13): limits and validation of hostile input.

Revision ID: 0007
Revises: 0006
"""

from alembic import op  # noqa: F401 - used once this revision has statements

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    raise NotImplementedError("forward only")
