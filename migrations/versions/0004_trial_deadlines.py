"""trial deadlines (bounded reaper) and the server-timed-out mark

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:00:00

"""

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """``deadline_at``: when a running trial goes silent past its study's heartbeat timeout, so
    the reaper reads only the stale rows through an index instead of every running row of every
    tenant. ``timed_out``: the server (not a client) failed the trial for silence, the one case a
    later result may overwrite a finished trial."""
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("timed_out", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.create_index("ix_trials_state_deadline", ["state", "deadline_at"], unique=False)
    connection = op.get_bind()
    trials = sa.table("trials", sa.column("id"), sa.column("study_id"), sa.column("state"),
                      sa.column("reason"), sa.column("heartbeat_at", sa.DateTime(timezone=True)),
                      sa.column("deadline_at", sa.DateTime(timezone=True)),
                      sa.column("timed_out", sa.Boolean()))
    studies = sa.table("studies", sa.column("id"), sa.column("heartbeat_timeout_s"))
    connection.execute(trials.update().where(trials.c.state == "failed",
                                             trials.c.reason == "heartbeat timeout")
                       .values(timed_out=True))
    rows = connection.execute(
        sa.select(trials.c.id, trials.c.heartbeat_at, studies.c.heartbeat_timeout_s)
        .join(studies, studies.c.id == trials.c.study_id)
        .where(trials.c.state == "running", trials.c.heartbeat_at.is_not(None))).all()
    for trial_id, heartbeat_at, timeout_s in rows:
        connection.execute(trials.update().where(trials.c.id == trial_id)
                           .values(deadline_at=heartbeat_at + timedelta(seconds=timeout_s)))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_index("ix_trials_state_deadline")
        batch.drop_column("timed_out")
        batch.drop_column("deadline_at")
