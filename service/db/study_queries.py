"""Queries on the study aggregate: create, find for an owner, lock for a write, delete."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.models import Study, Trial


@dataclass(frozen=True)
class StudyLock:
    """What a write learns when it takes the study's row lock."""

    revision: int  # the revision this write's changes are stamped with
    next_number: int
    study: Study  # the locked row, as of this write (read in the same statement)


def create_study(session: Session, owner_id: int, name: str, **fields: Any) -> Study | None:
    """The new study, or None when the owner already has one called ``name``: also when a
    concurrent create committed that name a moment ago (the unique index refuses this insert in
    a savepoint, so the caller's transaction stays usable and answers a conflict, not a 500)."""
    study = Study(id=uuid.uuid4().hex, owner_id=owner_id, name=name, next_number=0, revision=0,
                  **fields)
    try:
        with session.begin_nested():
            session.add(study)
    except IntegrityError:
        if by_name(session, owner_id, name) is None:
            raise  # not the name: a real fault
        return None
    return study


def by_name(session: Session, owner_id: int, name: str) -> Study | None:
    """The owner's study called ``name`` (names are unique per owner)."""
    return session.scalar(select(Study).where(Study.owner_id == owner_id, Study.name == name))


def get_study(session: Session, owner_id: int, study_id: str) -> Study | None:
    """The study if it exists and belongs to ``owner_id``; another owner's study is None (404)."""
    return session.scalar(select(Study).where(Study.id == study_id, Study.owner_id == owner_id))


def by_id(session: Session, study_id: str) -> Study | None:
    """The study whatever its owner: for the server's own work (the reaper, caches, a write that
    already holds the owner's lock), never to answer a request for a study by id."""
    return session.get(Study, study_id)


def row_locked(session: Session, study_id: str) -> Study:
    """The study row under ``SELECT ... FOR UPDATE``, for a change to the study itself that the
    trials' revision need not see (its user_attrs)."""
    return session.scalars(select(Study).where(Study.id == study_id).with_for_update()).one()


def list_studies(session: Session, owner_id: int, name: str | None = None, offset: int = 0,
                 limit: int = 100, search: str | None = None,
                 newest_first: bool = False) -> tuple[list[Study], int]:
    """One page of the owner's studies in creation order, and how many there are in all;
    ``name`` matches exactly, ``search`` anywhere in the name, ignoring case."""
    where = [Study.owner_id == owner_id]
    if name is not None:
        where.append(Study.name == name)
    if search:
        where.append(Study.name.icontains(search, autoescape=True))
    total = session.scalar(select(func.count()).select_from(Study).where(*where)) or 0
    order = ((Study.created_at.desc(), Study.id.desc()) if newest_first
             else (Study.created_at, Study.id))
    rows = session.scalars(select(Study).where(*where).order_by(*order)
                           .offset(offset).limit(limit))
    return list(rows), total


def count_studies(session: Session, owner_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Study)
                          .where(Study.owner_id == owner_id)) or 0


def delete_study(session: Session, study_id: str) -> None:
    session.execute(delete(Study).where(Study.id == study_id))


def lock_study(session: Session, owner_id: int, study_id: str) -> StudyLock | None:
    """Take the study's row lock for the rest of the transaction and bump its revision.

    Every change to a study's trials goes through here, so writes to one study are serialised
    (trial numbers stay gapless) and caches can catch up on ``revision``. The same statement
    returns the study's row, so a write needs no second read of it. None if not found.
    """
    study = session.scalars(
        update(Study)
        .where(Study.id == study_id, Study.owner_id == owner_id)
        .values(revision=Study.revision + 1)
        .returning(Study)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    return None if study is None else StudyLock(study.revision, study.next_number, study)


def take_numbers(session: Session, study_id: str, lock: StudyLock, count: int) -> range:
    """Reserve ``count`` consecutive trial numbers (the caller holds the study lock)."""
    session.execute(
        update(Study).where(Study.id == study_id).values(next_number=lock.next_number + count)
        .execution_options(synchronize_session=False)
    )
    return range(lock.next_number, lock.next_number + count)


def current_revision(session: Session, study_id: str) -> int | None:
    return session.scalar(select(Study.revision).where(Study.id == study_id))


def state_counts(session: Session, study_ids: list[str]) -> dict[str, dict[str, int]]:
    """Trials by state for each study, in one query."""
    counts: dict[str, dict[str, int]] = {sid: {} for sid in study_ids}
    if not study_ids:
        return counts
    rows = session.execute(
        select(Trial.study_id, Trial.state, func.count())
        .where(Trial.study_id.in_(study_ids))
        .group_by(Trial.study_id, Trial.state)
    )
    for study_id, state, n in rows:
        counts[study_id][state] = n
    return counts


def revisions(session: Session, study_ids: list[str]) -> dict[str, int]:
    """The current revision of each existing study among ``study_ids``."""
    if not study_ids:
        return {}
    rows = session.execute(select(Study.id, Study.revision).where(Study.id.in_(study_ids)))
    return {study_id: revision for study_id, revision in rows}


def transfer_candidates(session: Session, owner_id: int, min_complete: int,
                        limit: int) -> list[Study]:
    """The owner's studies with at least ``min_complete`` complete trials, newest first."""
    complete = (select(Trial.study_id).where(Trial.state == "complete")
                .group_by(Trial.study_id).having(func.count() >= min_complete))
    return list(session.scalars(
        select(Study).where(Study.owner_id == owner_id, Study.id.in_(complete))
        .order_by(Study.created_at.desc()).limit(limit)))
