"""Queries on trials and pruned candidates. Writers hold the study lock (``lock_study``)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, func, or_, select, update
from sqlalchemy.orm import Session

from service.db.models import PrunedCandidate, Study, Trial
from service.engine.history import TrialState

FINISHED_STATES = ("complete", "stopped", "failed", "infeasible")

HEARTBEAT_TIMEOUT_REASON = "heartbeat timeout"


def get_trial(session: Session, study_id: str, trial_id: int) -> Trial | None:
    return session.scalar(select(Trial).where(Trial.id == trial_id, Trial.study_id == study_id))


def running_for_client(session: Session, study_id: str, client_id: str) -> list[Trial]:
    return list(session.scalars(
        select(Trial).where(Trial.study_id == study_id, Trial.client_id == client_id,
                            Trial.state == TrialState.RUNNING.value).order_by(Trial.number)
    ))


def waiting(session: Session, study_id: str, limit: int) -> list[Trial]:
    return list(session.scalars(
        select(Trial).where(Trial.study_id == study_id, Trial.state == TrialState.WAITING.value)
        .order_by(Trial.number).limit(limit)
    ))


def start(trial: Trial, *, now: datetime, revision: int, client_id: str | None,
          timeout_s: float) -> None:
    trial.state = TrialState.RUNNING.value
    trial.started_at = trial.heartbeat_at = now
    trial.deadline_at = now + timedelta(seconds=timeout_s)
    trial.client_id = client_id
    trial.revision = revision


def add_trial(session: Session, study_id: str, number: int, **fields: Any) -> Trial:
    trial = Trial(study_id=study_id, number=number, **fields)
    session.add(trial)
    return trial


def add_pruned(session: Session, study_id: str, params: dict[str, Any], predicted: float,
               metrics: dict[str, Any]) -> None:
    session.add(PrunedCandidate(study_id=study_id, params=params, predicted=predicted,
                                static_metrics=metrics))


def changed_since(session: Session, study_id: str, revision: int) -> list[Trial]:
    return list(session.scalars(
        select(Trial).where(Trial.study_id == study_id, Trial.revision > revision)
    ))


def finished_since(session: Session, study_id: str, revision: int) -> int:
    """How many of the study's trials finished (or changed while finished) after ``revision``:
    an index range over the writes since then, not over the study."""
    return session.scalar(
        select(func.count()).select_from(Trial)
        .where(Trial.study_id == study_id, Trial.revision > revision,
               Trial.state.in_(FINISHED_STATES))) or 0


def pruned_after(session: Session, study_id: str, last_id: int) -> list[PrunedCandidate]:
    return list(session.scalars(
        select(PrunedCandidate)
        .where(PrunedCandidate.study_id == study_id, PrunedCandidate.id > last_id)
        .order_by(PrunedCandidate.id)
    ))


def touch(session: Session, study_id: str, trial_id: int, now: datetime,
          timeout_s: float, last_step: int | None = None) -> bool:
    """Record a heartbeat (and a report's ``last_step``); False when the trial is not running
    (finished, reaped or unknown)."""
    values: dict[str, Any] = {"heartbeat_at": now,
                              "deadline_at": now + timedelta(seconds=timeout_s)}
    if last_step is not None:
        values["last_step"] = last_step
    result = session.execute(
        update(Trial)
        .where(Trial.id == trial_id, Trial.study_id == study_id,
               Trial.state == TrialState.RUNNING.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def stale_study_ids(session: Session, now: datetime, limit: int) -> list[str]:
    """Up to ``limit`` studies with a running trial past its deadline (heartbeat + the study's
    timeout). The (state, deadline_at) index makes this read only stale rows, however many
    running trials all tenants have."""
    return sorted(set(session.scalars(
        select(Trial.study_id)
        .where(Trial.state == TrialState.RUNNING.value, Trial.deadline_at < now)
        .order_by(Trial.deadline_at).limit(limit))))


def recent_finished(session: Session, study_id: str, limit: int) -> list[Trial]:
    """The study's ``limit`` newest complete or infeasible trials, in number order (what the
    pruner's recent trust is measured on: a bounded read)."""
    rows = session.scalars(
        select(Trial).where(Trial.study_id == study_id,
                            Trial.state.in_([TrialState.COMPLETE.value,
                                             TrialState.INFEASIBLE.value]))
        .order_by(Trial.number.desc()).limit(limit))
    return sorted(rows, key=lambda t: t.number)


def count_in_state(session: Session, study_id: str, state: TrialState) -> int:
    """How many of the study's trials are in ``state`` (an index range; used for the quotas on
    unfinished trials, so bounded by them)."""
    return session.scalar(select(func.count()).select_from(Trial)
                          .where(Trial.study_id == study_id, Trial.state == state.value)) or 0


def waiting_with_params(session: Session, study_id: str,
                        params: dict[str, Any]) -> Trial | None:
    """An enqueued trial not handed out yet with exactly these parameters (enqueue de-dupes)."""
    # Canonical JSON, not dict equality: True == 1 == 1.0 in Python, not in a search space.
    wanted = json.dumps(params, sort_keys=True)
    for trial in session.scalars(
            select(Trial).where(Trial.study_id == study_id,
                                Trial.state == TrialState.WAITING.value)):
        if json.dumps(trial.params, sort_keys=True) == wanted:
            return trial
    return None


SCAN_BATCH = 1000  # rows per read of a scan over a study's trials: memory stays bounded


def with_given_params(session: Session, study_id: str, params: dict[str, Any]) -> Trial | None:
    """The first trial, in any state, whose given values are exactly ``params`` (enqueue's
    ``skip_if_exists``): a trial enqueued with some values fixed is compared on those
    (``proposal["fixed"]``), any other on its whole configuration, as Optuna compares. Reads
    only the two JSON columns, a batch at a time: linear in the study's trials, bounded in
    memory."""
    wanted = json.dumps(params, sort_keys=True)
    last = -1
    while True:
        rows = session.execute(
            select(Trial.number, Trial.params, Trial.proposal)
            .where(Trial.study_id == study_id, Trial.number > last)
            .order_by(Trial.number).limit(SCAN_BATCH)).all()
        if not rows:
            return None
        for number, stored, proposal in rows:
            fixed = (proposal or {}).get("fixed")
            given = {k: stored[k] for k in fixed if k in stored} if fixed else stored
            if json.dumps(given, sort_keys=True) == wanted:
                return session.scalar(select(Trial).where(Trial.study_id == study_id,
                                                          Trial.number == number))
        last = rows[-1].number


def fail_stale(session: Session, study: Study, now: datetime, revision: int) -> int:
    """Mark the study's silent running trials failed (caller holds the study lock)."""
    cutoff = now - timedelta(seconds=study.heartbeat_timeout_s)
    result = session.execute(
        update(Trial)
        .where(Trial.study_id == study.id, Trial.state == TrialState.RUNNING.value,
               or_(Trial.heartbeat_at < cutoff, Trial.deadline_at < now))
        .values(state=TrialState.FAILED.value, reason=HEARTBEAT_TIMEOUT_REASON,
                completed_at=now, revision=revision, timed_out=True)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def page(session: Session, study_id: str, state: str | None, offset: int,
         limit: int) -> tuple[list[Trial], int]:
    where = [Trial.study_id == study_id]
    if state is not None:
        where.append(Trial.state == state)
    total = session.scalar(select(func.count()).select_from(Trial).where(*where)) or 0
    rows = session.scalars(select(Trial).where(*where).order_by(Trial.number)
                           .offset(offset).limit(limit))
    return list(rows), total


def iter_all(session: Session, study_id: str, batch: int = 1000):
    """All trials in number order, fetched in batches (for the CSV export)."""
    last = -1
    while True:
        rows = list(session.scalars(
            select(Trial).where(Trial.study_id == study_id, Trial.number > last)
            .order_by(Trial.number).limit(batch)
        ))
        if not rows:
            return
        yield from rows
        last = rows[-1].number


def best(session: Session, study_id: str, direction: str) -> Trial | None:
    order = Trial.value.asc() if direction == "minimize" else Trial.value.desc()
    return session.scalar(
        select(Trial).where(Trial.study_id == study_id, Trial.state == TrialState.COMPLETE.value)
        .order_by(order, Trial.number).limit(1)
    )


def complete_results(session: Session,
                     study_id: str) -> list[tuple[dict[str, Any], float, dict[str, Any]]]:
    """(params, value, static metrics) of every complete trial, in number order: what a prior
    study teaches."""
    rows = session.execute(
        select(Trial.params, Trial.value, Trial.static_metrics)
        .where(Trial.study_id == study_id, Trial.state == TrialState.COMPLETE.value,
               Trial.value.is_not(None))
        .order_by(Trial.number))
    return [(params, float(value), metrics or {}) for params, value, metrics in rows]


# The dashboard's reads (``usecases.insights``): each bounded by its arguments, in number order.


def count_finished(session: Session, study_id: str) -> int:
    return session.scalar(select(func.count()).select_from(Trial).where(
        Trial.study_id == study_id, Trial.state.in_(FINISHED_STATES))) or 0


def finished_digest_batches(session: Session, study_id: str, numbers: int, batch: int = 5000):
    """Finished trials in number order as column batches (number, value, state, strategy,
    exploration, predicted): the proposal's fields are read in SQL, so no row object is built,
    and through the session's connection (Core), not the ORM's result machinery.

    Each batch is a range of ``batch`` trial numbers, not "the next ``batch`` rows": whatever
    plan PostgreSQL picks (without fresh statistics it picked the (study, state) index, then
    sorted and parsed the JSON of every finished trial past the cursor, each batch: 9 s at
    100,000 trials instead of 1), a batch reads at most ``batch`` rows. ``numbers``: how many
    trial numbers the study has issued (``Study.next_number``)."""
    proposal = Trial.proposal
    columns = (Trial.number, Trial.value, Trial.state, proposal["strategy"].as_string(),
               proposal["exploration"].as_float(), proposal["predicted"].as_float())
    connection = session.connection()
    for low in range(0, numbers, batch):
        rows = connection.execute(
            select(*columns).where(Trial.study_id == study_id,
                                   Trial.state.in_(FINISHED_STATES),
                                   Trial.number >= low, Trial.number < low + batch)
            .order_by(Trial.number)).all()
        if rows:
            yield [list(column) for column in zip(*rows, strict=True)]


def sample_complete(session: Session, study_id: str, direction: str, every: int,
                    best: int) -> list[tuple[int, int, dict[str, Any], float]]:
    """(id, number, params, value) of complete trials whose number is a multiple of ``every``,
    plus the ``best`` best ones: a sample whose size the caller bounds."""
    where = (Trial.study_id == study_id, Trial.state == TrialState.COMPLETE.value,
             Trial.value.is_not(None))
    columns = (Trial.id, Trial.number, Trial.params, Trial.value)
    order = Trial.value.asc() if direction == "minimize" else Trial.value.desc()
    top = session.execute(select(*columns).where(*where).order_by(order, Trial.number)
                          .limit(best)).all()
    spread = session.execute(select(*columns).where(*where, Trial.number % every == 0)
                             .order_by(Trial.number)).all() if every else []
    seen: set[int] = set()
    out = []
    for row in [*spread, *top]:
        if row[0] not in seen:
            seen.add(row[0])
            out.append((row[0], row[1], row[2], float(row[3])))
    return out


def filtered_page(session: Session, study_id: str, *, state: str | None,
                  ranges: list[tuple[str, float, float]], choices: list[tuple[str, Any]],
                  sort: str, descending: bool, offset: int,
                  limit: int) -> tuple[list[Trial], int]:
    """A page of trials filtered by state, numeric parameter ranges and categorical choices,
    sorted by number or value (trials without a value last), and how many match."""
    where = [Trial.study_id == study_id]
    if state is not None:
        where.append(Trial.state == state)
    for name, low, high in ranges:
        where.append(Trial.params[name].as_float().between(low, high))
    for name, choice in choices:
        where.append(_is_choice(session, name, choice))
    total = session.scalar(select(func.count()).select_from(Trial).where(*where)) or 0
    key = Trial.value if sort == "value" else Trial.number
    order = key.desc() if descending else key.asc()
    query = select(Trial).where(*where)
    if sort == "value":
        query = query.order_by(Trial.value.is_(None), order, Trial.number)
    else:
        query = query.order_by(order)
    return list(session.scalars(query.offset(offset).limit(limit))), total


def _is_choice(session: Session, name: str, choice: Any) -> ColumnElement[bool]:
    """The categorical param ``name`` equals ``choice``, its JSON type included. A choice list may
    mix strings, numbers and booleans: PostgreSQL compares the stored JSON text (casting every
    row's value to the choice's type would raise on the others: a 500), SQLite's JSON_EXTRACT
    compares typed values and never raises."""
    field = Trial.params[name]
    if session.get_bind().dialect.name == "postgresql":
        return cast(field, Text) == json.dumps(choice)  # stored with json.dumps, as written
    if isinstance(choice, bool):
        return field.as_boolean() == choice
    if isinstance(choice, int | float):
        return field.as_float() == float(choice)
    return field.as_string() == str(choice)


def reported(session: Session, study_id: str, direction: str, best: int,
             recent: int) -> list[Trial]:
    """Trials with a curve: the ``best`` best finished ones and the ``recent`` newest ones."""
    where = (Trial.study_id == study_id, Trial.last_step.is_not(None))
    order = Trial.value.asc() if direction == "minimize" else Trial.value.desc()
    top = list(session.scalars(select(Trial).where(*where, Trial.value.is_not(None))
                               .order_by(order, Trial.number).limit(best)))
    newest = list(session.scalars(select(Trial).where(*where).order_by(Trial.number.desc())
                                  .limit(recent)))
    by_id = {t.id: t for t in [*top, *newest]}
    return sorted(by_id.values(), key=lambda t: t.number)


def pruned_sample(session: Session, study_id: str,
                  limit: int) -> list[tuple[dict[str, Any], float]]:
    """(params, predicted) of the newest ``limit`` candidates the pruner discarded."""
    rows = session.execute(select(PrunedCandidate.params, PrunedCandidate.predicted)
                           .where(PrunedCandidate.study_id == study_id)
                           .order_by(PrunedCandidate.id.desc()).limit(limit))
    return [(params, float(predicted)) for params, predicted in rows]


def last_activity(session: Session, study_ids: list[str]) -> dict[str, datetime]:
    """The newest trial event (created, heartbeat, finished) of each study, in one query."""
    if not study_ids:
        return {}
    rows = session.execute(
        select(Trial.study_id, func.max(Trial.created_at), func.max(Trial.heartbeat_at),
               func.max(Trial.completed_at))
        .where(Trial.study_id.in_(study_ids)).group_by(Trial.study_id))
    out: dict[str, datetime] = {}
    for study_id, *times in rows:
        present = [t for t in times if t is not None]
        if present:
            out[study_id] = max(present)
    return out
