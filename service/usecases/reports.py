"""Intermediate reports of running trials, and the early-stopping answer to each.

A report takes its trial's row lock, not the study's: reports of one trial are serialised (one
value per step, ``last_step`` never goes back), reports of different trials and asks never wait
for each other, and nothing the history cache reads changes (no revision bump). Only a report that
reaches a new rung (``Fidelity.rung_crossed``: the trial's first at or past it) reads more: the
newest ``RUNG_SAMPLE`` values at that rung (one backwards index range) and the study's stored
stopping policy (one row by key). It never runs the proposal engine.

The policy (how much each rung keeps, from the study's finished curves: ``engine.stopping_policy``)
is recalibrated after tells of trials that reported (``recalibrate``), so the report path only
reads it; before any finished curve the rungs keep what their prior trust says.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from service.db import report_queries, stopping_policy_queries, study_queries, trial_queries
from service.db.history import fidelity_from, study_fidelity, study_rungs
from service.db.models import utcnow
from service.db.session import transaction
from service.engine import early_stopping
from service.engine.early_stopping import Fidelity, StopDecision
from service.engine.history import Direction, TrialState
from service.engine.stopping_policy import StoppingPolicy
from service.errors import Conflict, Invalid, NotFound
from service.usecases.context import UseCaseContext
from service.usecases.study_lifecycle import find_study

MAX_REPORTS_PER_TRIAL = 10_000  # steps one trial may report: bounds its curve and its rows

logger = logging.getLogger(__name__)


def report(ctx: UseCaseContext, owner_id: int, study_id: str, trial_id: int, step: int,
           value: float) -> StopDecision:
    """Record ``value`` at ``step`` for a running trial (durable before the answer) and say
    whether it should stop. Also a heartbeat. The same report again gets the same answer; another
    value at a step already reported is a conflict.

    Reports are the most frequent request of a study that stops early (one per epoch per
    trial), and on a busy host each statement waits for the database: one statement reads the
    trial (locked), its study and any report at the step; between rungs the only others are
    the two writes."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        target = report_queries.lock_for_report(session, owner_id, study_id, trial_id, step)
        if target is None:  # which is missing, in the order a request is checked
            study = find_study(session, owner_id, study_id)
            _check_step(study_fidelity(study), step)
            raise NotFound(f"trial {trial_id} does not exist in study {study_id!r}", "trial_id")
        fidelity = fidelity_from(target.fidelity)
        _check_step(fidelity, step)
        state = TrialState(target.state)
        known = target.known_id is not None
        if known and target.known_value != value:
            raise Conflict(f"trial {trial_id} already reported {target.known_value} at step "
                           f"{step}; refusing {value}")
        if state is TrialState.WAITING:
            raise Conflict(f"trial {trial_id} is enqueued and was not handed out by ask yet")
        if state is not TrialState.RUNNING:
            if known:  # an acknowledged report sent again: its answer again
                return StopDecision(target.known_reason is not None, target.known_reason)
            raise Conflict(f"trial {trial_id} is {target.state}, not running: stop working on it")
        timeout_s = target.heartbeat_timeout_s
        if known:
            trial_queries.touch(session, study_id, trial_id, now, timeout_s)
            return StopDecision(target.known_reason is not None, target.known_reason)
        largest = step if target.last_step is None else max(target.last_step, step)
        # Distinct steps >= 0 up to ``largest`` number at most largest + 1: below the limit
        # there is nothing to count (the common case: epochs).
        if largest + 1 > MAX_REPORTS_PER_TRIAL:
            reported = report_queries.count(session, trial_id)
            if reported >= MAX_REPORTS_PER_TRIAL:
                raise Invalid("step", f"trial {trial_id} already reported {reported} steps, the "
                                      f"limit is {MAX_REPORTS_PER_TRIAL}; tell its result")
        decision = early_stopping.GO_ON
        rung = fidelity.rung_crossed(step, target.last_step) if fidelity is not None else None
        if rung is not None:
            others = report_queries.values_at(session, study_id, rung, other_than=trial_id,
                                              limit=early_stopping.RUNG_SAMPLE)
            rule = current_policy(session, study_id, target.direction, fidelity)[1].rule(rung)
            decision = early_stopping.decide(value, others, target.direction, rung, rule=rule,
                                             number=target.number, step=step)
        report_queries.add(session, study_id, trial_id, step, value, decision.reason, rung)
        trial_queries.touch(session, study_id, trial_id, now, timeout_s, last_step=largest)
        return decision


def _check_step(fidelity: Fidelity | None, step: int) -> None:
    if fidelity is not None and not fidelity.min <= step <= fidelity.max:
        raise Invalid("step", f"must be within the study's fidelity {fidelity.name!r} "
                              f"[{fidelity.min}, {fidelity.max}], got {step}")


def current_policy(session: Session, study_id: str, direction: Direction,
                   fidelity: Fidelity) -> tuple[int, StoppingPolicy]:
    """The policy rung reports apply, and how many finished curves it was calibrated on: the
    stored one, else (no finished curve yet) the one the rungs' prior trust alone gives."""
    stored = stopping_policy_queries.get(session, study_id)
    if stored is None:
        return 0, early_stopping.policy_for((), direction, fidelity)
    return stored.finished, StoppingPolicy.from_dict(stored.policy)


def stopping_policy(session: Session, owner_id: int,
                    study_id: str) -> tuple[Fidelity | None, int, StoppingPolicy]:
    """The study's fidelity and current policy (``GET .../stopping``)."""
    study = find_study(session, owner_id, study_id)
    fidelity = study_fidelity(study)
    if fidelity is None:
        return None, 0, StoppingPolicy(())
    return (fidelity, *current_policy(session, study.id, study.direction, fidelity))


def recalibrate(ctx: UseCaseContext, study_id: str) -> None:
    """Calibrate the study's stopping policy on its finished curves and store it; called after a
    tell of a trial that reported, when enough trials finished since the stored one
    (``early_stopping.recalibration_due``, the rule the in-process ``Optimizer`` follows too):
    otherwise the tell costs two small reads here. Bounded: the history cache catches up
    incrementally and the calibration reads the last ``CALIBRATION_WINDOW`` curves. A failure
    here loses nothing (the tell is committed; the next tell recalibrates), so it is logged, not
    raised."""
    try:
        with transaction(ctx.sessions) as session:
            stored = stopping_policy_queries.get(session, study_id)
            if stored is not None and not early_stopping.recalibration_due(
                    trial_queries.finished_since(session, study_id, stored.revision),
                    stored.finished):
                return
            study = study_queries.by_id(session, study_id)
            fidelity = None if study is None else study_fidelity(study)
            if study is None or fidelity is None:
                return
            history = ctx.histories.load(session, study.id, study.direction,
                                         revision=study.revision, rungs=study_rungs(study))
            curves = early_stopping.finished_curves(history)
            policy = early_stopping.policy_for(curves, study.direction, fidelity)
            stopping_policy_queries.put(session, study.id, study.revision, len(curves),
                                        policy.to_dict())
    except Exception:  # the policy is a cache of the history: the next tell rebuilds it
        logger.warning("recalibrating the stopping policy of study %s failed", study_id,
                       exc_info=True)
