"""intermediate reports (learning curves), the study's fidelity, the trial's last step

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 02:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """``trial_reports``: one row per (trial, step) a running trial reported, so every
    acknowledged report is durable and a curve pages by step; indexed on (study, step) so the
    early-stopping rule reads the values at one rung without a scan. ``trials.last_step``: how
    far a trial went (a stopped trial's partial result). ``studies.fidelity``: the declared
    integer steps (``{"name", "min", "max"}``) the rungs are placed on; null when undeclared."""
    op.create_table(
        "trial_reports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("study_id", sa.String(length=32), nullable=False),
        sa.Column("trial_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["trial_id"], ["trials.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trial_id", "step", name="uq_trial_reports_trial_step"),
    )
    with op.batch_alter_table("trial_reports") as batch:
        batch.create_index("ix_trial_reports_study_step", ["study_id", "step"], unique=False)
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("last_step", sa.Integer(), nullable=True))
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("fidelity", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("fidelity")
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("last_step")
    with op.batch_alter_table("trial_reports") as batch:
        batch.drop_index("ix_trial_reports_study_step")
    op.drop_table("trial_reports")
