"""Queries on candidate pools of the two-step (static-metrics) ask."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from service.db.models import Candidate


def add_pool(session: Session, study_id: str, pool: str, rows: list[dict[str, Any]],
             client_id: str | None, expires_at: datetime) -> list[Candidate]:
    candidates = [Candidate(study_id=study_id, pool=pool, client_id=client_id,
                            expires_at=expires_at, **row) for row in rows]
    session.add_all(candidates)
    session.flush()
    return candidates


def pools_issued(session: Session, study_id: str) -> int:
    """How many candidates the study has issued: varies the proposals of concurrent pools."""
    return session.scalar(select(func.count()).select_from(Candidate)
                          .where(Candidate.study_id == study_id)) or 0


def by_tokens(session: Session, study_id: str, tokens: list[str]) -> list[Candidate]:
    return list(session.scalars(
        select(Candidate).where(Candidate.study_id == study_id, Candidate.token.in_(tokens))
    ))


def consume_pools(session: Session, study_id: str, pools: set[str], now: datetime) -> None:
    session.execute(
        update(Candidate)
        .where(Candidate.study_id == study_id, Candidate.pool.in_(pools),
               Candidate.consumed_at.is_(None))
        .values(consumed_at=now)
        .execution_options(synchronize_session=False)
    )


def purge_expired(session: Session, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` candidates whose pool expired before ``before`` (a crashed client's
    pools would otherwise stay forever). Bounded per call so a sweep never holds a long lock."""
    ids = list(session.scalars(select(Candidate.id).where(Candidate.expires_at < before)
                               .order_by(Candidate.expires_at).limit(limit)))
    if not ids:
        return 0
    session.execute(delete(Candidate).where(Candidate.id.in_(ids))
                    .execution_options(synchronize_session=False))
    return len(ids)
