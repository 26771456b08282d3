"""Queries on pruner versions and pruned candidates; only ``weights`` and the retraining ones
read a model's bytes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.models import PrunedCandidate, PrunerVersion, Study

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


# The key in a version's ``metrics`` that marks it as trained on the deterministic schedule.
SCHEDULED = "deterministic"


def scheduled_versions(session: Session, study_id: str) -> list[Row]:
    """``(id, version, n_train, active)`` of the study's versions trained on the deterministic
    schedule, by ``n_train``: the first stored of each ``n_train`` only (two trainings of one
    scheduled point, racing, store equal weights on equal hardware; the first is the one
    served either way). Summaries only, no weights; asks read them when the schedule moves."""
    rows = session.execute(select(PrunerVersion.id, PrunerVersion.version, PrunerVersion.n_train,
                                  PrunerVersion.active, PrunerVersion.metrics)
                           .where(PrunerVersion.study_id == study_id)
                           .order_by(PrunerVersion.version))
    first: dict[int, Row] = {}
    for row in rows:
        if (row.metrics or {}).get(SCHEDULED) and row.n_train not in first:
            first[row.n_train] = row
    return [first[n] for n in sorted(first)]


def has_scheduled(session: Session, study_id: str, n_train: int) -> bool:
    """Whether the version scheduled at ``n_train`` results is stored (what a waiting
    deterministic ask polls: the few versions of one ``n_train``, no weights)."""
    found = session.scalars(select(PrunerVersion.metrics)
                            .where(PrunerVersion.study_id == study_id,
                                   PrunerVersion.n_train == n_train))
    return any((metrics or {}).get(SCHEDULED) for metrics in found)


def weights(session: Session, version_id: int) -> bytes | None:
    return session.scalar(select(PrunerVersion.weights).where(PrunerVersion.id == version_id))


def count_pruned(session: Session, study_id: str) -> int:
    return session.scalar(select(func.count()).select_from(PrunedCandidate)
                          .where(PrunedCandidate.study_id == study_id)) or 0


# --- what a retraining reads and writes ---------------------------------------------------------

def trained_on(session: Session, study_id: str) -> int | None:
    """Complete trials the study's most trained version learnt from; None: no version yet."""
    return session.scalar(select(func.max(PrunerVersion.n_train))
                          .where(PrunerVersion.study_id == study_id))


def newest_version(session: Session, study_id: str) -> Row | None:
    """``(n_train, weights)`` of the study's newest version (the next training's warm start)."""
    return session.execute(select(PrunerVersion.n_train, PrunerVersion.weights)
                           .where(PrunerVersion.study_id == study_id)
                           .order_by(PrunerVersion.version.desc()).limit(1)).one_or_none()


def active_weights(session: Session, study_id: str) -> bytes | None:
    """The weights of the version asks use now (the newest active one)."""
    return session.scalar(select(PrunerVersion.weights)
                          .where(PrunerVersion.study_id == study_id, PrunerVersion.active)
                          .order_by(PrunerVersion.version.desc()).limit(1))


class VersionTaken(Exception):
    """Another trainer stored the study's next version first: without Redis every server
    process may train the same study at once (``docs/scaling.md``), and the second to store
    finds its version number taken. Nothing of it is stored; nothing is wrong."""


def add_version(session: Session, study_id: str, **fields: Any) -> int | None:
    """Store a new version numbered after the newest, and return its number; None, storing
    nothing, when the study no longer exists (deleted while its model trained: the insert would
    break the foreign key). KEY SHARE holds off a delete until this transaction commits, when its
    cascade removes the new row with the study; SQLite's BEGIN IMMEDIATE already serialises this
    transaction with the delete. ``VersionTaken`` when another trainer stored the same number
    first (the unique (study, version) key refuses this one)."""
    if session.scalar(select(Study.id).where(Study.id == study_id)
                      .with_for_update(read=True, key_share=True)) is None:
        return None
    version = (session.scalar(select(func.max(PrunerVersion.version))
                              .where(PrunerVersion.study_id == study_id)) or 0) + 1
    try:
        with session.begin_nested():  # a savepoint: the caller's transaction stays usable
            session.add(PrunerVersion(study_id=study_id, version=version, **fields))
    except IntegrityError:
        raise VersionTaken(f"pruner v{version} of study {study_id} was stored meanwhile by "
                           "another trainer") from None
    return version
