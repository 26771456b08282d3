"""Queries on intermediate reports (``trial_reports``): a trial's curve, the values at a rung.

A report's writer holds its trial's row lock (``lock_for_report``), not the study's: reports of
one trial are serialised, reports of different trials never wait for each other or for asks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import and_, func, insert, select
from sqlalchemy.orm import Session

from service.db.models import Study, Trial, TrialReport, utcnow
from service.engine.history import Direction


class ReportTarget(NamedTuple):
    """What a report needs, read in one statement with the trial's row lock: the trial's state,
    the study's settings for it, and any value already reported at the step."""

    number: int
    state: str
    last_step: int | None
    direction: Direction
    heartbeat_timeout_s: float
    fidelity: dict | None
    known_id: int | None  # the report already stored at the step, if any
    known_value: float | None
    known_reason: str | None


def lock_for_report(session: Session, owner_id: int, study_id: str, trial_id: int,
                    step: int) -> ReportTarget | None:
    """The trial of ``owner_id``'s study, locked for the rest of the transaction (``FOR UPDATE
    OF trials`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds the write lock),
    joined with its study and with its report at ``step``: a report's reads in one round trip.
    None when no such trial (or study, or owner) exists."""
    row = session.execute(
        select(Trial.number, Trial.state, Trial.last_step, Study.direction,
               Study.heartbeat_timeout_s, Study.fidelity, TrialReport.id, TrialReport.value,
               TrialReport.reason)
        .select_from(Trial)
        .join(Study, Study.id == Trial.study_id)
        .outerjoin(TrialReport, and_(TrialReport.trial_id == Trial.id, TrialReport.step == step))
        .where(Trial.id == trial_id, Trial.study_id == study_id, Study.owner_id == owner_id)
        .with_for_update(of=Trial)).first()
    return None if row is None else ReportTarget(*row)


def lock_trial(session: Session, study_id: str, trial_id: int) -> Trial | None:
    """The trial with its row lock for the rest of the transaction (``FOR UPDATE`` on
    PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds the database's write lock)."""
    return session.scalar(select(Trial).where(Trial.id == trial_id, Trial.study_id == study_id)
                          .with_for_update())


def at_step(session: Session, trial_id: int, step: int) -> TrialReport | None:
    return session.scalar(select(TrialReport).where(TrialReport.trial_id == trial_id,
                                                    TrialReport.step == step))


def count(session: Session, trial_id: int) -> int:
    """Reports of one trial (a range of the (trial_id, step) unique index, bounded by the
    per-trial limit)."""
    return session.scalar(select(func.count()).select_from(TrialReport)
                          .where(TrialReport.trial_id == trial_id)) or 0


def add(session: Session, study_id: str, trial_id: int, step: int, value: float,
        reason: str | None, rung: int | None = None) -> None:
    """One report row (a plain INSERT: no ORM object to track); ``rung``: the rung it was the
    trial's value at, if any."""
    session.execute(insert(TrialReport).values(study_id=study_id, trial_id=trial_id, step=step,
                                               value=value, reason=reason, rung=rung,
                                               created_at=utcnow()))


def add_many(session: Session, rows: list[dict]) -> None:
    """Whole curves at once (trials recorded finished): one bulk INSERT, no ORM objects."""
    if rows:
        session.execute(insert(TrialReport), [{"created_at": utcnow(), **row} for row in rows])


def values_at(session: Session, study_id: str, rung: int, other_than: int,
              limit: int) -> list[float]:
    """The newest ``limit`` values the study's other trials had at ``rung`` (one backwards range
    of the partial (study_id, rung, id) index): the sample a rung decision ranks against,
    bounded however many trials the study has. No ``rung IS NOT NULL`` here: ``rung = k``
    already selects the partial index, and PostgreSQL multiplies the two selectivities, expects
    a few rows and sorts all 10,000 of them (11.7 ms at 10,000 trials, against 1.8 ms)."""
    return list(session.scalars(
        select(TrialReport.value).where(
            TrialReport.study_id == study_id, TrialReport.rung == rung,
            TrialReport.trial_id != other_than)
        .order_by(TrialReport.id.desc()).limit(limit)))


def rung_points(session: Session, trial_ids: Iterable[int]) -> dict[int, list[tuple[int, float]]]:
    """Each trial's values at its rungs, ``(rung, value)`` in rung order, in one query: at most
    one row per rung a trial, through the partial (trial_id, rung) index."""
    ids = list(trial_ids)
    out: dict[int, list[tuple[int, float]]] = {}
    if not ids:
        return out
    rows = session.execute(select(TrialReport.trial_id, TrialReport.rung, TrialReport.value)
                           .where(TrialReport.trial_id.in_(ids), TrialReport.rung.isnot(None))
                           .order_by(TrialReport.trial_id, TrialReport.rung))
    for trial_id, rung, value in rows:
        out.setdefault(trial_id, []).append((rung, value))
    return out


def latest_reason(session: Session, trial_id: int) -> str | None:
    """The most recent stop decision the trial was answered with, if any."""
    return session.scalar(select(TrialReport.reason).where(
        TrialReport.trial_id == trial_id, TrialReport.reason.is_not(None))
        .order_by(TrialReport.step.desc()).limit(1))


def page(session: Session, trial_id: int, offset: int,
         limit: int) -> tuple[list[tuple[int, float]], int]:
    """One page of a trial's curve in step order, and how many points it has."""
    rows = session.execute(select(TrialReport.step, TrialReport.value)
                           .where(TrialReport.trial_id == trial_id)
                           .order_by(TrialReport.step).offset(offset).limit(limit))
    return [(step, value) for step, value in rows], count(session, trial_id)


def tails(session: Session, trial_ids: Iterable[int],
          points: int) -> dict[int, list[tuple[int, float]]]:
    """The last ``points`` points of each trial's curve, in step order, in one query (a page of
    trials shows a bounded curve each)."""
    ids = list(trial_ids)
    out: dict[int, list[tuple[int, float]]] = {i: [] for i in ids}
    if not ids:
        return out
    ranked = (select(TrialReport.trial_id, TrialReport.step, TrialReport.value,
                     func.row_number().over(partition_by=TrialReport.trial_id,
                                            order_by=TrialReport.step.desc()).label("back"))
              .where(TrialReport.trial_id.in_(ids)).subquery())
    rows = session.execute(select(ranked.c.trial_id, ranked.c.step, ranked.c.value)
                           .where(ranked.c.back <= points)
                           .order_by(ranked.c.trial_id, ranked.c.step))
    for trial_id, step, value in rows:
        out[trial_id].append((step, value))
    return out
