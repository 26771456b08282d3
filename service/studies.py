"""The application layer: study and trial use cases between the database and the engine.

Routes stay thin and call these functions; each is one transaction. Writes to a study take its row
lock first (``lock_study``), which serialises them per study across every server process: trial
numbers stay gapless, a trial is never handed out twice, and the history cache stays exact.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from service.admission import FairGate
from service.db import candidates as candidate_queries
from service.db import studies as study_queries
from service.db import trials as trial_queries
from service.db.models import Candidate, Study, Trial, utcnow
from service.db.session import transaction
from service.engine import transfer
from service.engine.decision import Decision
from service.engine.history import History, ProposalInfo, TrialState, seen_keys
from service.engine.propose import propose
from service.engine.selection import select
from service.engine.space import SearchSpace, SpaceError, config_key
from service.engine.transfer import mapping_problems
from service.errors import Conflict, Invalid, NotFound, QuotaExceeded, TooManyRequests
from service.history_cache import HistoryCache
from service.prior_store import PriorStore, compatible_sources
from service.pruner_store import PrunerStore
from service.schemas import CandidateMetrics, StudyCreate, TellRequest, TransferOut


@dataclass
class Context:
    """What the use cases need, built once per app (see ``service.app``)."""

    sessions: sessionmaker[Session]
    cache: HistoryCache
    spaces: SpaceCache
    pruners: PrunerStore
    priors: PriorStore
    default_heartbeat_timeout_s: float
    max_ask_count: int
    candidate_pool_factor: int = 4
    candidate_pool_max: int = 64
    candidate_ttl_s: float = 600.0
    # Quotas (see ``service.config``): unfinished trials per study, studies per owner.
    max_running_trials_per_study: int = 1000
    max_waiting_trials_per_study: int = 1000
    max_studies_per_owner: int = 1000
    # The engine's CPU, shared fairly across owners (``service.admission``). It is held around
    # engine calls alone, never across a database read or lock: a holder waiting for a lock that
    # a gate waiter holds would deadlock. Off unless the app switches it on.
    engine_gate: FairGate = field(default_factory=lambda: FairGate(capacity=None))
    on_told: Any = None  # callable(study_id) -> None: lets the retrainer know results arrived
    _drafting: dict[str, set[int]] = field(default_factory=dict)
    _drafting_lock: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def drafting(self, study_id: str) -> Iterator[int]:
        """A seed offset for an ask: the smallest one no other ask of the study here holds
        (0, the study's own seed, whenever asks don't overlap)."""
        with self._drafting_lock:
            held = self._drafting.setdefault(study_id, set())
            salt = next(i for i in range(len(held) + 1) if i not in held)
            held.add(salt)
        try:
            yield salt
        finally:
            with self._drafting_lock:
                held.discard(salt)
                if not held:
                    self._drafting.pop(study_id, None)


@dataclass
class AskResult:
    """Trials to run, or (static-metrics studies) candidates to compute metrics for."""

    trials: list[Trial]
    candidates: list[Candidate] = field(default_factory=list)
    expires_at: datetime | None = None


class SpaceCache:
    """Parsed spaces by study id: parsing is pure, studies' spaces never change."""

    def __init__(self) -> None:
        self._spaces: dict[str, SearchSpace] = {}

    def get(self, study: Study) -> SearchSpace:
        space = self._spaces.get(study.id)
        if space is None:
            space = self._spaces[study.id] = SearchSpace.from_dict(study.space)
        return space


# --- studies ---------------------------------------------------------------------------------

