"""The early-stopping rule (ASHA rungs), pure: what stops depends only on the values at a rung."""

from __future__ import annotations

import pytest

from service.engine.early_stopping import ETA, Fidelity, decide
from service.engine.history import History, Observation, TrialState, seen_keys


def test_rungs_sit_at_min_times_powers_of_eta_below_max() -> None:
    assert Fidelity("epoch", 1, 52).rungs() == [1, 3, 9, 27]
    assert Fidelity("epoch", 2, 18).rungs() == [2, 6]
    assert Fidelity("epoch", 0, 4).rungs() == [1, 3]
    fidelity = Fidelity("epoch", 1, 52)
    every_step = [fidelity.rung_crossed(s, s - 1 if s else None) for s in range(0, 53)]
    assert [r for r in every_step if r is not None] == [1, 3, 9, 27]


@pytest.mark.parametrize("every", [1, 2, 4, 5, 10, 25])
def test_a_job_reporting_every_k_steps_reaches_each_rung_once_at_its_first_report_past_it(
        every: int) -> None:
    fidelity = Fidelity("epoch", 1, 52)
    reached: int | None = None
    hits: list[tuple[int, int]] = []
    for step in range(every, 53, every):
        rung = fidelity.rung_crossed(step, reached)
        if rung is not None:
            hits.append((rung, step))
        reached = step
    rungs = [r for r, _ in hits]
    assert rungs == sorted(set(rungs)) and set(rungs) <= {1, 3, 9, 27}
    # every rung some report got to counts, at the first report at or past it; a report that
    # skips rungs counts only at the last one it passed
    for rung, step in hits:
        assert step >= rung and step - every < rung
    assert rungs[-1] == 27  # every job reports past the last rung before the maximum
    assert fidelity.rung_points([(s, float(s)) for s in range(every, 53, every)]) == [
        (r, s, float(s)) for r, s in hits]


def test_out_of_order_and_repeated_steps_reach_no_rung_twice() -> None:
    fidelity = Fidelity("epoch", 1, 52)
    assert fidelity.rung_crossed(3, 4) is None  # rung 3 was reached at step 4 already
    assert fidelity.rung_crossed(9, 9) is None
    assert fidelity.rung_crossed(10, 4) == 9
    assert Fidelity("epoch", 0, 10).rung_crossed(0, None) is None  # below the first rung
    # a report at the maximum ends the training: nothing is left to stop, whatever it skipped
    assert fidelity.rung_crossed(52, None) is None and fidelity.rung_crossed(52, 9) is None
    assert Fidelity("epoch", 12, 200).rung_points([(12, 0.5), (200, 0.9)]) == [(12, 12, 0.5)]


@pytest.mark.parametrize("others", [[], [0.1], [0.1, 0.2]])
def test_fewer_than_eta_values_never_stop(others: list[float]) -> None:
    assert len(others) < ETA
    assert not decide(1e9, others, "minimize", 9).should_stop


def test_bottom_values_at_a_rung_stop_and_top_ones_go_on() -> None:
    others = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]  # with the newcomer 7 values: the best 2 go on
    stop = decide(0.71, others, "minimize", 9)
    assert stop.should_stop
    assert stop.reason == "rung 9: 0.71 is not in the best 2 of 7 values at this step (cut 0.2)"
    late = decide(0.71, others, "minimize", 9, step=10)
    assert late.reason == ("rung 9 (reported at step 10): 0.71 is not in the best 2 of 7 values "
                           "at this rung (cut 0.2)")
    assert not decide(0.2, others, "minimize", 9).should_stop  # ties with the cut go on
    assert not decide(0.05, others, "minimize", 9).should_stop


def test_maximize_keeps_the_largest_values() -> None:
    others = [0.1, 0.2, 0.3]
    assert decide(0.05, others, "maximize", 3).should_stop
    assert not decide(0.9, others, "maximize", 3).should_stop
    assert decide(0.9, others, "minimize", 3).should_stop  # the same value, the other way


def test_stopped_trials_are_seen_but_never_complete() -> None:
    stopped = Observation(0, {"x": 1}, TrialState.STOPPED, 0.5)
    history = History("minimize", (stopped,))
    assert TrialState.STOPPED.finished
    assert history.complete == () and history.best() is None and history.running == ()
    assert len(seen_keys(history)) == 1


def test_hedge_trials_are_never_stopped_and_the_others_are() -> None:
    from service.engine.early_stopping import HEDGE_EVERY, is_hedge

    others = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    hedges = [n for n in range(3 * HEDGE_EVERY) if is_hedge(n)]
    assert len(hedges) == 3
    for number in range(3 * HEDGE_EVERY):
        stopped = decide(0.9, others, "minimize", 9, number=number).should_stop
        assert stopped is (number not in hedges)

