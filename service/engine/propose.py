"""The engine's one entry point: ``propose`` turns a space and a history into the next trials.

It is a pure function (the same space, history, n, seed and pruner give the same decision), so
the service may call it from any process. Per ask it plans (``scheduler``), then fills each slot
with the first of these that applies:

1. a prior study's incumbent (``transfer``): its first few come before the initial design, and
   later a trusted prior keeps a share of the slots;
2. the initial design, a Latin hypercube that is the same whichever ask reaches it;
3. the planned strategy's candidates, put through the pruner when it has earned the right to prune
   (``pruning``); when the strategy has nothing new, the random strategy's, then the space's last
   untried configurations, then a repeat of the best.

It never repeats a configuration that is complete, running or infeasible while untried ones remain,
and records why each pick was proposed. Within a batch every pick joins the history as a running
trial, so the next slot's strategies treat it as pending and look elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from service.engine import pruning, scheduler, transfer
from service.engine.decision import Decision, Proposal
from service.engine.encoding import Encoder, encoder_for
from service.engine.history import (
    INITIAL,
    REPEAT,
    TRANSFER,
    History,
    Key,
    Observation,
    ProposalInfo,
    PrunedCandidate,
    SeenOverlay,
    TrialState,
    seen_keys,
)
from service.engine.options import EngineOptions
from service.engine.partial_results import with_partial_results
from service.engine.pruning import MetricsFn, Scorer
from service.engine.space import SearchSpace, config_key, enumerate_configs
from service.engine.strategies import STRATEGIES, Context, RandomStrategy
from service.engine.strategies.base import Config
from service.engine.strategies.random import latin_hypercube

if TYPE_CHECKING:
    from service.engine.pruner import PrunerModel
    from service.engine.transfer import Prior, TransferView

__all__ = ["propose"]

ENUMERATE_LIMIT = 20_000  # spaces up to this size are listed to find their last untried points
# (listing and keying 131k configurations took 1.5 s an ask; 20k about 0.2 s)
FALLBACK = RandomStrategy.name  # it never looks at results, so it cannot be misled by them
DESIGN_STREAM = 0x1D  # the initial design's own random stream: the same design on every ask


@dataclass
class _Ask:
    """One ask's inputs and what it has decided so far; the slot functions read and extend it."""

    space: SearchSpace
    history: History
    encoder: Encoder
    rng: np.random.Generator
    seed: int
    options: EngineOptions
    plan: scheduler.Plan
    scorer: Scorer | None
    trust: float | None
    prior: Prior | None
    transfer: TransferView | None  # None without a prior or with one measured to mislead
    offset: int  # slots the prior's first incumbents take before the initial design
    seen: SeenOverlay
    working: History  # the history plus this batch's picks so far, as running trials
    pruned: list[PrunedCandidate] = field(default_factory=list)
    design: list[Config] | None = None

    def frozen_seen(self) -> frozenset[Key]:
        """``seen`` for a strategy: the history's own frozenset while this batch has added
        nothing to it, else a copy with the batch's picks."""
        return self.seen.frozen()

    def take(self, slot: int, config: Config, info: ProposalInfo) -> Proposal:
        """Record a pick: later slots must not propose it again and see it as pending."""
        self.seen.add(config_key(config))
        pending = Observation(-1 - slot, config, TrialState.RUNNING, proposal=info)
        self.working = self.working.plus_running(pending, (*self.history.pruned, *self.pruned))
        return Proposal(dict(config), info)


Pick = tuple[Config, ProposalInfo]


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
    history = with_partial_results(history)  # stopped trials are evidence, at estimated finals
    ask = _start(space, history, n, seed, pruner, EngineOptions.coerce(options), metrics_fn,
                 prior)
    assignment = ask.plan.assign(n, scheduler.recent_strategies(history))
    proposals = []
    for slot, name in enumerate(assignment):
        index = len(history.trials) + slot
        config, info = (_prior_incumbent(ask, index) or _initial_design(ask, index)
                        or _strategy_pick(ask, name))
        proposals.append(ask.take(slot, config, info))
    return Decision(tuple(proposals), tuple(ask.pruned), ask.plan)


