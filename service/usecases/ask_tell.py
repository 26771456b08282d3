"""Trial use cases: ask, tell, heartbeat, enqueue, and the sweep that fails silent trials.
Intermediate reports are ``service.usecases.reports``.

Every write takes the study's row lock first (``study_queries.lock_study``). The engine's part of
an ask lives in ``service.usecases.proposals``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from service.caches.pruners import ScheduledVersionPending
from service.db import candidate_queries, report_queries, study_queries, trial_queries
from service.db.history import study_rungs
from service.db.models import Candidate, Study, Trial, utcnow
from service.db.session import transaction
from service.engine.history import TrialState
from service.engine.space import SearchSpace, SpaceError
from service.errors import Conflict, Invalid, NotFound, TooManyRequests
from service.schemas import CandidateMetrics, TellRequest
from service.usecases import deterministic, proposals, reports
from service.usecases.coalescing import Ticket
from service.usecases.context import UseCaseContext
from service.usecases.study_lifecycle import find_study


@dataclass
class AskResult:
    """Trials to run, or (static-metrics studies) candidates to compute metrics for."""

    trials: list[Trial]
    candidates: list[Candidate] = field(default_factory=list)
    expires_at: datetime | None = None
    coalesced: bool = False  # its fresh trials came from another ask's engine batch


def ask(ctx: UseCaseContext, owner_id: int, study_id: str, count: int, client_id: str | None,
        candidates: list[CandidateMetrics] | None = None) -> AskResult:
    """Hand out ``count`` trials: the client's own running ones first (a re-ask after a crash gets
    its work back), then user-enqueued ones, then fresh proposals from the engine.

    A study that declares static metrics answers the fresh part in two steps: first a pool of
    candidates (no trial yet), then, when the client sends them back with their metrics, the
    trials the pruner picks from them.
    """
    if count > ctx.max_ask_count:
        raise Invalid("count", f"`count <= {ctx.max_ask_count}` must hold, got {count}")
    # The engine's work happens before the study's lock, on a snapshot; the lock only checks the
    # draft against what changed meanwhile and records it. Holding the lock through the engine
    # serialised every ask and tell of a study behind one engine call at a time.
    # The fair gate is held for the whole ask, its short transaction included, and taken once:
    # serialising only the engine calls left the asks' other Python work competing for the GIL
    # (another owner's ask p50 under a flood: 4.8x alone, against 2.3x gating the whole ask,
    # benchmarks/isolation.py); and a holder never waits for a lock that a gate waiter holds
    # (only tells and other processes hold study locks, and neither waits for this gate).
    # A deterministic study's ask whose scheduled pruner version is not stored yet waits for it
    # outside the gate and the lock (``usecases.deterministic``), then asks again.
    # Asks of the study queued behind the one running the engine get their picks from its
    # batch (``coalescing``): the ticket is taken on arrival, before the gate.
    deadline = time.monotonic() + ctx.deterministic_wait_s
    with ctx.coalescer.arrive(study_id, count) as ticket:
        while True:
            with ctx.engine_gate.admit(owner_id), ctx.seed_offsets.hold(study_id) as salt:
                # the seed offset is held until the commit: overlapping asks differ
                try:
                    return _ask(ctx, owner_id, study_id, count, client_id, candidates, salt,
                                ticket)
                except ScheduledVersionPending as pending:
                    due = pending.n_results
            deterministic.wait_for_scheduled_version(ctx, study_id, due, deadline)


def _ask(ctx: UseCaseContext, owner_id: int, study_id: str, count: int, client_id: str | None,
         candidates: list[CandidateMetrics] | None, salt: int, ticket: Ticket) -> AskResult:
    try:
        draft = proposals.draft(ctx, owner_id, study_id, count, salt, ticket) \
            if candidates is None else None
    except ScheduledVersionPending:
        draft = None  # the study's lock decides: a client's own running trials need no pruner
    now = utcnow()
    with transaction(ctx.sessions) as session:
        lock = _lock(session, owner_id, study_id)
        study = lock.study
        # The history as of just before this write (rows stamped now are read next time): exact,
        # since every change of a trial's state takes this lock. So it says which trials are
        # running or enqueued without asking the database: with none (one sequential worker, the
        # common case) there is nothing stale to fail, no running trial of this client and no
        # enqueued trial to hand out, and the quota counts the history's running trials less
        # those failed for silence just now.
        history = ctx.histories.load(session, study.id, study.direction,
                                     revision=lock.revision - 1, rungs=study_rungs(study))
        pending = history.running  # running or enqueued (waiting)
        running = sum(t.state is TrialState.RUNNING for t in pending)
        if running:
            running -= trial_queries.fail_stale(session, study, now, lock.revision)
            if client_id is not None and candidates is None:
                mine = trial_queries.running_for_client(session, study_id, client_id)
                if mine:
                    for trial in mine:
                        trial.heartbeat_at = now
                        trial.deadline_at = now + timedelta(seconds=study.heartbeat_timeout_s)
                    return AskResult(mine[:count])
        _check_running_quota(ctx, running, count)
        enqueued = candidates is None and any(t.state is TrialState.WAITING for t in pending)
        handed = trial_queries.waiting(session, study_id, count) if enqueued else []
        for trial in handed:
            fill_enqueued(ctx.spaces.get(study), study, trial)
            trial_queries.start(trial, now=now, revision=lock.revision, client_id=client_id,
                                timeout_s=study.heartbeat_timeout_s)
        missing = count - len(handed)
        result = AskResult(handed)
        if missing:
            fresh = proposals.FreshTrials(ctx, session, study, lock, history, client_id, now)
            if candidates is not None:
                result.trials += fresh.pick_from(candidates, missing)
            elif study.static_metrics:
                result.candidates, result.expires_at = fresh.offer_pool(missing)
            else:
                result.trials += fresh.propose(missing, draft)
                result.coalesced = draft is not None and draft.batched and fresh.used_draft
        session.flush()
        return result


def _check_running_quota(ctx: UseCaseContext, running: int, count: int) -> None:
    """Running trials are pending work that every ask reasons about: a study may hold at most
    ``max_running_trials_per_study`` (429 until some are told or reaped)."""
    if running + count > ctx.max_running_trials_per_study:
        raise TooManyRequests(
            f"count: the study has {running} running trials and the quota is "
            f"{ctx.max_running_trials_per_study}; tell results (or let silent trials time out) "
            f"before asking for {count} more", retry_after=30, field="count")


def tell(ctx: UseCaseContext, owner_id: int, study_id: str, trial_id: int,
         body: TellRequest) -> Trial:
    """Finish a trial. Idempotent: the same result again returns the stored trial unchanged; a
    different result for a finished trial is a conflict. A result for a trial the server had
    failed for silence is still accepted: a told result is never thrown away."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        lock = _lock(session, owner_id, study_id)
        trial = find_trial(session, study_id, trial_id)
        if trial.state == TrialState.WAITING.value:
            raise Conflict(f"trial {trial_id} is enqueued and was not handed out by ask yet")
        if TrialState(trial.state).finished:
            if _same_result(trial, body):
                return trial
            if not trial.timed_out:  # only the server's own verdict of silence gives way
                raise Conflict(
                    f"trial {trial_id} is already {trial.state}"
                    + (f" with value {trial.value}" if trial.value is not None else "")
                    + f"; refusing a different result ({_describe(body)})"
                )
        _check_metrics(session, study_id, body)
        value, reason = None if body.value is None else float(body.value), body.reason
        if body.state == TrialState.STOPPED.value:
            value, reason = _curve_result(session, trial, reason)
        trial.state = body.state or TrialState.COMPLETE.value
        trial.value = value
        trial.reason = reason
        if body.static_metrics:
            trial.static_metrics = {k: float(v) for k, v in body.static_metrics.items()}
        trial.completed_at = now
        trial.revision = lock.revision
        trial.timed_out = False  # the result is the client's now: a different one is a conflict
        reported = trial.last_step is not None
    if reported:  # its curve is new evidence of how far each rung predicts the final value
        reports.recalibrate(ctx, study_id)
    ctx.told(study_id, lock.revision)
    return trial


