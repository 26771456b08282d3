"""calibrated early-stopping policies per study; rung reads bounded by the newest reports

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 07:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """``stopping_policies``: each study's calibrated keep fraction per rung (written after
    tells, read by rung reports). The (study, step) index of ``trial_reports`` gains ``id`` so a
    rung decision reads the newest values at its step, a bounded sample, without sorting every
    value reported there."""
    op.create_table(
        "stopping_policies",
        sa.Column("study_id", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("finished", sa.Integer(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("study_id"),
    )
    with op.batch_alter_table("trial_reports") as batch:
        batch.create_index("ix_trial_reports_study_step_id", ["study_id", "step", "id"],
                           unique=False)
        batch.drop_index("ix_trial_reports_study_step")


def downgrade() -> None:
    with op.batch_alter_table("trial_reports") as batch:
        batch.create_index("ix_trial_reports_study_step", ["study_id", "step"], unique=False)
        batch.drop_index("ix_trial_reports_study_step_id")
    op.drop_table("stopping_policies")