def create_study(ctx: Context, owner_id: int, body: StudyCreate) -> Study:
    raw_space = body.space.model_dump(exclude_unset=True, exclude_none=True)
    try:
        space = SearchSpace.from_dict(raw_space)
    except SpaceError as error:
        raise Invalid(error.field, error.reason) from None
    for i, name in enumerate(body.static_metrics):
        if not name or len(name) > 64:
            raise Invalid(f"static_metrics[{i}]", "must be 1 to 64 characters")
    if len(set(body.static_metrics)) != len(body.static_metrics):
        raise Invalid("static_metrics", "names must be unique")
    if body.transfer == "auto" and body.transfer_from:
        raise Invalid("transfer", 'give either `transfer: "auto"` or `transfer_from`, not both')
    with transaction(ctx.sessions) as session:
        owned = study_queries.count_studies(session, owner_id)
        if owned >= ctx.max_studies_per_owner:
            raise QuotaExceeded(f"studies: this owner has {owned} studies, the quota is "
                                f"{ctx.max_studies_per_owner}; delete finished ones first")
        if body.transfer == "auto":
            sources = compatible_sources(session, owner_id, space)
        else:
            sources = _checked_sources(session, owner_id, space, body.transfer_from)
        study = study_queries.create_study(
            session, owner_id, name=body.name, direction=body.direction,
            space=space.to_dict(),
            seed=body.seed if body.seed is not None else secrets.randbits(31),
            heartbeat_timeout_s=body.heartbeat_timeout_s or ctx.default_heartbeat_timeout_s,
            static_metrics=list(body.static_metrics), transfer_from=sources,
        )
    if sources and ctx.on_told is not None:
        ctx.on_told(study.id)  # the pruner is pretrained on the prior studies right away
    return study


def _checked_sources(session: Session, owner_id: int, space: SearchSpace,
                     ids: list[str]) -> list[str]:
    """Explicit prior studies: each must be the owner's and map onto the new space."""
    out: list[str] = []
    for i, source_id in enumerate(ids):
        source = study_queries.get_study(session, owner_id, source_id)
        if source is None:
            raise Invalid(f"transfer_from[{i}]", f"no study {source_id!r} of yours exists")
        problems = mapping_problems(space, SearchSpace.from_dict(source.space))
        if problems:
            raise Invalid(f"transfer_from[{i}]",
                          f"study {source_id!r} is not compatible: {'; '.join(problems)}")
        if source_id not in out:
            out.append(source_id)
    return out


def find_study(session: Session, owner_id: int, study_id: str) -> Study:
    study = study_queries.get_study(session, owner_id, study_id)
    if study is None:
        raise NotFound(f"study {study_id!r} does not exist", "study_id")
    return study


def delete_study(ctx: Context, owner_id: int, study_id: str) -> None:
    with transaction(ctx.sessions) as session:
        find_study(session, owner_id, study_id)
        study_queries.delete_study(session, study_id)
    ctx.cache.forget(study_id)
    ctx.priors.forget(study_id)


def transfer_status(ctx: Context, session: Session, study: Study) -> TransferOut:
    """Which studies ``study`` learns from and how far that is trusted by its results so far."""
    space = ctx.spaces.get(study)
    prior = ctx.priors.get(session, study, space)
    history = ctx.cache.load(session, study.id, study.direction)
    trust = transfer.prior_trust(prior, space, history)
    return TransferOut(sources=list(study.transfer_from),
                       prior_trials=0 if prior is None else prior.size, trust=trust,
                       active=prior is not None and (trust is None or trust >= transfer.TRUST_MIN))


# --- ask / tell ------------------------------------------------------------------------------

