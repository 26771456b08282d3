"""Queries on pruner versions and pruned candidates; only the retraining ones read weights."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from service.db.models import PrunedCandidate, PrunerModel, Study

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


# --- what a retraining reads and writes ---------------------------------------------------------

def trained_on(session: Session, study_id: str) -> int | None:
    """Complete trials the study's most trained version learnt from; None: no version yet."""
    return session.scalar(select(func.max(PrunerModel.n_train))
                          .where(PrunerModel.study_id == study_id))


def newest_version(session: Session, study_id: str) -> Row | None:
    """``(n_train, weights)`` of the study's newest version (the next training's warm start)."""
    return session.execute(select(PrunerModel.n_train, PrunerModel.weights)
                           .where(PrunerModel.study_id == study_id)
                           .order_by(PrunerModel.version.desc()).limit(1)).one_or_none()


def active_weights(session: Session, study_id: str) -> bytes | None:
    """The weights of the version asks use now (the newest active one)."""
    return session.scalar(select(PrunerModel.weights)
                          .where(PrunerModel.study_id == study_id, PrunerModel.active)
                          .order_by(PrunerModel.version.desc()).limit(1))


def add_version(session: Session, study_id: str, **fields: Any) -> int | None:
    """Store a new version numbered after the newest, and return its number; None, storing
    nothing, when the study no longer exists (deleted while its model trained: the insert would
    break the foreign key). KEY SHARE holds off a delete until this transaction commits, when its
    cascade removes the new row with the study; SQLite's BEGIN IMMEDIATE already serialises this
    transaction with the delete."""
    if session.scalar(select(Study.id).where(Study.id == study_id)
                      .with_for_update(read=True, key_share=True)) is None:
        return None
    version = (session.scalar(select(func.max(PrunerModel.version))
                              .where(PrunerModel.study_id == study_id)) or 0) + 1
    session.add(PrunerModel(study_id=study_id, version=version, **fields))
    return version
