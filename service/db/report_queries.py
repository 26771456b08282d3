"""Queries on intermediate reports (``trial_reports``): a trial's curve, the values at a rung.

A report's writer holds its trial's row lock (``lock_running_trial``), not the study's: reports of
one trial are serialised, reports of different trials never wait for each other or for asks.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from service.db.models import Trial, TrialReport, utcnow


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
        reason: str | None) -> TrialReport:
    report = TrialReport(study_id=study_id, trial_id=trial_id, step=step, value=value,
                         reason=reason)
    session.add(report)
    return report


def add_many(session: Session, rows: list[dict]) -> None:
    """Whole curves at once (trials recorded finished): one bulk INSERT, no ORM objects."""
    if rows:
        session.execute(insert(TrialReport), [{"created_at": utcnow(), **row} for row in rows])


def values_at(session: Session, study_id: str, step: int, other_than: int,
              limit: int) -> list[float]:
    """The newest ``limit`` values the study's other trials reported at ``step`` (one backwards
    range of the (study_id, step, id) index): the sample a rung decision ranks against, bounded
    however many trials the study has."""
    return list(session.scalars(
        select(TrialReport.value).where(
            TrialReport.study_id == study_id, TrialReport.step == step,
            TrialReport.trial_id != other_than)
        .order_by(TrialReport.id.desc()).limit(limit)))


def points_at(session: Session, trial_ids: Iterable[int],
              steps: Iterable[int]) -> dict[int, list[tuple[int, float]]]:
    """Each trial's values at ``steps`` (its rung points), in step order, in one query: at most
    ``len(steps)`` rows a trial through the (trial_id, step) unique index."""
    ids, wanted = list(trial_ids), list(steps)
    out: dict[int, list[tuple[int, float]]] = {}
    if not ids or not wanted:
        return out
    rows = session.execute(select(TrialReport.trial_id, TrialReport.step, TrialReport.value)
                           .where(TrialReport.trial_id.in_(ids), TrialReport.step.in_(wanted))
                           .order_by(TrialReport.trial_id, TrialReport.step))
    for trial_id, step, value in rows:
        out.setdefault(trial_id, []).append((step, value))
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
