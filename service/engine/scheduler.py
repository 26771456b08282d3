"""The meta-scheduler: how much to explore and which strategies to use, read from the history.

Nothing here is remembered between asks: every signal is measured again from the trials, so any
server can plan any ask. The starting point comes from the space's shape (bigger, more categorical,
more conditional spaces start more exploratory); then

- a stall (many trials since the best last improved, relative to the study's length) raises the
  exploration degree, a recent run of improvements lowers it, and it decays slowly as the study
  grows;
- each strategy is credited for the trials it proposed (improving the best counts fully, landing
  in the top fifth partly) over a recent window, and its share grows or shrinks with its credit;
- the surrogate gains share, and the pruner the right to prune, only as fast as the pruner's
  measured trust (Spearman of its predictions before trials ran against their results) allows;
  a high prune ratio halves the prune quantile so pruning cannot run away.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from service.engine.history import History
from service.engine.options import EngineOptions
from service.engine.pruning import is_trusted, prune_quantile
from service.engine.space import CategoricalParam, SearchSpace, space_size
from service.engine.strategies import STRATEGIES

CREDIT_PRIOR_COUNT = 3.0  # pseudo-trials per strategy: one lucky hit must not take over
CREDIT_PRIOR_REWARD = 0.2  # their reward: about what a decent strategy earns
TOP_SHARE = 0.2  # landing in this top share of results earns partial credit
EXPLORATION_RANGE = (0.05, 0.95)  # never fully greedy, never blind


@dataclass(frozen=True)
class Plan:
    """One ask's decisions; ``signals`` are the measurements they were made from."""

    exploration: float
    pool_size: int
    weights: Mapping[str, float]
    prune_quantile: float
    n_initial: int
    signals: Mapping[str, float] = field(default_factory=dict)

    def assign(self, n: int, recent: list[str]) -> list[str]:
        """Strategies for ``n`` proposals: deficit round-robin against the recent trials' mix, so
        the realised mix follows the weights closely (less luck, less spread across seeds)."""
        counts = {name: 0.0 for name in self.weights}
        for name in recent:
            if name in counts:
                counts[name] += 1
        out: list[str] = []
        total = len(recent)
        for _ in range(n):
            total += 1
            name = max(self.weights, key=lambda s: self.weights[s] * total - counts[s])
            counts[name] += 1
            out.append(name)
        return out


def initial_design_size(space: SearchSpace, options: EngineOptions) -> int:
    """Quasi-random points before any model (see ``EngineOptions.n_initial``)."""
    if options.n_initial is not None:
        return max(0, options.n_initial)
    # Four points, fewer for tiny spaces: a larger design (d + 1, up to 10) was 7 % slower to the
    # target over 100 fresh seeds of the development suite, no task more than 5 % worse.
    return int(min(4, max(1.0, space_size(space) / 4)))


def shape_exploration(space: SearchSpace) -> float:
    """The starting exploration degree from the space's shape alone."""
    d = len(space.params)
    categorical = sum(isinstance(p, CategoricalParam) for p in space.params) / d
    conditional = sum(p.condition is not None for p in space.params) / d
    size = space_size(space)
    log_size = 8.0 if math.isinf(size) else math.log10(max(size, 1.0))
    return 0.3 + 0.15 * categorical + 0.1 * conditional + 0.1 * min(max((log_size - 3) / 5, 0), 1)


def base_weights(exploration: float) -> dict[str, float]:
    """The strategy mix before credit, interpolated between each strategy's exploit and explore
    weights (exploiting leans on the surrogate and local search, exploring on Parzen's global
    density and on random points)."""
    return {name: s.exploit_weight + exploration * (s.explore_weight - s.exploit_weight)
            for name, s in STRATEGIES.items()}


