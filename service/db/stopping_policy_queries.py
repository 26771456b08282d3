"""Queries on a study's stored early-stopping policy (``stopping_policies``, one row a study)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.db.models import StoppingPolicyRow, utcnow


def get(session: Session, study_id: str) -> StoppingPolicyRow | None:
    return session.get(StoppingPolicyRow, study_id)


def put(session: Session, study_id: str, revision: int, finished: int,
        policy: dict[str, Any]) -> None:
    """Store ``policy`` unless one calibrated at a newer ``revision`` is there already (two
    tells racing to recalibrate: the newer history wins, whichever commits last)."""
    table = StoppingPolicyRow.__table__
    insert = (postgresql.insert if session.get_bind().dialect.name == "postgresql"
              else sqlite.insert)
    values = {"study_id": study_id, "revision": revision, "finished": finished,
              "policy": policy, "updated_at": utcnow()}
    statement = insert(table).values(**values)
    session.execute(statement.on_conflict_do_update(
        index_elements=[table.c.study_id],
        set_={k: statement.excluded[k] for k in ("revision", "finished", "policy",
                                                  "updated_at")},
        where=table.c.revision < statement.excluded.revision))
