"""Queries on pruner versions and pruned candidates; only ``weights`` reads a model's bytes."""

from __future__ import annotations

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from service.db.models import PrunedCandidate, PrunerVersion

# Everything about a version but its weights: a listing must not read megabytes per row.
_SUMMARY = (PrunerVersion.version, PrunerVersion.active, PrunerVersion.n_train,
            PrunerVersion.device, PrunerVersion.seconds, PrunerVersion.metrics,
            PrunerVersion.created_at)


def version_page(session: Session, study_id: str, offset: int,
                 limit: int) -> tuple[list[Row], int]:
    """One page of the study's pruner versions, newest first, and how many there are."""
    total = session.scalar(select(func.count()).select_from(PrunerVersion)
                           .where(PrunerVersion.study_id == study_id)) or 0
    rows = session.execute(select(*_SUMMARY).where(PrunerVersion.study_id == study_id)
                           .order_by(PrunerVersion.version.desc()).offset(offset).limit(limit))
    return list(rows), total


def active_version(session: Session, study_id: str) -> int | None:
    return session.scalar(select(PrunerVersion.version)
                          .where(PrunerVersion.study_id == study_id, PrunerVersion.active)
                          .order_by(PrunerVersion.version.desc()).limit(1))


def newest_active_id(session: Session, study_id: str) -> int | None:
    """The row id of the study's newest active version: changes with every new version, so it
    tells a cache whether the model it holds is still the one to serve."""
    return session.scalar(select(PrunerVersion.id)
                          .where(PrunerVersion.study_id == study_id, PrunerVersion.active)
                          .order_by(PrunerVersion.version.desc()).limit(1))


def weights(session: Session, version_id: int) -> bytes | None:
    return session.scalar(select(PrunerVersion.weights).where(PrunerVersion.id == version_id))


def count_pruned(session: Session, study_id: str) -> int:
    return session.scalar(select(func.count()).select_from(PrunedCandidate)
                          .where(PrunedCandidate.study_id == study_id)) or 0
