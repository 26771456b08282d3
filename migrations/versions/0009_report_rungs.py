"""each report's rung: a trial's first report at or past a rung is its value there

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 08:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ETA = 3  # ``service.engine.early_stopping.ETA`` when this migration was written
RUNG_ONLY = sa.text("rung IS NOT NULL")


def _rungs(fidelity: dict) -> list[int]:
    """The rung steps of a stored fidelity, as ``Fidelity.rungs`` placed them."""
    out, step = [], max(int(fidelity["min"]), 1)
    while step < int(fidelity["max"]):
        out.append(step)
        step *= ETA
    return out


def upgrade() -> None:
    """``trial_reports.rung``: the rung a report was the trial's value at. Rung decisions used
    to happen only at reports exactly at a rung step, so a job that reported every 2 epochs was
    never judged; they now happen at the first report at or past each rung, whose step is
    arbitrary, so the rung a value counts for is stored with it and the rung indexes key on it
    (partial: most reports are at no rung). Reports stored before were judged at exact rung
    steps only: those rows get their step as their rung, one UPDATE per study that declared a
    fidelity."""
    with op.batch_alter_table("trial_reports") as batch:
        batch.add_column(sa.Column("rung", sa.Integer(), nullable=True))
    bind = op.get_bind()
    studies = sa.table("studies", sa.column("id", sa.String), sa.column("fidelity", sa.JSON))
    reports = sa.table("trial_reports", sa.column("study_id", sa.String),
                       sa.column("step", sa.Integer), sa.column("rung", sa.Integer))
    for study_id, fidelity in bind.execute(
            sa.select(studies.c.id, studies.c.fidelity).where(studies.c.fidelity.isnot(None))):
        rungs = _rungs(fidelity) if fidelity else []
        if rungs:
            bind.execute(reports.update()
                         .where(reports.c.study_id == study_id, reports.c.step.in_(rungs))
                         .values(rung=reports.c.step))
    with op.batch_alter_table("trial_reports") as batch:
        batch.drop_index("ix_trial_reports_study_step_id")
        batch.create_index("ix_trial_reports_study_rung_id", ["study_id", "rung", "id"],
                           postgresql_where=RUNG_ONLY, sqlite_where=RUNG_ONLY)
        batch.create_index("ix_trial_reports_trial_rung", ["trial_id", "rung"],
                           postgresql_where=RUNG_ONLY, sqlite_where=RUNG_ONLY)


def downgrade() -> None:
    with op.batch_alter_table("trial_reports") as batch:
        batch.drop_index("ix_trial_reports_trial_rung")
        batch.drop_index("ix_trial_reports_study_rung_id")
        batch.create_index("ix_trial_reports_study_step_id", ["study_id", "step", "id"])
        batch.drop_column("rung")