def _curve_result(session: Session, trial: Trial, reason: str | None) -> tuple[float, str | None]:
    """A stopped trial's result is its curve: the value at its last step, and why it stopped
    (the client's reason, else the stop decision its reports were answered with). The trial's
    row lock first: a report of it in flight commits before its last step is read."""
    session.refresh(trial, with_for_update=True)
    last = None if trial.last_step is None else report_queries.at_step(
        session, trial.id, trial.last_step)
    if last is None:
        raise Conflict(f"trial {trial.id} reported no intermediate value: nothing to keep as a "
                       "stopped result; tell a value, or failed")
    return last.value, reason or report_queries.latest_reason(session, trial.id)


def heartbeat(ctx: UseCaseContext, owner_id: int, study_id: str, trial_id: int) -> Trial:
    with transaction(ctx.sessions) as session:
        study = find_study(session, owner_id, study_id)
        if not trial_queries.touch(session, study_id, trial_id, utcnow(),
                                   study.heartbeat_timeout_s):
            trial = find_trial(session, study_id, trial_id)
            raise Conflict(f"trial {trial_id} is {trial.state}, not running: stop working on it")
        return find_trial(session, study_id, trial_id)


def enqueue(ctx: UseCaseContext, owner_id: int, study_id: str, params: dict[str, Any],
            skip_if_exists: bool = False) -> tuple[Trial, bool]:
    """Queue a user-given configuration; the next ask hands it out before any proposal.

    ``params`` may leave params out (Optuna's ``enqueue_trial`` with some values fixed): the
    given ones must be valid and active under their given parents; the ask that hands the trial
    out fills in the rest (``fill_enqueued``).

    De-duplicated against trials still waiting: the same configuration enqueued again before an
    ask hands it out returns the first one (and ``False``: nothing new was created), so a client
    retrying an enqueue whose answer it lost does not queue the work twice. A configuration that
    already ran may be enqueued again on purpose (a second measurement), unless
    ``skip_if_exists``: then any trial of the study, in any state, with these values (its fixed
    ones, for a trial enqueued partially) is returned instead, as Optuna's ``skip_if_exists``."""
    with transaction(ctx.sessions) as session:
        lock = _lock(session, owner_id, study_id)
        study = lock.study
        space = ctx.spaces.get(study)
        try:
            config = space.validate_partial(params)
        except SpaceError as error:
            raise Invalid(error.field, error.reason) from None
        partial = not _is_full(space, config)
        existing = (trial_queries.with_given_params(session, study_id, config)
                    if skip_if_exists else None) or \
            trial_queries.waiting_with_params(session, study_id, config)
        if existing is not None:
            return existing, False
        waiting = trial_queries.count_in_state(session, study_id, TrialState.WAITING)
        if waiting >= ctx.max_waiting_trials_per_study:
            raise TooManyRequests(
                f"params: the study has {waiting} enqueued trials waiting and the quota is "
                f"{ctx.max_waiting_trials_per_study}; ask to drain them first", retry_after=30,
                field="params")
        (number,) = study_queries.take_numbers(session, study_id, lock, 1)
        trial = trial_queries.add_trial(
            session, study_id, number, state=TrialState.WAITING.value, params=config,
            proposal={"strategy": "user", "exploration": 0.0, "predicted": None,
                      **({"fixed": list(config)} if partial else {})},
            revision=lock.revision, static_metrics={},
        )
        session.flush()
        return trial, True


