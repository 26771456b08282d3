"""Per-ask work at large histories: vectorised passes equal the plain loops they replace, and the
models see a bounded share of a 10,000-trial history while small histories pass whole."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from service.engine import gp, partial_results, scheduler, stats
from service.engine.encoding import Encoder
from service.engine.history import History, Observation, ProposalInfo, TrialState
from service.engine.partial_results import with_partial_results
from service.engine.space import SearchSpace
from service.engine.strategies import parzen, surrogate
from service.engine.strategies.local import replay
from tests.engine.conftest import SPACES, toy_loss

STRATEGIES = ("random", "parzen", "local", "surrogate", "initial")


def mixed_history(space: SearchSpace, n: int, seed: int, direction: str = "minimize") -> History:
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n):
        params = space.sample(rng)
        u = rng.random()
        info = ProposalInfo(STRATEGIES[int(rng.integers(len(STRATEGIES)))], 0.5)
        state, value = TrialState.COMPLETE, toy_loss(params) + 0.1 * rng.standard_normal()
        if u < 0.05:
            state, value = TrialState.FAILED, None
        elif u < 0.1:
            state, value = TrialState.INFEASIBLE, None
        elif u < 0.15:
            value = round(value, 1)  # ties
        elif u > 0.99:
            value = math.nan
        trials.append(Observation(i, params, state, value, proposal=info))
    return History(direction, tuple(trials))  # type: ignore[arg-type]


def reference_progress(history: History, n_initial: int) -> dict[str, float]:
    """The plain loop that scheduler.progress_signals vectorises."""
    best, last, improvements = math.inf, 0, []
    done = [t for t in history.trials if t.state is TrialState.COMPLETE and t.value is not None
            and math.isfinite(t.value)]
    for i, trial in enumerate(done):
        loss = history.loss(trial)
        improvements.append(loss < best)
        if loss < best:
            best, last = loss, i
    n = len(done)
    stall = n - 1 - last if n else 0
    recent = improvements[max(n_initial, n - 10):]
    return {"n_complete": float(n), "stall": float(stall),
            "stall_norm": stall / (n_initial + 0.25 * n) if n else 0.0,
            "improvement_rate": float(np.mean(recent)) if recent else 0.0}


CASES = [(name, n, seed, direction) for name in sorted(SPACES) for n in (0, 1, 12, 300)
         for seed, direction in ((0, "minimize"), (1, "maximize"))]


@pytest.mark.parametrize(("name", "n", "seed", "direction"), CASES)
def test_vectorised_passes_equal_plain_loops(name: str, n: int, seed: int, direction: str) -> None:
    history = mixed_history(SPACES[name], n, seed, direction)
    done = [t for t in history.trials if t.state is TrialState.COMPLETE and t.value is not None
            and math.isfinite(t.value)]
    assert list(history.complete) == done
    assert history.complete_losses.tolist() == [history.loss(t) for t in done]
    assert history.ranked == sorted(done, key=lambda t: (history.loss(t), t.number))
    assert history.best() is (min(done, key=history.loss) if done else None)
    assert scheduler.progress_signals(history, 4) == reference_progress(history, 4)


def test_small_histories_pass_whole() -> None:
    """Below the bounds nothing is subsampled, so decisions at <= 300 trials are unchanged."""
    y = np.random.default_rng(0).standard_normal(gp.MAX_POINTS)
    assert np.array_equal(gp.subset(y, gp.MAX_POINTS), np.arange(gp.MAX_POINTS))
    items = list(range(parzen.MAX_BAD // 2))
    assert parzen._thin(items, parzen.MAX_BAD // 2) is items


def test_models_see_a_bounded_history_at_10000_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    space = SPACES["mixed_conditional"]
    history = mixed_history(space, 10_000, 0)
    sizes: list[int] = []
    fit = gp.fit

    def spy(X: np.ndarray, *args: object, **kwargs: object) -> object:
        sizes.append(len(X))
        return fit(X, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gp, "fit", spy)
    rank = surrogate.gp_ranker(Encoder(space), history)
    assert sizes and max(sizes) <= gp.MAX_POINTS
    assert len(rank([space.sample(np.random.default_rng(1))])) == 1
    ratio = parzen.DensityRatio(space, history, 0.5)
    assert len(ratio.bad.log_weights) <= parzen.MAX_BAD
    assert len(ratio.good.log_weights) <= parzen.MAX_GOOD
    assert replay(space, history).center is not None


def test_feature_rows_stay_right_when_their_cache_overflows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full cache is cleared mid-call: the rows of the trials that were hits before the clear
    must be recomputed too (a stopped trial's partial result is a new Observation every ask, so
    long early-stopping studies overflow the cache; this once raised KeyError)."""
    space = SPACES["mixed_conditional"]
    features = gp.Features(Encoder(space))
    trials = list(mixed_history(space, 30, 0).trials)
    monkeypatch.setattr(surrogate, "_ROWS", {})
    monkeypatch.setattr(surrogate, "_ROWS_LIMIT", 40)
    first = surrogate._feature_rows(features, trials[:20])
    both = surrogate._feature_rows(features, trials)  # 20 hits + 30 new > 40: the cache clears
    assert np.array_equal(first, both[:20])
    assert np.array_equal(both, features([t.params for t in trials]))


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_gp_rows_from_the_rank_order_equal_the_full_sort(direction: str) -> None:
    """The GP's rows and targets, read off ``History.rank_order`` with a binary search per row,
    are bit for bit what normal-scoring and sorting every loss gave (ties included)."""
    history = mixed_history(SPACES["mixed_conditional"], 3000, seed=3, direction=direction)
    losses = np.array(history.complete_losses)
    limit = gp.MAX_POINTS - 2 * surrogate.MAX_EXTRA
    assert len(losses) > limit and len(np.unique(losses)) < len(losses)  # ties, and a subset
    all_scores = stats.normal_scores(losses)
    keep = gp.subset_of_order(history.rank_order, limit)
    np.testing.assert_array_equal(keep, gp.subset(all_scores, limit))
    np.testing.assert_array_equal(
        stats.normal_scores_at(losses, history.rank_order, keep), all_scores[keep])
    everything = np.arange(len(losses))
    np.testing.assert_array_equal(
        stats.normal_scores_at(losses, history.rank_order, everything), all_scores)


