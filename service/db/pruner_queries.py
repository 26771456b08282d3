"""Queries on pruner versions and pruned candidates that never load model weights."""

from __future__ import annotations

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from service.db.models import PrunedCandidate, PrunerModel

# Everything about a version but its weights: a listing must not read megabytes per row.
_SUMMARY = (PrunerModel.version, PrunerModel.active, PrunerModel.n_train, PrunerModel.device,
            PrunerModel.seconds, PrunerModel.metrics, PrunerModel.created_at)


def version_page(session: Session, study_id: str, offset: int,
                 limit: int) -> tuple[list[Row], int]:
    """One page of the study's pruner versions, newest first, and how many there are."""
    total = session.scalar(select(func.count()).select_from(PrunerModel)
                           .where(PrunerModel.study_id == study_id)) or 0
    rows = session.execute(select(*_SUMMARY).where(PrunerModel.study_id == study_id)
                           .order_by(PrunerModel.version.desc()).offset(offset).limit(limit))
    return list(rows), total


def active_version(session: Session, study_id: str) -> int | None:
    return session.scalar(select(PrunerModel.version)
                          .where(PrunerModel.study_id == study_id, PrunerModel.active)
                          .order_by(PrunerModel.version.desc()).limit(1))


def count_pruned(session: Session, study_id: str) -> int:
    return session.scalar(select(func.count()).select_from(PrunedCandidate)
                          .where(PrunedCandidate.study_id == study_id)) or 0
