"""The fresh part of an ask: what the engine proposes, drafted outside the study's lock and
recorded inside it.

``draft`` runs the engine on a snapshot of the newest committed history without the lock;
``FreshTrials`` runs inside the ask's transaction, holding the lock: it keeps the draft if it still
holds, or asks the engine again, and records the result as trials (or, for a static-metrics study,
offers a candidate pool and later picks trials from the candidates the client measured). Both
pick the pruner with ``PrunerStore.for_ask`` on the history they propose on: for a deterministic
study the scheduled version, which may not be stored yet (``ScheduledVersionPending``).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from service.db import candidate_queries, study_queries, trial_queries
from service.db.history import study_rungs
from service.db.models import Candidate, Study, Trial
from service.engine.decision import Decision
from service.engine.history import History, ProposalInfo, TrialState, seen_keys
from service.engine.propose import propose
from service.engine.pruner import PrunerModel
from service.engine.selection import select
from service.engine.space import config_key
from service.engine.transfer import Prior
from service.errors import Conflict, Invalid
from service.schemas import CandidateMetrics
from service.usecases.coalescing import Ticket
from service.usecases.context import UseCaseContext


@dataclass(frozen=True)
class Draft:
    """Proposals computed outside the lock on the history as of ``revision``."""

    revision: int
    decision: Decision
    batched: bool = False  # drafted by another ask of the study for this one (``coalescing``)


def draft(ctx: UseCaseContext, owner_id: int, study_id: str, count: int,
          salt: int = 0, ticket: Ticket | None = None) -> Draft | None:
    """The engine's decision on the newest committed history, made without the study's lock.
    Overlapping asks of one study in this process get distinct seed offsets ``salt`` (the
    first one the study's own seed), so they don't all propose the same configuration.

    With a ``ticket`` (``coalescing``), picks a leader batched for this ask come first; failing
    those, this ask leads: it drafts for itself and for the asks of the study queued behind it.
    """
    if ticket is not None:
        batched = ctx.coalescer.take(ticket, count)
        if batched is not None:
            return Draft(*batched, batched=True)
    # before the study is read: the asks this counts arrived before every result it reads
    snapshot = ctx.coalescer.snapshot(ticket) if ticket is not None else None
    with ctx.sessions() as session:
        study = study_queries.get_study(session, owner_id, study_id)
        if study is None or study.static_metrics:
            return None
        revision = study.revision
        history = ctx.histories.load(session, study_id, study.direction, revision=revision,
                                     rungs=study_rungs(study))
        space = ctx.spaces.get(study)
        prior = ctx.priors.get(session, study, space)
        pruner = ctx.pruners.for_ask(session, study, history, prior is not None,
                                     ctx.retrain_policy)
        seed = study.seed
    extra = snapshot.demand if snapshot is not None else 0
    decision = propose(space, history, count + extra, seed=seed + salt, pruner=pruner,
                       prior=prior)
    if extra:  # a leader (ticket and snapshot set) with asks queued behind it
        ctx.coalescer.keep(ticket, snapshot, revision,
                           Decision(decision.proposals[count:], (), decision.plan))
        decision = Decision(decision.proposals[:count], decision.pruned, decision.plan)
    return Draft(revision, decision)


@dataclass
class FreshTrials:
    """One ask's fresh part, inside the study's lock."""

    ctx: UseCaseContext
    session: Session
    study: Study
    lock: study_queries.StudyLock
    history: History
    client_id: str | None
    now: datetime
    used_draft: bool = False  # whether ``propose`` recorded the draft it was given

    def propose(self, count: int, draft: Draft | None = None) -> list[Trial]:
        """The draft if it still holds (nothing changed since, or nothing it proposes was taken
        meanwhile), else the engine again, now inside the lock."""
        if draft is not None and len(draft.decision.proposals) >= count and (
                draft.revision == self.lock.revision - 1
                or not _taken(draft.decision, self.history)):
            self.used_draft = True
            decision = draft.decision
            kept = Decision(decision.proposals[:count], decision.pruned, decision.plan)
            return self._record(kept, [{}] * count)
        space = self.ctx.spaces.get(self.study)
        prior = self.ctx.priors.get(self.session, self.study, space)
        model = self._pruner(prior)
        decision = propose(space, self.history, count, seed=self.study.seed, pruner=model,
                           prior=prior)
        return self._record(decision, [{}] * count)

    def offer_pool(self, count: int) -> tuple[list[Candidate], datetime]:
        size = min(self.ctx.candidate_pool_max, count * self.ctx.candidate_pool_factor)
        issued = candidate_queries.pools_issued(self.session, self.study.id)
        # No pruner here: it needs the metrics the client has not computed yet.
        space = self.ctx.spaces.get(self.study)
        prior = self.ctx.priors.get(self.session, self.study, space)
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
        space = self.ctx.spaces.get(self.study)
        prior = self.ctx.priors.get(self.session, self.study, space)
        # The prior decides, as in propose, whether a pruner pretrained on it still has a say
        # and which of its forecasts count towards its trust.
        decision = select(
            space, self.history, [c.params for c, _ in usable], [m for _, m in usable],
            [ProposalInfo.from_dict(c.proposal) for c, _ in usable], count,
            pruner=self._pruner(prior), prior=prior)
        metrics_of = {config_key(c.params): m for c, m in usable}
        return self._record(decision, [metrics_of[config_key(p.params)]
                                       for p in decision.proposals])

    def _pruner(self, prior: Prior | None) -> PrunerModel | None:
        """The pruner for this history (``PrunerStore.for_ask``; a deterministic study's
        scheduled version, or ``ScheduledVersionPending``: the ask rolls back and waits)."""
        return self.ctx.pruners.for_ask(self.session, self.study, self.history,
                                        prior is not None, self.ctx.retrain_policy)

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
