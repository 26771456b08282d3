"""studies learn from prior studies (transfer_from)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 13:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Existing studies learn from nothing: an empty list."""
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("transfer_from", sa.JSON(), nullable=False,
                                   server_default=sa.text("'[]'")))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("transfer_from")