def ask(ctx: Context, owner_id: int, study_id: str, count: int, client_id: str | None,
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
    with ctx.drafting(study_id) as salt:  # held until the commit: overlapping asks differ
        return _ask(ctx, owner_id, study_id, count, client_id, candidates, salt)


def _ask(ctx: Context, owner_id: int, study_id: str, count: int, client_id: str | None,
         candidates: list[CandidateMetrics] | None, salt: int) -> AskResult:
    draft = _draft(ctx, owner_id, study_id, count, salt) if candidates is None else None
    now = utcnow()
    with transaction(ctx.sessions) as session:
        lock = study_queries.lock_study(session, owner_id, study_id)
        if lock is None:
            raise NotFound(f"study {study_id!r} does not exist", "study_id")
        study = find_study(session, owner_id, study_id)
        trial_queries.fail_stale(session, study, now, lock.revision)
        if client_id is not None and candidates is None:
            mine = trial_queries.running_for_client(session, study_id, client_id)
            if mine:
                for trial in mine:
                    trial.heartbeat_at = now
                    trial.deadline_at = now + timedelta(seconds=study.heartbeat_timeout_s)
                return AskResult(mine[:count])
        _check_running_quota(ctx, session, study_id, count)
        handed = [] if candidates is not None else trial_queries.waiting(session, study_id, count)
        for trial in handed:
            trial_queries.start(trial, now=now, revision=lock.revision, client_id=client_id,
                                timeout_s=study.heartbeat_timeout_s)
        missing = count - len(handed)
        result = AskResult(handed)
        if missing:
            # The history as of just before this write: rows stamped now are read next time.
            history = ctx.cache.load(session, study.id, study.direction,
                                     revision=lock.revision - 1)
            step = _Step(ctx, session, study, lock, history, client_id, now)
            if candidates is not None:
                result.trials += step.pick_from(candidates, missing)
            elif study.static_metrics:
                result.candidates, result.expires_at = step.offer_pool(missing)
            else:
                result.trials += step.propose(missing, draft)
        session.flush()
        return result


def _check_running_quota(ctx: Context, session: Session, study_id: str, count: int) -> None:
    """Running trials are pending work that every ask reasons about: a study may hold at most
    ``max_running_trials_per_study`` (429 until some are told or reaped)."""
    running = trial_queries.count_in_state(session, study_id, TrialState.RUNNING)
    if running + count > ctx.max_running_trials_per_study:
        raise TooManyRequests(
            f"count: the study has {running} running trials and the quota is "
            f"{ctx.max_running_trials_per_study}; tell results (or let silent trials time out) "
            f"before asking for {count} more", retry_after=30, field="count")


@dataclass(frozen=True)
class _Draft:
    """Proposals computed outside the lock on the history as of ``revision``."""

    revision: int
    decision: Decision


def _draft(ctx: Context, owner_id: int, study_id: str, count: int,
           salt: int = 0) -> _Draft | None:
    """The engine's decision on the newest committed history, made without the study's lock.
    Overlapping asks of one study in this process get distinct seed offsets ``salt`` (the
    first one the study's own seed), so they don't all propose the same configuration."""
    with ctx.sessions() as session:
        study = study_queries.get_study(session, owner_id, study_id)
        if study is None or study.static_metrics:
            return None
        revision = study.revision
        history = ctx.cache.load(session, study_id, study.direction, revision=revision)
        space = ctx.spaces.get(study)
        pruner = ctx.pruners.active(session, study_id)
        prior = ctx.priors.get(session, study, space)
        seed = study.seed
    with ctx.engine_gate.admit(owner_id):  # around the engine alone: its holder never waits
        decision = propose(space, history, count, seed=seed + salt, pruner=pruner, prior=prior)
    return _Draft(revision, decision)


@dataclass
class _Step:
    """One ask's fresh part, inside the study's lock."""

    ctx: Context
    session: Session
    study: Study
    lock: study_queries.StudyLock
    history: History
    client_id: str | None
    now: datetime

    def propose(self, count: int, draft: _Draft | None = None) -> list[Trial]:
        """The draft if it still holds (nothing changed since, or nothing it proposes was taken
        meanwhile), else the engine again, now inside the lock."""
        if draft is not None and len(draft.decision.proposals) >= count and (
                draft.revision == self.lock.revision - 1
                or not _taken(draft.decision, self.history)):
            decision = draft.decision
            kept = Decision(decision.proposals[:count], decision.pruned, decision.plan)
            return self._record(kept, [{}] * count)
        space = self.ctx.spaces.get(self.study)
        model = self.ctx.pruners.active(self.session, self.study.id)
        prior = self.ctx.priors.get(self.session, self.study, space)
        with self.ctx.engine_gate.admit(self.study.owner_id):
            decision = propose(space, self.history, count, seed=self.study.seed, pruner=model,
                               prior=prior)
        return self._record(decision, [{}] * count)

    def offer_pool(self, count: int) -> tuple[list[Candidate], datetime]:
        size = min(self.ctx.candidate_pool_max, count * self.ctx.candidate_pool_factor)
        issued = candidate_queries.pools_issued(self.session, self.study.id)
        # No pruner here: it needs the metrics the client has not computed yet.
        space = self.ctx.spaces.get(self.study)
        prior = self.ctx.priors.get(self.session, self.study, space)
        with self.ctx.engine_gate.admit(self.study.owner_id):
            decision = propose(space, self.history, size, seed=self.study.seed + issued,
                               pruner=None, prior=prior)
        expires_at = self.now + timedelta(seconds=self.ctx.candidate_ttl_s)
        rows = [{"token": secrets.token_urlsafe(24), "params": dict(p.params),
                 "proposal": p.info.to_dict()} for p in decision.proposals]
        pool = candidate_queries.add_pool(self.session, self.study.id, uuid.uuid4().hex, rows,
                                          self.client_id, expires_at)
        return pool, expires_at

    def pick_from(self, answers: list[CandidateMetrics], count: int) -> list[Trial]:
        declared = list(self.study.static_metrics or [])
        first: dict[str, int] = {}
        for i, answer in enumerate(answers):
            if first.setdefault(answer.token, i) != i:
                raise Invalid(f"candidates[{i}].token",
                              f"duplicate of candidates[{first[answer.token]}].token: send each "
                              f"candidate once")
            for name in answer.static_metrics:
                if name not in declared:
                    raise Invalid(f"candidates[{i}].static_metrics.{name}",
                                  f"is not declared by the study (declared: {declared})")
        found = {c.token: c for c in candidate_queries.by_tokens(
            self.session, self.study.id, [a.token for a in answers])}
        usable = [(found[a.token], a.static_metrics) for a in answers
                  if a.token in found and found[a.token].consumed_at is None
                  and found[a.token].expires_at > self.now]
        if not usable:
            raise Conflict("candidates: every token is unknown, expired or already used; "
                           "ask again without candidates for a fresh pool")
        candidate_queries.consume_pools(self.session, self.study.id,
                                        {c.pool for c, _ in usable}, self.now)
        model = self.ctx.pruners.active(self.session, self.study.id)
        with self.ctx.engine_gate.admit(self.study.owner_id):
            decision = select(
                self.ctx.spaces.get(self.study), self.history, [c.params for c, _ in usable],
                [m for _, m in usable], [ProposalInfo.from_dict(c.proposal) for c, _ in usable],
                count, pruner=model)
        metrics_of = {config_key(c.params): m for c, m in usable}
        return self._record(decision, [metrics_of[config_key(p.params)]
                                       for p in decision.proposals])

    def _record(self, decision: Decision, metrics: list[dict[str, float]]) -> list[Trial]:
        numbers = study_queries.take_numbers(self.session, self.study.id, self.lock,
                                             len(decision.proposals))
        trials = []
        for number, proposal, values in zip(numbers, decision.proposals, metrics, strict=False):
            trials.append(trial_queries.add_trial(
                self.session, self.study.id, number, state=TrialState.RUNNING.value,
                params=dict(proposal.params), proposal=proposal.info.to_dict(),
                client_id=self.client_id, revision=self.lock.revision, created_at=self.now,
                started_at=self.now, heartbeat_at=self.now,
                static_metrics={k: float(v) for k, v in values.items()},
                deadline_at=self.now + timedelta(seconds=self.study.heartbeat_timeout_s),
            ))
        for candidate in decision.pruned:
            trial_queries.add_pruned(self.session, self.study.id, dict(candidate.params),
                                     candidate.predicted, dict(candidate.metrics))
        return trials


def _taken(decision: Decision, history: History) -> bool:
    """Whether a drafted configuration was handed out or finished by someone else meanwhile."""
    seen = history.seen if history.seen is not None else seen_keys(history)
    return any(config_key(p.params) in seen for p in decision.proposals)


def tell(ctx: Context, owner_id: int, study_id: str, trial_id: int, body: TellRequest) -> Trial:
    """Finish a trial. Idempotent: the same result again returns the stored trial unchanged; a
    different result for a finished trial is a conflict. A result for a trial the server had
    failed for silence is still accepted: a told result is never thrown away."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        lock = study_queries.lock_study(session, owner_id, study_id)
        if lock is None:
            raise NotFound(f"study {study_id!r} does not exist", "study_id")
        trial = _find_trial(session, study_id, trial_id)
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
        _check_metrics(ctx, session, study_id, body)
        trial.state = body.state or TrialState.COMPLETE.value
        trial.value = None if body.value is None else float(body.value)
        trial.reason = body.reason
        if body.static_metrics:
            trial.static_metrics = {k: float(v) for k, v in body.static_metrics.items()}
        trial.completed_at = now
        trial.revision = lock.revision
        trial.timed_out = False  # the result is the client's now: a different one is a conflict
    if ctx.on_told is not None:
        ctx.on_told(study_id)
    return trial


def heartbeat(ctx: Context, owner_id: int, study_id: str, trial_id: int) -> Trial:
    with transaction(ctx.sessions) as session:
        study = find_study(session, owner_id, study_id)
        if not trial_queries.touch(session, study_id, trial_id, utcnow(),
                                   study.heartbeat_timeout_s):
            trial = _find_trial(session, study_id, trial_id)
            raise Conflict(f"trial {trial_id} is {trial.state}, not running: stop working on it")
        return _find_trial(session, study_id, trial_id)


def enqueue(ctx: Context, owner_id: int, study_id: str,
            params: dict[str, Any]) -> tuple[Trial, bool]:
    """Queue a user-given configuration; the next ask hands it out before any proposal.

    De-duplicated against trials still waiting: the same configuration enqueued again before an
    ask hands it out returns the first one (and ``False``: nothing new was created), so a client
    retrying an enqueue whose answer it lost does not queue the work twice. A configuration that
    already ran may be enqueued again on purpose (a second measurement)."""
    with transaction(ctx.sessions) as session:
        lock = study_queries.lock_study(session, owner_id, study_id)
        if lock is None:
            raise NotFound(f"study {study_id!r} does not exist", "study_id")
        study = find_study(session, owner_id, study_id)
        try:
            config = ctx.spaces.get(study).validate_config(params)
        except SpaceError as error:
            raise Invalid(error.field, error.reason) from None
        existing = trial_queries.waiting_with_params(session, study_id, config)
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
            proposal={"strategy": "user", "exploration": 0.0, "predicted": None},
            revision=lock.revision, static_metrics={},
        )
        session.flush()
        return trial, True


REAP_BATCH = 100  # studies locked per sweep step: a sweep never reads all tenants' rows at once
PURGE_BATCH = 1000  # expired candidates deleted per sweep step


def reap_stale(ctx: Context, max_batches: int = 100) -> int:
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


def _reap_studies(ctx: Context, study_ids: list[str], now: datetime) -> int:
    reaped = 0
    for study_id in study_ids:
        with transaction(ctx.sessions) as session:
            study = session.get(Study, study_id)
            if study is None:
                continue
            lock = study_queries.lock_study(session, study.owner_id, study_id)
            if lock is not None:
                reaped += trial_queries.fail_stale(session, study, now, lock.revision)
    return reaped


def _find_trial(session: Session, study_id: str, trial_id: int) -> Trial:
    trial = trial_queries.get_trial(session, study_id, trial_id)
    if trial is None:
        raise NotFound(f"trial {trial_id} does not exist in study {study_id!r}", "trial_id")
    return trial


def _check_metrics(ctx: Context, session: Session, study_id: str, body: TellRequest) -> None:
    if not body.static_metrics:
        return
    declared = set(session.get(Study, study_id).static_metrics or [])
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
