"""trials indexed by (study, state, value, number): a study's best trials without a scan

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 12:00:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The best complete trial (``trial_queries.best``: every study object the API returns) and
    the best few of a sample (the dashboard's ``sample_complete``, ``reported``) were a scan and
    a top-N sort of all the study's complete trials: about 100 ms at 100,000 trials on every
    dashboard page. In this order the best ones are the first entries of one index range."""
    op.create_index("ix_trials_study_state_value", "trials",
                    ["study_id", "state", "value", "number"])


def downgrade() -> None:
    op.drop_index("ix_trials_study_state_value", table_name="trials")
