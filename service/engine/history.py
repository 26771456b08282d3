"""Plain value objects for what happened in a study: the engine's whole view of the past.

The service converts its rows into these (Vizier's pass-by-value datastore), so strategies never see
an ORM object, a request body or a database session.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np

from service.engine.space import config_key

Direction = Literal["minimize", "maximize"]
Key = tuple[tuple[str, Any], ...]  # ``config_key`` of a configuration

# Labels of proposals no strategy made (``ProposalInfo.strategy``): none is credited to a strategy.
INITIAL = "initial"  # the initial design's quasi-random points
TRANSFER = "transfer"  # a prior study's incumbent (``transfer``)
REPEAT = "repeat"  # a repeated configuration: every configuration of the space was tried


class TrialState(enum.StrEnum):
    WAITING = "waiting"  # enqueued by the user, not yet handed out
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"  # the infrastructure failed: the configuration may be tried again
    INFEASIBLE = "infeasible"  # the configuration itself cannot work: avoid its region
    # Stopped early (a partial result: the last value it reported). Seen, never proposed again;
    # the models leave it out for now (``History.complete`` holds complete trials only).
    STOPPED = "stopped"

    @property
    def finished(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.FAILED, TrialState.INFEASIBLE,
                        TrialState.STOPPED)


@dataclass(frozen=True)
class ProposalInfo:
    """Why a configuration was proposed (DESIGN rule 11): recorded with the trial, credited later.
    """

    strategy: str
    exploration: float
    predicted: float | None = None  # the pruner's predicted goodness in [0, 1], when it had a say

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "exploration": self.exploration,
                "predicted": self.predicted}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ProposalInfo | None:
        if not data:
            return None
        return cls(str(data.get("strategy", "unknown")), float(data.get("exploration", 0.0)),
                   data.get("predicted"))


@dataclass(frozen=True)
class Observation:
    """One trial as the engine sees it; ``value`` is as told (not sign-adjusted)."""

    number: int
    params: Mapping[str, Any]
    state: TrialState
    value: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)  # static metrics, when known
    proposal: ProposalInfo | None = None
    # Its values at the fidelity's rungs ((rung, value), ascending; each the first report at or
    # past the rung, ``Fidelity.rung_crossed``): the part of its learning curve that early
    # stopping calibrates on and a stopped trial's evidence comes from.
    curve: tuple[tuple[int, float], ...] = ()
    # The study revision of its last change; a finished trial's result never changes after, so
    # for one it says when its result arrived (``retraining_policy.arrival_order``). 0 where no
    # revisions are kept (the in-process optimizer): arrival is then trial-number order.
    revision: int = 0


@dataclass(frozen=True)
class PrunedCandidate:
    """A configuration the pruner discarded before anyone trained it, with its prediction."""

    params: Mapping[str, Any]
    predicted: float
    metrics: Mapping[str, float] = field(default_factory=dict)


class Views(NamedTuple):
    """A history's trials by state, each in trial-number order (``History``'s views)."""

    complete: tuple[Observation, ...]  # complete with a finite value
    running: tuple[Observation, ...]  # running or waiting
    infeasible: tuple[Observation, ...]
    stopped: tuple[Observation, ...]  # stopped with a partial value


@dataclass(frozen=True)
class History:
    """Everything the engine may learn from, in trial-number order."""

    direction: Direction
    trials: tuple[Observation, ...] = ()
    pruned: tuple[PrunedCandidate, ...] = ()
    # ``config_key`` of every trial but the failed ones, when the caller keeps them up to date
    # (the service's history cache does); None: the engine computes them from ``trials``.
    seen: frozenset[Key] | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def own_keys(self) -> frozenset[Key]:
        """``config_key`` of every trial but the failed ones (``seen_keys`` without ``seen``)."""
        cache, failed = _KEY_CACHE, TrialState.FAILED  # _key_of inlined: one pass per History
        out: set[Key] = set()
        add = out.add
        for t in self.trials:
            if t.state is failed:
                continue
            hit = cache.get(id(t))
            add(hit[1] if hit is not None and hit[0] is t else _key_of(t))
        return frozenset(out)

    def loss(self, obs: Observation) -> float:
        """The objective turned into a loss (lower is better) so strategies need one convention."""
        assert obs.value is not None
        return obs.value if self.direction == "minimize" else -obs.value

    # The views below are computed once per History object (it is frozen; strategies, the
    # scheduler and the pruner each ask for them, and at 10,000 trials every pass costs), all
    # four in one pass over the trials. A ``HistoryLedger`` keeps them up to date trial by trial
    # instead and hands them in (``with_views``), so the service's asks make no pass at all.
    @functools.cached_property
    def _by_state(self) -> Views:
        complete: list[Observation] = []
        running: list[Observation] = []
        infeasible: list[Observation] = []
        stopped: list[Observation] = []
        done, bad, pending, cut = (TrialState.COMPLETE, TrialState.INFEASIBLE, _PENDING,
                                   TrialState.STOPPED)
        for t in self.trials:
            state = t.state
            if state is done:
                if t.value is not None and math.isfinite(t.value):
                    complete.append(t)
            elif state is bad:
                infeasible.append(t)
            elif state in pending:
                running.append(t)
            elif state is cut and t.value is not None:
                stopped.append(t)
        return Views(tuple(complete), tuple(running), tuple(infeasible), tuple(stopped))

    @classmethod
    def with_views(cls, direction: Direction, trials: tuple[Observation, ...],
                   pruned: tuple[PrunedCandidate, ...], seen: frozenset[Key] | None,
                   views: Views, losses: np.ndarray, rank_order: np.ndarray,
                   ranked: list[Observation]) -> History:
        """A History whose views were kept up to date elsewhere (``HistoryLedger``): they must
        equal what its own passes compute (``_by_state``, ``complete_losses``, ``rank_order``,
        ``ranked``)."""
        history = cls(direction, trials, pruned, seen)
        losses.flags.writeable = False
        rank_order.flags.writeable = False
        history.__dict__.update(_by_state=views, complete_losses=losses, rank_order=rank_order,
                                ranked=ranked)
        return history

    def plus_running(self, pending: Observation,
                     pruned: tuple[PrunedCandidate, ...]) -> History:
        """This history with one more running trial (an ask's own pick, for its later slots):
        the finished trials' views are shared, not recomputed."""
        views = self._by_state
        return History.with_views(
            self.direction, (*self.trials, pending), pruned, None,
            Views(views.complete, (*views.running, pending), views.infeasible, views.stopped),
            self.complete_losses, self.rank_order, self.ranked)

    @property
    def complete(self) -> tuple[Observation, ...]:
        return self._by_state.complete

    @functools.cached_property
    def complete_losses(self) -> np.ndarray:
        """``loss`` of each trial of ``complete``, in the same order (read-only)."""
        values = np.array([t.value for t in self.complete], dtype=float)
        losses = values if self.direction == "minimize" else -values
        losses.flags.writeable = False
        return losses

    @functools.cached_property
    def rank_order(self) -> np.ndarray:
        """Positions in ``complete``, best (lowest loss) first, ties in trial-number order: the
        stable argsort of ``complete_losses`` (read-only)."""
        order = np.argsort(self.complete_losses, kind="stable")
        order.flags.writeable = False
        return order

    @functools.cached_property
    def ranked(self) -> list[Observation]:
        """Complete trials, best (lowest loss) first (``rank_order``). Callers must not mutate
        the list."""
        done = self.complete
        return [done[i] for i in self.rank_order.tolist()]

    @property
    def running(self) -> tuple[Observation, ...]:
        return self._by_state.running

    @property
    def infeasible(self) -> tuple[Observation, ...]:
        return self._by_state.infeasible

    @property
    def stopped(self) -> tuple[Observation, ...]:
        """Trials stopped early that kept a partial value (``partial_results`` reads them)."""
        return self._by_state.stopped

    def best(self) -> Observation | None:
        done = self.complete
        return done[int(np.argmin(self.complete_losses))] if done else None


_PENDING = (TrialState.RUNNING, TrialState.WAITING)  # ``History.running``: handed out or enqueued
_KEY_CACHE: dict[int, tuple[Observation, Key]] = {}


def _key_of(obs: Observation) -> Key:
    """config_key of an observation, cached by identity: histories are re-sent every ask."""
    hit = _KEY_CACHE.get(id(obs))
    if hit is not None and hit[0] is obs:
        return hit[1]
    if len(_KEY_CACHE) > 500_000:
        _KEY_CACHE.clear()
    key = config_key(obs.params)
    _KEY_CACHE[id(obs)] = (obs, key)
    return key


def seen_keys(history: History) -> frozenset[Key]:
    """Configurations not to propose again: complete, running, waiting or infeasible ones.
    The caller's ``history.seen`` when it keeps one (the service), else computed once per
    History object; read-only either way (an ask's own picks go in ``SeenOverlay``)."""
    if history.seen is not None:
        return history.seen
    return history.own_keys


class SeenOverlay:
    """A history's seen keys plus the few an ask adds, without copying the history's set (at
    10,000 trials the copy was a tenth of an ask's engine time)."""

    def __init__(self, base: frozenset[Key]) -> None:
        self.base = base
        self.added: set[Key] = set()

    def __contains__(self, key: object) -> bool:
        return key in self.base or key in self.added

    def add(self, key: Key) -> None:
        if key not in self.base:
            self.added.add(key)

    def __len__(self) -> int:
        return len(self.base) + len(self.added)

    def frozen(self) -> frozenset[Key]:
        """All of it as one frozenset: the base itself while nothing was added."""
        return self.base if not self.added else self.base | self.added