def _is_full(space: SearchSpace, config: dict[str, Any]) -> bool:
    """Whether a valid partial configuration has every param active under its values."""
    try:
        space.validate_config(config)
    except SpaceError:
        return False
    return True


def fill_enqueued(space: SearchSpace, study: Study, trial: Trial) -> None:
    """Give an enqueued trial that left params out the rest, as it is handed out: sampled the
    way the engine's initial design samples (``SearchSpace.complete``, uniform in each param's
    scale, only params active under the values so far), from the study's seed and the trial's
    number, so the same study and enqueue fill the same values on every run. The engine's own
    proposal conditioned on the fixed values would steer them better, but every strategy
    proposes whole configurations; sampling keeps that contract."""
    if not (trial.proposal or {}).get("fixed"):
        return
    rng = np.random.default_rng([study.seed, trial.number])
    trial.params = space.complete(trial.params, rng)


REAP_BATCH = 100  # studies locked per sweep step: a sweep never reads all tenants' rows at once
PURGE_BATCH = 1000  # expired candidates deleted per sweep step


def reap_stale(ctx: UseCaseContext, max_batches: int = 100) -> int:
    """Fail running trials silent past their study's heartbeat timeout, across all studies, and
    delete candidate pools that expired. Each step reads only stale rows (an index range), at
    most ``REAP_BATCH`` studies; the next sweep goes on where this one stopped."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        candidate_queries.purge_expired(session, now, PURGE_BATCH)
    reaped = 0
    for _ in range(max_batches):
        with ctx.sessions() as session:
            study_ids = trial_queries.stale_study_ids(session, now, REAP_BATCH)
        if not study_ids:
            break
        reaped += _reap_studies(ctx, study_ids, now)
    return reaped


def _reap_studies(ctx: UseCaseContext, study_ids: list[str], now: datetime) -> int:
    reaped = 0
    for study_id in study_ids:
        with transaction(ctx.sessions) as session:
            study = study_queries.by_id(session, study_id)
            if study is None:
                continue
            lock = study_queries.lock_study(session, study.owner_id, study_id)
            if lock is not None:
                reaped += trial_queries.fail_stale(session, study, now, lock.revision)
    return reaped


def _lock(session: Session, owner_id: int, study_id: str) -> study_queries.StudyLock:
    """The study's row lock for this write (``study_queries.lock_study``), or a 404."""
    lock = study_queries.lock_study(session, owner_id, study_id)
    if lock is None:
        raise NotFound(f"study {study_id!r} does not exist", "study_id")
    return lock


def find_trial(session: Session, study_id: str, trial_id: int) -> Trial:
    trial = trial_queries.get_trial(session, study_id, trial_id)
    if trial is None:
        raise NotFound(f"trial {trial_id} does not exist in study {study_id!r}", "trial_id")
    return trial


def _check_metrics(session: Session, study_id: str, body: TellRequest) -> None:
    if not body.static_metrics:
        return
    declared = set(study_queries.by_id(session, study_id).static_metrics or [])
    for name in body.static_metrics:
        if name not in declared:
            raise Invalid(f"static_metrics.{name}",
                          f"is not declared by the study (declared: {sorted(declared)})")


def _same_result(trial: Trial, body: TellRequest) -> bool:
    if trial.state != body.state:
        return False
    if body.state == TrialState.COMPLETE.value:
        return trial.value == float(body.value)
    return True


def _describe(body: TellRequest) -> str:
    return f"value={body.value}" if body.state == "complete" else f"state={body.state}"
