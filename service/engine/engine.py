"""The engine's one entry point: ``propose`` turns a space and a history into the next trials.

It is a pure function (the same space, history, n, seed and pruner give the same decision), so
the service may call it from any process. Per ask it: plans (scheduler), proposes one
configuration per slot with the planned strategy (the initial design first), puts each slot's
candidates through the pruner when it has earned the right to prune, never repeats a configuration
that is complete, running or infeasible while untried ones remain, and records why each survivor
was proposed. Within a batch every pick is added to the history as a running trial, so the next
slot's strategies treat it as pending and look elsewhere.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from service.engine import scheduler, transfer
from service.engine.encoding import Encoder
from service.engine.history import (
    History,
    Observation,
    ProposalInfo,
    PrunedCandidate,
    TrialState,
)
from service.engine.options import EngineOptions
from service.engine.space import SearchSpace, config_key, enumerate_configs
from service.engine.strategies import STRATEGIES, Context
from service.engine.strategies.base import Config, Key
from service.engine.strategies.random import latin_hypercube

if TYPE_CHECKING:
    from service.engine.pruner import PrunerModel
    from service.engine.transfer import Prior

__all__ = ["Decision", "EngineOptions", "Proposal", "propose"]

MetricsFn = Callable[[list[dict[str, Any]]], list[dict[str, float]]]
ENUMERATE_LIMIT = 20_000  # spaces up to this size are listed to find their last untried points
# (listing and keying 131k configurations took 1.5 s an ask; 20k about 0.2 s)
MAX_PRUNED_PER_ASK = 64  # pruned candidates recorded per ask: enough to learn from, bounded rows
REPEAT = "repeat"  # label of a proposal that repeats a configuration: the space is exhausted
TRANSFER = transfer.TRANSFER  # label of a prior study's incumbent


@dataclass(frozen=True)
class Proposal:
    """One configuration to train and why it was proposed."""

    params: dict[str, Any]
    info: ProposalInfo


@dataclass(frozen=True)
class Decision:
    """The outcome of one ask: the proposals and the candidates the pruner discarded."""

    proposals: tuple[Proposal, ...]
    pruned: tuple[PrunedCandidate, ...] = ()
    plan: scheduler.Plan | None = None


@functools.lru_cache(maxsize=256)
def encoder_for(space: SearchSpace) -> Encoder:
    """One Encoder per space (construction hashes the space; asks repeat it thousands of times)."""
    return Encoder(space)


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


def seen_keys(history: History) -> set[Key]:
    """Configurations not to propose again: complete, running, waiting or infeasible ones."""
    if history.seen is not None:
        return set(history.seen)
    # _key_of inlined: this pass runs over every trial on every ask.
    cache, failed = _KEY_CACHE, TrialState.FAILED
    out: set[Key] = set()
    add = out.add
    for t in history.trials:
        if t.state is failed:
            continue
        hit = cache.get(id(t))
        add(hit[1] if hit is not None and hit[0] is t else _key_of(t))
    return out


class _Scorer:
    """The pruner as a strategy sees it: configurations -> (mean, std) of predicted goodness."""

    def __init__(self, model: PrunerModel, encoder: Encoder,
                 metrics_fn: MetricsFn | None) -> None:
        from service.engine import pruner as pruner_module

        self.model, self.encoder, self.metrics_fn = model, encoder, metrics_fn
        self._featurize = pruner_module.featurize
        self._metrics: dict[Key, dict[str, float]] = {}

    def metrics(self, configs: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
        if not self.model.metric_names or self.metrics_fn is None:
            return [{} for _ in configs]
        missing = [dict(c) for c in configs if config_key(c) not in self._metrics]
        if missing:
            for config, values in zip(missing, self.metrics_fn(missing), strict=True):
                self._metrics[config_key(config)] = dict(values)
        return [self._metrics[config_key(c)] for c in configs]

    def __call__(self, configs: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        features = self._featurize(self.encoder, list(configs), self.metrics(configs),
                                   self.model.metric_names)
        mean, std = self.model.predict(features)
        return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)


def _usable(model: PrunerModel | None, encoder: Encoder, metrics_fn: MetricsFn | None,
            options: EngineOptions) -> bool:
    if model is None or not options.pruner:
        return False
    from service.engine.pruner import feature_fingerprint

    if model.fingerprint != feature_fingerprint(encoder, model.metric_names):
        return False  # trained for another layout (DESIGN rule 3): never applied
    return not (model.metric_names and metrics_fn is None)


def propose(space: SearchSpace, history: History, n: int, *, seed: int,
            pruner: PrunerModel | None = None, options: EngineOptions | None = None,
            metrics_fn: MetricsFn | None = None, prior: Prior | None = None) -> Decision:
    """The next ``n`` configurations for a study, each with the reason it was proposed.

    >>> space = SearchSpace.from_dict({"params": [
    ...     {"name": "x", "type": "float", "low": 0.0, "high": 1.0}]})
    >>> decision = propose(space, History("minimize"), 2, seed=0)
    >>> [p.info.strategy for p in decision.proposals]
    ['initial', 'initial']
    """
    if n < 1:
        return Decision(())
    options = EngineOptions.coerce(options)
    encoder = encoder_for(space)
    rng = np.random.default_rng([seed % 2**63, len(history.trials), len(history.pruned), n])
    transfer_view = transfer.view(prior, encoder, history)
    misled = transfer_view is not None and not transfer_view.active
    if getattr(pruner, "n_prior", 0) and (transfer_view is None or misled):
        pruner = None  # it learnt a prior since found misleading: wait for its retraining
    scorer = _Scorer(pruner, encoder, metrics_fn) if _usable(
        pruner, encoder, metrics_fn, options) else None
    # Under a misleading prior, the forecasts on the first trials came from the model pretrained
    # on it: they would hold the retrained pruner's trust down for a whole window.
    trust = _trust(history, transfer.PRETRAINED_FORECASTS if misled else frozenset()) \
        if scorer is not None else None
    n_recorded = len(history.pruned) + len(history.trials)
    prune_ratio = len(history.pruned) / n_recorded if n_recorded else 0.0
    plan = scheduler.plan(space, history, trust, prune_ratio, options)
    trusted = trust is not None and trust >= options.trust_min
    seen = seen_keys(history)
    if transfer_view is not None and not transfer_view.active:
        transfer_view = None  # measured and found misleading: behave as a cold start
    working = history
    assignment = plan.assign(n, scheduler.recent_strategies(history))
    proposals: list[Proposal] = []
    pruned: list[PrunedCandidate] = []
    design: list[Config] | None = None
    offset = transfer.INCUMBENTS if prior is not None and prior.studies else 0
    for slot in range(n):
        index = len(history.trials) + slot
        picked: Config | None = None
        predicted: float | None = None
        name = assignment[slot]
        exploration = plan.exploration
        # With a prior, its first incumbents come before the initial design, which is then run
        # unchanged: a prior found misleading leaves the cold start's design behind it. Later,
        # a trusted prior keeps a share of the proposals for its next incumbents.
        if transfer_view is not None and (
                index < offset or (index >= offset + plan.n_initial and transfer.wants_incumbent(
                    transfer_view, working))):
            (picked,) = transfer.incumbents(prior, encoder, seen, 1) or (None,)
            if picked is not None:
                name, exploration = TRANSFER, 0.0
                if scorer is not None:  # a pretrained pruner's forecast: how its trust starts
                    predicted = float(scorer([picked])[0][0])
        at = index - offset if index >= offset else index
        if picked is None and at < plan.n_initial:
            if design is None:  # the same design whichever ask reaches it: a true LHS across asks
                design = latin_hypercube(space, plan.n_initial,
                                         np.random.default_rng([seed % 2**63, 0x1D]))
            if config_key(design[at]) not in seen:
                picked, name, exploration = design[at], scheduler.INITIAL, 1.0
        if picked is None:
            # Strategies rank with the pruner only once it has earned trust; its predictions are
            # still recorded below, which is how that trust is measured.
            context = Context(encoder, plan.exploration, plan.pool_size, history.best(),
                              frozenset(seen), scorer if trusted else None, transfer_view)
            prunes = scorer is not None and plan.prune_quantile > 0
            k = max(1, options.prune_candidates) if prunes else 1
            candidates = [c for c in STRATEGIES[name].propose(space, working, k, rng, context)
                          if config_key(c) not in seen]
            if not candidates:
                candidates = [c for c in STRATEGIES["random"].propose(space, working, k, rng,
                                                                      context)
                              if config_key(c) not in seen]
            if not candidates:
                candidates = _untried(space, seen, rng)
            if not candidates:
                candidates, name = _repeat(space, history, rng), REPEAT
            picked = candidates[0]
            if scorer is not None:
                mean, _ = scorer(candidates)
                choice = 0
                if prunes and len(candidates) > 1:
                    keep = np.asarray(_prune_mask(mean, history, trust, plan.prune_quantile))
                    choice = int(np.argmax(keep)) if keep.any() else int(np.argmax(mean))
                    metrics = scorer.metrics(candidates)
                    for i in np.flatnonzero(~keep):
                        if i != choice and len(pruned) < MAX_PRUNED_PER_ASK:
                            pruned.append(PrunedCandidate(candidates[i], float(mean[i]),
                                                          metrics[i]))
                picked, predicted = candidates[choice], float(mean[choice])
        info = ProposalInfo(name, exploration, predicted)
        proposals.append(Proposal(dict(picked), info))
        seen.add(config_key(picked))
        pending = Observation(-1 - slot, picked, TrialState.RUNNING, proposal=info)
        working = History(history.direction, (*working.trials, pending),
                          (*history.pruned, *pruned))
    return Decision(tuple(proposals), tuple(pruned), plan)


def _trust(history: History, skip: frozenset[str] = frozenset()) -> float | None:
    from service.engine.pruner import measure_trust

    trust = measure_trust(history, skip=skip)
    return None if trust is None or not math.isfinite(trust) else float(trust)


def _prune_mask(predicted: np.ndarray, history: History, trust: float | None,
                quantile: float) -> np.ndarray:
    from service.engine.pruner import prune_mask

    return prune_mask(predicted, history, trust, quantile)


def _untried(space: SearchSpace, seen: set[Key], rng: np.random.Generator) -> list[Config]:
    """The untried configurations of a small space, in random order (exhaustion is near)."""
    every = enumerate_configs(space, ENUMERATE_LIMIT)
    if every is None:
        return []
    left = [c for c in every if config_key(c) not in seen]
    order = rng.permutation(len(left))
    return [left[i] for i in order[:8]]


def _repeat(space: SearchSpace, history: History, rng: np.random.Generator) -> list[Config]:
    """Every configuration is tried: repeat the best (a second measurement of a noisy optimum is
    the most useful thing left), or any if none completed."""
    best = history.best()
    return [dict(best.params)] if best is not None else [space.sample(rng)]