def _start(space: SearchSpace, history: History, n: int, seed: int, pruner: PrunerModel | None,
           options: EngineOptions, metrics_fn: MetricsFn | None, prior: Prior | None) -> _Ask:
    """Everything an ask decides once: the prior's view, the pruner's say, the plan."""
    encoder = encoder_for(space)
    rng = np.random.default_rng([seed % 2**63, len(history.trials), len(history.pruned), n])
    view = transfer.view(prior, encoder, history)
    scorer, trust = pruning.consult(pruner, encoder, history, view, options, metrics_fn)
    plan = scheduler.plan(space, history, trust, pruning.prune_ratio(history), options)
    return _Ask(space, history, encoder, rng, seed, options, plan, scorer, trust, prior,
                transfer=view if view is not None and view.active else None,
                offset=transfer.INCUMBENTS if prior is not None and prior.studies else 0,
                seen=SeenOverlay(seen_keys(history)), working=history)


def _prior_incumbent(ask: _Ask, index: int) -> Pick | None:
    """The prior's next incumbent, for the slots before the initial design (which then runs
    unchanged: a prior found misleading leaves the cold start's design behind it) and, after it,
    for the share a trusted prior keeps."""
    view = ask.transfer
    if view is None or not (index < ask.offset or (
            index >= ask.offset + ask.plan.n_initial
            and transfer.wants_incumbent(view, ask.working))):
        return None
    found = transfer.incumbents(view.prior, ask.encoder, ask.seen, 1)
    if not found:
        return None
    # A pretrained pruner's forecast for it: how its trust starts.
    predicted = float(ask.scorer(found)[0][0]) if ask.scorer is not None else None
    return found[0], ProposalInfo(TRANSFER, 0.0, predicted)


def _initial_design(ask: _Ask, index: int) -> Pick | None:
    """The initial design's point for this slot, unless it was tried already."""
    at = index - ask.offset if index >= ask.offset else index
    if at >= ask.plan.n_initial:
        return None
    if ask.design is None:  # the same design whichever ask reaches it: a true LHS across asks
        ask.design = latin_hypercube(ask.space, ask.plan.n_initial,
                                     np.random.default_rng([ask.seed % 2**63, DESIGN_STREAM]))
    config = ask.design[at]
    if config_key(config) in ask.seen:
        return None
    return config, ProposalInfo(INITIAL, 1.0)


def _strategy_pick(ask: _Ask, name: str) -> Pick:
    """The planned strategy's pick, vetted by the pruner when it prunes. Strategies rank with the
    pruner only once it has earned trust; its prediction for the pick is recorded either way,
    which is how that trust is measured."""
    plan, scorer = ask.plan, ask.scorer
    context = Context(ask.encoder, plan.exploration, plan.pool_size, ask.history.best(),
                      ask.frozen_seen(),
                      scorer if pruning.is_trusted(ask.trust, ask.options) else None,
                      ask.transfer)
    prunes = scorer is not None and plan.prune_quantile > 0
    k = max(1, ask.options.prune_candidates) if prunes else 1
    candidates, name = _candidates(ask, name, k, context)
    choice, predicted = 0, None
    if scorer is not None:
        mean, _ = scorer(candidates)
        if prunes and len(candidates) > 1:
            keep = pruning.prune_mask(mean, ask.history, ask.trust, plan.prune_quantile)
            (choice,) = pruning.pick(mean, keep, 1)
            ask.pruned += pruning.discarded(candidates, mean, scorer.metrics(candidates), keep,
                                            [choice], pruning.MAX_PRUNED_PER_ASK - len(ask.pruned))
        predicted = float(mean[choice])
    return candidates[choice], ProposalInfo(name, plan.exploration, predicted)


def _candidates(ask: _Ask, name: str, k: int, context: Context) -> tuple[list[Config], str]:
    """Up to ``k`` untried candidates of the named strategy, best first, and the label they go by;
    when it has none, the fallbacks in turn (random, the last untried, a repeat)."""
    for strategy in (name, FALLBACK):
        proposed = STRATEGIES[strategy].propose(ask.space, ask.working, k, ask.rng, context)
        fresh = [c for c in proposed if config_key(c) not in ask.seen]
        if fresh:
            return fresh, name
    untried = _untried(ask.space, ask.seen, ask.rng)
    if untried:
        return untried, name
    return _repeat(ask.space, ask.history, ask.rng), REPEAT


def _untried(space: SearchSpace, seen: SeenOverlay, rng: np.random.Generator) -> list[Config]:
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
