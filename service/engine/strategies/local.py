"""Local search around the incumbent, CFO-style: a random direction with an adaptive step.

The step (in unit space, per param) grows after a local trial that improved on the best and
shrinks after ``patience`` local trials in a row that did not; when it collapses below
``STEP_MIN``, or every one-notch neighbour of a discrete centre has been tried, the centre is a
local optimum: the search restarts around the best trial not yet known to be one.

The engine is stateless between calls, so none of this lives in an object: the step, the centre
and the converged optima are re-derived on every call by replaying the trials this strategy
proposed (``Observation.proposal.strategy == "local"``), in trial order.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np

from service.engine.encoding import neighbour, notch_neighbours
from service.engine.history import History, Key, Observation
from service.engine.space import SearchSpace, config_key
from service.engine.strategies.base import (
    Config,
    Context,
    Strategy,
    fill_random,
)

STEP_INIT = 0.15  # per-param unit-space step at a (re)start: a few grid notches on typical grids
STEP_MAX = 0.5  # beyond half the range a "local" move is a random restart in disguise
STEP_MIN = 0.02  # below this no grid of fewer than ~50 values moves: the search has converged
GROW = 1.6  # success: stride on (CFO doubles; slightly less keeps the walk near the good region)
SHRINK = 0.6  # stall: look closer
MAX_INFEASIBLE = 200  # recent infeasible trials whose cells local steps avoid (bounded cost)


@dataclass(frozen=True)
class LocalState:
    """The local search as replayed from the history."""

    center: Observation | None
    step: float
    restarts: int
    converged: frozenset[Key]


def patience(space: SearchSpace) -> int:
    """Failures in a row before the step shrinks: more params, more directions worth trying."""
    return max(3, math.ceil(len(space.params) / 2))


@dataclass(frozen=True)
class _Fold:
    """The replay's state after a prefix of the complete trials (``replay`` resumes from it)."""

    step: float = STEP_INIT
    fails: int = 0
    restarts: int = 0
    best_loss: float = math.inf
    converged: frozenset[Key] = frozenset()
    epoch_best: Observation | None = None
    epoch_best_loss: float = math.inf  # loss of epoch_best (history.loss, read once per trial)


# The last few replays: (patience, the complete trials replayed, the state after them). The
# service re-sends the same Observation objects every ask and results mostly arrive at the end,
# so an ask replays only the trials that are new since the last one instead of all of them
# (a pure function still: a cached state is used only for an identical prefix of trials).
_FOLDS: list[tuple[int, tuple[Observation, ...], _Fold]] = []
_FOLDS_KEPT = 8


def replay(space: SearchSpace, history: History) -> LocalState:
    """Re-derive step, centre and converged optima from the trials (see the module docstring)."""
    limit = patience(space)
    done = history.complete
    start, fold = 0, _Fold()
    for kept_limit, prefix, state in _FOLDS:
        if (kept_limit == limit and start < len(prefix) <= len(done)
                and all(map(operator.is_, prefix, done))):
            start, fold = len(prefix), state
    fold = _replay_from(fold, done[start:], history.complete_losses[start:].tolist(), limit)
    if len(done) > start:
        _FOLDS.insert(0, (limit, done, fold))
        del _FOLDS[_FOLDS_KEPT:]
    center, converged = fold.epoch_best, fold.converged
    if center is None:
        candidates = [t for t in history.complete if config_key(t.params) not in converged]
        center = min(candidates, key=history.loss) if candidates else history.best()
    return LocalState(center, fold.step, fold.restarts, converged)


def _replay_from(fold: _Fold, done: tuple[Observation, ...], losses: list[float],
                 limit: int) -> _Fold:
    """``fold`` carried on over the complete trials ``done`` with their ``losses``."""
    step, fails, restarts, best_loss = fold.step, fold.fails, fold.restarts, fold.best_loss
    converged = set(fold.converged)
    epoch_best, epoch_best_loss = fold.epoch_best, fold.epoch_best_loss
    for trial, loss in zip(done, losses, strict=True):
        if trial.proposal is not None and trial.proposal.strategy == LocalStrategy.name:
            if loss < best_loss:
                step, fails = min(step * GROW, STEP_MAX), 0
            else:
                fails += 1
                if fails >= limit:
                    step, fails = step * SHRINK, 0
            if step < STEP_MIN:
                if epoch_best is not None:
                    converged.add(config_key(epoch_best.params))
                step, fails, restarts, epoch_best = STEP_INIT, 0, restarts + 1, None
                epoch_best_loss = math.inf
                best_loss = min(best_loss, loss)
                continue
        if (epoch_best is None or loss < epoch_best_loss) and not (
                converged and config_key(trial.params) in converged):
            epoch_best, epoch_best_loss = trial, loss
        best_loss = min(best_loss, loss)
    return _Fold(step, fails, restarts, best_loss, frozenset(converged), epoch_best,
                 epoch_best_loss)


class LocalStrategy(Strategy):
    """Random-direction steps around the replayed centre, skipping tried configurations."""

    name = "local"
    # Refines the incumbent: a large share when exploiting, little when exploring.
    exploit_weight = 0.4
    explore_weight = 0.1

    def propose(self, space: SearchSpace, history: History, n: int, rng: np.random.Generator,
                context: Context) -> list[Config]:
        state = replay(space, history)
        center, step = state.center, state.step
        seen = context.seen  # read, never copied: it holds every trial's key
        picked: set[Key] = set()
        # A discrete centre whose whole one-notch neighbourhood is tried is a local optimum: move
        # to the best trial that is not (stateless, so re-checked on every call).
        skipped: set[Key] = set(state.converged)
        ranked = history.ranked
        for _ in range(8):
            if center is None:
                break
            around = notch_neighbours(space, center.params)
            if around is None or any(config_key(c) not in seen for c in around):
                break
            skipped.add(config_key(center.params))
            center = next((t for t in ranked if config_key(t.params) not in skipped), None)
            step = STEP_INIT
        if center is None:
            return fill_random(space, [], n, rng, seen)
        scale = math.sqrt(len(center.params))
        chosen: list[Config] = []
        avoid = _InfeasibleCells(context, history, center.params)
        for attempt in range(24 * n):
            grow = 2.0 ** (attempt // (8 * n))  # crowded neighbourhood: widen the step
            config = neighbour(context.encoder, center.params, min(step * grow, 1.0) * scale, rng)
            key = config_key(config)
            if key not in seen and key not in picked and (attempt >= 16 * n or not avoid(config)):
                picked.add(key)
                chosen.append(config)
                if len(chosen) == n:
                    break
        return fill_random(space, chosen, n, rng, seen)  # it skips ``chosen`` itself


class _InfeasibleCells:
    """Whether a step lands nearer to a known infeasible trial than to the centre (in encoded
    space): such a step most likely crosses into the region that cannot train."""

    def __init__(self, context: Context, history: History, center: Config) -> None:
        self.encoder = context.encoder
        bad = [t.params for t in history.infeasible[-MAX_INFEASIBLE:]]
        self.bad = self.encoder.encode_many(bad) if bad else None
        self.center = self.encoder.encode(center)

    def __call__(self, config: Config) -> bool:
        if self.bad is None:
            return False
        x = self.encoder.encode(config)
        nearest_bad = float(np.min(np.sum((self.bad - x) ** 2, axis=1)))
        return nearest_bad < float(np.sum((self.center - x) ** 2))