def credits(history: History, window: int) -> dict[str, float]:
    """Improvement-weighted success rate of each strategy over the last ``window`` results."""
    done = history.complete
    losses = history.complete_losses
    recent = done[-window:]
    window_losses = losses[-window:]
    recent_losses = window_losses.tolist()
    older = losses[:-window]  # with the window, every complete result once
    best = float(older.min()) if len(older) else math.inf
    # The older results below each recent one: all results below it, counted in the ranking
    # the history keeps, less the recent ones below it (no ask sorts the whole study).
    below = window_losses[None, :] < window_losses[:, None]  # [i, j]: recent j below recent i
    below_all = np.searchsorted(losses, window_losses, side="left", sorter=history.rank_order)
    below_older = (below_all - below.sum(1)).tolist()
    below_earlier = np.tril(below, -1).sum(1).tolist()  # the recent ones before it, below it
    totals = {name: CREDIT_PRIOR_REWARD * CREDIT_PRIOR_COUNT for name in STRATEGIES}
    counts = {name: CREDIT_PRIOR_COUNT for name in STRATEGIES}
    for i, (trial, loss) in enumerate(zip(recent, recent_losses, strict=True)):
        name = trial.proposal.strategy if trial.proposal is not None else None
        if name in totals:
            n_before = len(older) + i
            if loss < best:
                reward = 1.0
            elif n_before:
                rank = (below_older[i] + below_earlier[i]) / n_before
                reward = 0.5 * max(0.0, 1.0 - rank / TOP_SHARE)
            else:
                reward = 0.0
            totals[name] += reward
            counts[name] += 1
        best = min(best, loss)
    return {name: totals[name] / counts[name] for name in STRATEGIES}


def progress_signals(history: History, n_initial: int) -> dict[str, float]:
    """Stall length (normalised) and the recent improvement rate of the best result."""
    losses = history.complete_losses
    n = len(losses)
    # A result improves when it beats every earlier one (strictly): vectorised, as it runs per ask.
    earlier_best = np.minimum.accumulate(np.concatenate([[math.inf], losses[:-1]])) if n else losses
    improvements = losses < earlier_best
    hits = np.flatnonzero(improvements)
    last_improvement = int(hits[-1]) if len(hits) else 0
    stall = n - 1 - last_improvement if n else 0
    # Records of an i.i.d. sequence come ever rarer (about n / k apart after k); a stall is long
    # relative to the study's length, not in absolute trials.
    stall_norm = stall / (n_initial + 0.25 * n) if n else 0.0
    recent = improvements[max(n_initial, n - 10):].tolist()
    rate = float(np.mean(recent)) if recent else 0.0
    return {"n_complete": float(n), "stall": float(stall), "stall_norm": stall_norm,
            "improvement_rate": rate}


def recent_strategies(history: History, window: int = 20) -> list[str]:
    """Strategies of the latest non-initial trials (running included): the mix actually realised."""
    names = [t.proposal.strategy for t in history.trials[-window * 2:]
             if t.proposal is not None and t.proposal.strategy in STRATEGIES]
    return names[-window:]


def plan(space: SearchSpace, history: History, trust: float | None, prune_ratio: float,
         options: EngineOptions | None = None) -> Plan:
    """Decide this ask's exploration degree, pool size, strategy mix and prune quantile."""
    options = options or EngineOptions()
    n_initial = initial_design_size(space, options)
    e0 = shape_exploration(space)
    trusted = is_trusted(trust, options)
    if not options.scheduler:
        exploration = 0.5
        weights = base_weights(exploration)
        signals: dict[str, float] = {"fixed": 1.0}
    else:
        signals = progress_signals(history, n_initial)
        d = len(space.params)
        decay = 1.0 - 0.3 * min(1.0, signals["n_complete"] / (25.0 * d))
        exploration = (e0 * decay + 0.3 * (min(signals["stall_norm"], 1.0) - 0.5)
                       - 0.3 * signals["improvement_rate"])
        exploration = min(max(exploration, EXPLORATION_RANGE[0]), EXPLORATION_RANGE[1])
        weights = base_weights(exploration)
        credit = credits(history, options.credit_window)
        mean_credit = sum(credit.values()) / len(credit)
        for name in weights:
            weights[name] *= min(max(credit[name] / max(mean_credit, 1e-9), 0.3), 3.0)
        signals.update({f"credit_{k}": v for k, v in credit.items()})
    if trusted:
        assert trust is not None
        for name, strategy in STRATEGIES.items():
            if strategy.ranks_with_pruner:
                weights[name] *= 1.0 + trust
    total = sum(weights.values())
    weights = {k: float(v / total) for k, v in weights.items()}
    pool_size = round(options.pool_size * 2.0 ** (1.0 - 2.0 * exploration))
    signals.update({"shape_exploration": e0, "prune_ratio": prune_ratio})
    if trust is not None:
        signals["trust"] = trust
    return Plan(exploration=round(exploration, 4), pool_size=max(pool_size, 8), weights=weights,
                prune_quantile=prune_quantile(trust, prune_ratio, options), n_initial=n_initial,
                signals=signals)

