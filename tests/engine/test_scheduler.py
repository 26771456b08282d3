"""The meta-scheduler reacts to the signals it measures, and only to them."""

from __future__ import annotations

import math

import numpy as np

from service.engine import scheduler
from service.engine.history import History, Observation, ProposalInfo, TrialState
from service.engine.options import EngineOptions
from tests.engine.conftest import SPACES

SPACE = SPACES["mixed_conditional"]


def history_of(values: list[float], strategies: list[str]) -> History:
    trials = tuple(
        Observation(i, {"x": 0.0, "n": 1, "kind": "c"}, TrialState.COMPLETE, v,
                    proposal=ProposalInfo(s, 0.5))
        for i, (v, s) in enumerate(zip(values, strategies, strict=True)))
    return History("minimize", trials)


def alternating(winner: str, loser: str, n: int = 40) -> History:
    """``winner``'s trials keep setting new bests; ``loser``'s are all poor."""
    values, names, best = [], [], 100.0
    for i in range(n):
        if i % 2 == 0:
            best -= 1.0
            values.append(best)
            names.append(winner)
        else:
            values.append(200.0)
            names.append(loser)
    return history_of(values, names)


def test_credit_shifts_the_mix_toward_the_strategy_that_keeps_improving() -> None:
    local_wins = scheduler.plan(SPACE, alternating("local", "parzen"), None, 0.0)
    parzen_wins = scheduler.plan(SPACE, alternating("parzen", "local"), None, 0.0)
    assert local_wins.weights["local"] > parzen_wins.weights["local"]
    assert parzen_wins.weights["parzen"] > local_wins.weights["parzen"]
    assert local_wins.weights["local"] > local_wins.weights["parzen"]


def test_exploration_rises_on_a_stall() -> None:
    improving = history_of([100.0 - i for i in range(60)], ["parzen"] * 60)
    stalled = history_of([100.0 - i for i in range(10)] + [200.0] * 50, ["parzen"] * 60)
    assert (scheduler.plan(SPACE, stalled, None, 0.0).exploration
            > scheduler.plan(SPACE, improving, None, 0.0).exploration + 0.2)


def test_more_exploitation_means_a_wider_candidate_pool() -> None:
    improving = history_of([100.0 - i for i in range(60)], ["parzen"] * 60)
    stalled = history_of([100.0 - i for i in range(10)] + [200.0] * 50, ["parzen"] * 60)
    assert scheduler.plan(SPACE, improving, None, 0.0).pool_size > scheduler.plan(
        SPACE, stalled, None, 0.0).pool_size


def test_without_the_scheduler_the_mix_is_fixed() -> None:
    options = EngineOptions(scheduler=False)
    a = scheduler.plan(SPACE, alternating("local", "parzen"), None, 0.0, options)
    b = scheduler.plan(SPACE, alternating("parzen", "local"), None, 0.0, options)
    assert a.weights == b.weights and a.exploration == b.exploration == 0.5


def test_starting_point_follows_the_space_shape() -> None:
    categorical = scheduler.shape_exploration(SPACES["categorical_only"])
    continuous = scheduler.shape_exploration(SPACES["float_only"])
    assert categorical > continuous
    assert scheduler.initial_design_size(SPACES["tiny"], EngineOptions()) <= 1


def test_pruning_needs_trust() -> None:
    history = alternating("local", "parzen")
    assert scheduler.plan(SPACE, history, None, 0.0).prune_quantile == 0.0
    assert scheduler.plan(SPACE, history, 0.1, 0.0).prune_quantile == 0.0
    trusted = scheduler.plan(SPACE, history, 0.8, 0.0)
    assert trusted.prune_quantile > 0.0
    assert scheduler.plan(SPACE, history, 0.8, 0.9).prune_quantile < trusted.prune_quantile
    assert scheduler.plan(SPACE, history, 0.8, 0.0, EngineOptions(pruner=False)
                          ).prune_quantile == 0.0
    assert trusted.weights["surrogate"] > scheduler.plan(SPACE, history, None, 0.0
                                                          ).weights["surrogate"]


def test_assignment_follows_the_weights() -> None:
    plan = scheduler.Plan(0.5, 64, {"random": 0.1, "parzen": 0.4, "local": 0.2,
                                    "surrogate": 0.3}, 0.0, 5)
    names = plan.assign(20, [])
    assert names.count("parzen") == 8 and names.count("random") == 2


def test_the_strategy_registry_is_the_only_list(monkeypatch) -> None:
    """A strategy registered in ``strategies.STRATEGIES`` is planned, credited and assigned with
    the mix weights it declares; nothing else needs to know it."""
    from service.engine.strategies import STRATEGIES, RandomStrategy

    class EchoStrategy(RandomStrategy):
        name = "echo"
        exploit_weight = 0.0
        explore_weight = 1.0

    monkeypatch.setitem(STRATEGIES, "echo", EchoStrategy())
    assert scheduler.base_weights(0.0)["echo"] == 0.0
    assert scheduler.base_weights(1.0)["echo"] == 1.0
    history = history_of([3.0, 2.0, 1.0], ["echo", "echo", "parzen"])
    assert set(scheduler.credits(history, 60)) == set(STRATEGIES)
    assert scheduler.recent_strategies(history) == ["echo", "echo", "parzen"]
    plan = scheduler.plan(SPACE, history, None, 0.0)
    assert set(plan.weights) == set(STRATEGIES) and plan.weights["echo"] > 0


def _credits_by_sorting(history: History, window: int) -> dict[str, float]:
    """The credit's definition, written the direct way: every older result sorted, then a
    binary search per recent one (what ``scheduler.credits`` did before it read the history's
    ranking instead)."""
    losses = history.complete_losses
    before = np.sort(losses[:-window])
    best = float(before[0]) if len(before) else math.inf
    totals = {n: scheduler.CREDIT_PRIOR_REWARD * scheduler.CREDIT_PRIOR_COUNT
              for n in scheduler.STRATEGIES}
    counts = dict.fromkeys(scheduler.STRATEGIES, scheduler.CREDIT_PRIOR_COUNT)
    seen: list[float] = []
    for trial, loss in zip(history.complete[-window:], losses[-window:].tolist(), strict=True):
        name = trial.proposal.strategy
        n_before = len(before) + len(seen)
        if loss < best:
            reward = 1.0
        elif n_before:
            rank = (np.searchsorted(before, loss) + sum(v < loss for v in seen)) / n_before
            reward = 0.5 * max(0.0, 1.0 - rank / scheduler.TOP_SHARE)
        else:
            reward = 0.0
        totals[name] += reward
        counts[name] += 1
        best = min(best, loss)
        seen.append(loss)
    return {n: totals[n] / counts[n] for n in scheduler.STRATEGIES}


def test_credits_equal_their_direct_definition_with_ties_and_any_window() -> None:
    rng = np.random.default_rng(3)
    names = sorted(scheduler.STRATEGIES)
    for n, direction in ((0, "minimize"), (7, "maximize"), (150, "minimize"), (400, "maximize")):
        values = rng.integers(0, 25, size=n).astype(float)  # few distinct values: many ties
        trials = tuple(Observation(i, {"x": float(v)}, TrialState.COMPLETE, float(v),
                                   proposal=ProposalInfo(names[i % len(names)], 0.5))
                       for i, v in enumerate(values))
        history = History(direction, trials)
        for window in (0, 1, 5, 60, n, n + 10):
            assert scheduler.credits(history, window) == _credits_by_sorting(history, window), \
                (n, direction, window)