def _stopping_history(n: int, seed: int, direction: str) -> list[Observation]:
    """Trials that reported at rungs 1 and 3, a tenth of them stopped at one of those."""
    rng = np.random.default_rng(seed)
    space = SPACES["mixed_conditional"]
    trials = []
    for i in range(n):
        final = toy_loss(space.sample(rng)) + 0.1 * rng.standard_normal()
        curve = ((1, final + abs(rng.normal())), (3, final + 0.3 * abs(rng.normal())))
        if rng.random() < 0.1:
            cut = curve[: 1 + int(rng.integers(2))]
            trials.append(Observation(i, {"x": i}, TrialState.STOPPED, cut[-1][1], curve=cut))
        elif rng.random() < 0.05:
            trials.append(Observation(i, {"x": i}, TrialState.RUNNING))
        else:
            trials.append(Observation(i, {"x": i}, TrialState.COMPLETE, final, curve=curve))
    if direction == "maximize":
        trials = [replace(t, value=None if t.value is None else -t.value,
                          curve=tuple((s, -v) for s, v in t.curve)) for t in trials]
    return trials


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_partial_results_view_equals_a_history_of_its_trials(direction: str) -> None:
    """The view's views, derived from the history's own by binary searches, equal what a
    History of the same trials computes; every stopped trial became complete."""
    history = History(direction, tuple(_stopping_history(800, 0, direction)))  # type: ignore[arg-type]
    view = with_partial_results(history)
    fresh = History(direction, view.trials)  # type: ignore[arg-type]
    assert view.stopped == () and fresh.stopped == ()
    assert len(view.complete) == len(history.complete) + len(history.stopped)
    for name in ("complete", "running", "infeasible"):
        assert [id(t) for t in getattr(view, name)] == [id(t) for t in getattr(fresh, name)]
    np.testing.assert_array_equal(view.complete_losses, fresh.complete_losses)
    np.testing.assert_array_equal(view.rank_order, fresh.rank_order)
    assert [id(t) for t in view.ranked] == [id(t) for t in fresh.ranked]


def test_a_stopped_trial_keeps_its_estimate_until_the_ladder_moves() -> None:
    """Between ladder steps a new result leaves every estimate (and its object) as it was, so
    caches keyed by identity stay valid; past a step the mapping is measured again."""
    def ladder(n: int) -> int:
        return stats.growth_ladder(n, partial_results.ANCHOR_EVERY_UNTIL,
                                   partial_results.ANCHOR_GROWTH)

    trials = _stopping_history(400, 1, "minimize")
    while True:  # mid-ladder: one more result does not reach the next step
        n_complete = sum(t.state is TrialState.COMPLETE for t in trials)
        if ladder(n_complete + 1) == ladder(n_complete):
            break
        trials.pop()
    first = with_partial_results(History("minimize", tuple(trials)))
    extra = Observation(len(trials), {"x": -1}, TrialState.COMPLETE, 0.5,
                        curve=((1, 0.9), (3, 0.6)))
    second = with_partial_results(History("minimize", (*trials, extra)))
    was_stopped = [t.number for t in trials if t.state is TrialState.STOPPED]
    assert was_stopped
    for number in was_stopped:
        assert first.trials[number] is second.trials[number]
    more = [Observation(len(trials) + i, {"x": -1 - i}, TrialState.COMPLETE, -1.0 - i,
                        curve=((1, -2.0 - i), (3, -1.5 - i))) for i in range(n_complete)]
    third = with_partial_results(History("minimize", (*trials, *more)))
    assert any(first.trials[k].value != third.trials[k].value for k in was_stopped)
