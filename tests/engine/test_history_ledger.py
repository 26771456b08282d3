"""A HistoryLedger's views equal what a History computes from its own trials, whatever the
order and kind of changes (new trials, state changes, repeated configurations, odd values)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.engine.history import History, Observation, PrunedCandidate, TrialState
from service.engine.history_ledger import HistoryLedger

STATES = list(TrialState)
VALUES = [0.0, -0.0, 1.5, -2.0, 1.5, math.nan, math.inf, -math.inf, None, 3.25]


def _assert_same(ledger_history: History, direction: str) -> None:
    fresh = History(direction, ledger_history.trials, ledger_history.pruned)
    assert ledger_history.trials == fresh.trials
    assert [t.number for t in ledger_history.trials] == sorted(
        t.number for t in ledger_history.trials)
    for view in ("complete", "running", "infeasible", "stopped"):
        got, want = getattr(ledger_history, view), getattr(fresh, view)
        assert [id(t) for t in got] == [id(t) for t in want], view
    np.testing.assert_array_equal(ledger_history.complete_losses, fresh.complete_losses)
    assert [id(t) for t in ledger_history.ranked] == [id(t) for t in fresh.ranked]
    np.testing.assert_array_equal(ledger_history.rank_order, fresh.rank_order)
    assert ledger_history.seen == fresh.own_keys
    assert ledger_history.pruned == fresh.pruned
    with pytest.raises(ValueError):
        ledger_history.complete_losses[0:1] = 1.0  # read-only, as History's own


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
@pytest.mark.parametrize("seed", range(6))
def test_ledger_views_equal_a_fresh_history(direction: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ledger = HistoryLedger(direction)
    numbers: list[int] = []
    for step in range(300):
        if numbers and rng.random() < 0.6:
            number = int(rng.choice(numbers))  # a known trial changes state (or not)
        else:
            number = int(rng.integers(0, 400))  # a new trial, not always past the last
            numbers.append(number)
        value = VALUES[int(rng.integers(len(VALUES)))]
        obs = Observation(number, {"x": int(rng.integers(0, 12)), "c": "ab"[step % 2]},
                          STATES[int(rng.integers(len(STATES)))], value=value)
        ledger.put(obs)
        if rng.random() < 0.05:
            ledger.add_pruned(PrunedCandidate({"x": step}, 0.5))
        if step % 7 == 0:
            _assert_same(ledger.history(), direction)
    _assert_same(ledger.history(), direction)
    assert len(ledger) == len(set(numbers))


def test_ledger_hands_out_one_history_until_a_change() -> None:
    ledger = HistoryLedger("minimize")
    ledger.put(Observation(0, {"x": 1}, TrialState.RUNNING))
    first = ledger.history()
    assert ledger.history() is first
    ledger.put(Observation(0, {"x": 1}, TrialState.COMPLETE, value=2.0))
    second = ledger.history()
    assert second is not first
    assert first.running and not first.complete  # a handed-out History never changes
    assert second.complete and not second.running
    assert ledger.get(0) is second.trials[0]
    assert ledger.get(1) is None


def test_repeated_configuration_stays_seen_until_its_last_trial_fails() -> None:
    ledger = HistoryLedger("minimize")
    ledger.put(Observation(0, {"x": 1}, TrialState.RUNNING))
    ledger.put(Observation(1, {"x": 1}, TrialState.RUNNING))
    ledger.put(Observation(0, {"x": 1}, TrialState.FAILED))
    assert ledger.history().seen == {(("x", 1),)}
    ledger.put(Observation(1, {"x": 1}, TrialState.FAILED))
    assert ledger.history().seen == frozenset()


def test_plus_running_shares_finished_views() -> None:
    done = tuple(Observation(i, {"x": i}, TrialState.COMPLETE, value=float(-i)) for i in range(5))
    history = History("minimize", done)
    pending = Observation(-1, {"x": 9}, TrialState.RUNNING)
    more = history.plus_running(pending, ())
    fresh = History("minimize", (*done, pending))
    assert more.running == fresh.running == (pending,)
    assert more.complete is history.complete
    assert more.ranked == fresh.ranked
    np.testing.assert_array_equal(more.rank_order, fresh.rank_order)
    np.testing.assert_array_equal(more.complete_losses, fresh.complete_losses)


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_a_large_batch_rebuilds_the_same_views_as_trial_by_trial(direction: str) -> None:
    """``put_many`` of a batch too large to insert one by one (a cold load, or a study that
    changed a lot) rebuilds the views in one pass: the same as putting each trial."""
    rng = np.random.default_rng(11)

    def trial(number: int) -> Observation:
        value = VALUES[int(rng.integers(len(VALUES)))]
        return Observation(number, {"x": int(rng.integers(0, 30))},
                           STATES[int(rng.integers(len(STATES)))], value=value)

    first = [trial(int(n)) for n in rng.permutation(500)]
    second = [trial(int(n)) for n in rng.integers(0, 700, size=300)]  # updates and new ones
    one_by_one, in_bulk = HistoryLedger(direction), HistoryLedger(direction)
    one_by_one.add_pruned(PrunedCandidate({"x": 1}, 0.5))
    in_bulk.add_pruned(PrunedCandidate({"x": 1}, 0.5))
    for batch in (first, second):
        for obs in batch:
            one_by_one.put(obs)
        in_bulk.put_many(batch)
        a, b = one_by_one.history(), in_bulk.history()
        _assert_same(b, direction)
        assert a.trials == b.trials and a.seen == b.seen and a.pruned == b.pruned
        assert [id(t) for t in a.ranked] == [id(t) for t in b.ranked]
        np.testing.assert_array_equal(a.rank_order, b.rank_order)
    in_bulk.put_many(first[:3])  # a small batch goes trial by trial on the rebuilt views
    for obs in first[:3]:
        one_by_one.put(obs)
    _assert_same(in_bulk.history(), direction)
    assert [id(t) for t in one_by_one.history().ranked] == [
        id(t) for t in in_bulk.history().ranked]
