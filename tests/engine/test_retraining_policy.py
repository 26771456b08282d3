"""One retraining rule for the service and the in-process optimizer, and the activation rule."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from service.engine.history import History, Observation, ProposalInfo, TrialState
from service.engine.optimizer import Optimizer
from service.engine.retraining_policy import (
    ACTIVATION_SLACK,
    MIN_HOLDOUT,
    Replay,
    RetrainPolicy,
    ScheduledTraining,
    arrival_order,
    holdout_split,
    recent_trust,
    results_up_to,
    should_activate,
    training_schedule,
)
from service.engine.trust import TRUST_WINDOW, measure_trust
from tests.engine.conftest import SPACES, DistanceModel, toy_loss


@pytest.mark.parametrize("n_complete, trained_on, trust, pretrain, due", [
    (9, 0, None, False, False), (10, 0, None, False, True),  # enough results to start
    (14, 10, None, False, False), (15, 10, None, False, True),  # then min_new more
    (1099, 1000, None, False, False), (1100, 1000, None, False, True),  # or growth x trained_on
    (1005, 1000, 0.2, False, True), (1005, 1000, 0.21, False, False),  # trust at the floor
    (1004, 1000, -1.0, False, False),  # ... still after min_new results
    (0, 0, None, True, True),  # a study with a prior pretrains before any result
])
def test_is_due(n_complete: int, trained_on: int, trust: float | None, pretrain: bool,
                due: bool) -> None:
    assert RetrainPolicy().is_due(n_complete, trained_on, trust, pretrain) is due


def test_growth_rounds_down_as_the_service_always_did() -> None:
    policy = RetrainPolicy(min_trials=1, min_new=1, growth=0.15)
    assert policy.is_due(110, 100, None) is False  # int(0.15 x 100) = 15 > 10
    assert policy.is_due(115, 100, None) is True
    assert RetrainPolicy(min_new=1, growth=0.1).is_due(20, 19) is True  # int(1.9) = 1, not 2


def trial(number: int, state: TrialState, value: float | None = None,
          predicted: float | None = None) -> Observation:
    return Observation(number, {"x": number}, state, value,
                       proposal=ProposalInfo("parzen", 0.5, predicted))


def test_recent_trust_reads_only_the_latest_finished_trials() -> None:
    good = [trial(i, TrialState.COMPLETE, float(i), 1.0 - i / 100) for i in range(30)]
    noise = [trial(30 + i, TrialState.RUNNING, predicted=0.5) for i in range(5)]
    bad = [trial(35 + i, TrialState.COMPLETE, float(i), i / 100) for i in range(TRUST_WINDOW)]
    history = History("minimize", tuple(good + noise + bad))
    assert recent_trust(history) == pytest.approx(-1.0)  # only the last window, all "bad"
    assert recent_trust(History("minimize", tuple(good))) == pytest.approx(1.0)
    latest = History("minimize", tuple(bad))
    assert recent_trust(history) == measure_trust(latest)  # what the service reads from its rows


def test_holdout_split_keeps_the_newest_fifth_for_judging() -> None:
    history = History("minimize", tuple(trial(i, TrialState.COMPLETE, float(i))
                                        for i in range(5 * MIN_HOLDOUT)))
    fit, held = holdout_split(history, [t.number for t in history.trials])
    assert held is not None and len(held.trials) == MIN_HOLDOUT
    assert [t.number for t in fit.trials] == list(range(4 * MIN_HOLDOUT))
    small = History("minimize", history.trials[:5 * MIN_HOLDOUT - 1])
    assert holdout_split(small, [t.number for t in small.trials]) == (small, None)


def test_a_new_version_is_activated_unless_measurably_worse() -> None:
    assert should_activate(None, None) and should_activate(0.1, None)
    assert should_activate(0.5, 0.5 + ACTIVATION_SLACK)
    assert not should_activate(0.5, 0.5 + 2 * ACTIVATION_SLACK)


def test_the_optimizer_counts_complete_trials_as_the_service_does() -> None:
    """Infeasible results are labels for the model, but the rule counts complete trials only, as
    the service's count of complete rows does."""
    space = SPACES["float_only"]
    trained_on = []

    def trainer(training_set, previous):
        trained_on.append(len(opt.history.complete))
        return DistanceModel(space, {"x": 0.5, "y": 1.0})

    opt = Optimizer(space, seed=0, trainer=trainer)
    for i in range(24):
        s = opt.ask()
        if i % 3 == 2:
            opt.tell(s, None, state="infeasible")
        else:
            opt.tell(s, toy_loss(s.params))
    assert trained_on == [10, 15]  # 16 complete after 24 tells: never at 10 labelled ones


# --- the deterministic schedule ----------------------------------------------------------------

def _results(n: int, seed: int, misleading_from: int | None = None) -> History:
    """``n`` results arriving in a shuffled order (each trial's revision is its arrival), some
    infeasible, some stopped, some failed, predictions recorded from trial 12 on; from
    ``misleading_from`` the predictions rank the results backwards (the pruner's trust drops)."""
    rng = np.random.default_rng(seed)
    arrival = rng.permutation(n) + 1
    trials = []
    for i in range(n):
        states = [TrialState.COMPLETE] * 8 + [TrialState.INFEASIBLE, TrialState.STOPPED,
                                              TrialState.FAILED]
        state = states[rng.integers(len(states))]
        value = float(rng.normal()) if state in (TrialState.COMPLETE, TrialState.STOPPED) else None
        predicted = None
        if i >= 12 and value is not None:
            backwards = misleading_from is not None and arrival[i] >= misleading_from
            predicted = 1 / (1 + np.exp(-value if backwards else value))  # minimising: low good
        trials.append(Observation(i, {"x": i}, state, value,
                                  proposal=ProposalInfo("parzen", 0.5, predicted),
                                  revision=int(arrival[i])))
    return History("minimize", tuple(trials))


def _replayed_by_hand(policy: RetrainPolicy, history: History) -> list[tuple[int, int]]:
    """What a retrainer checking after every result would train: the policy asked on each
    prefix of the results in arrival order, trust measured by ``recent_trust`` on it (its
    "recent": the latest to arrive, which for one sequential client are the latest numbers)."""
    order = sorted((t for t in history.trials if t.state is not TrialState.FAILED),
                   key=lambda t: t.revision)
    due, trained_on = [], 0
    for k in range(1, len(order) + 1):
        prefix = History("minimize", tuple(order[:k]))
        n = len(prefix.complete)
        trust = recent_trust(prefix) if trained_on else None
        if n != trained_on and policy.is_due(n, trained_on, trust):
            due.append((n, k))
            trained_on = n
    return due


@pytest.mark.parametrize("seed, misleading_from", [(0, None), (1, None), (2, 90), (3, 130)])
def test_the_schedule_is_the_policy_asked_after_every_result_in_arrival_order(
        seed: int, misleading_from: int | None) -> None:
    policy = RetrainPolicy(min_trials=10, min_new=5, growth=0.1)
    history = _results(220, seed, misleading_from)
    due, _ = training_schedule(policy, history)
    assert len(due) > 5
    assert [(s.n_results, s.arrived) for s in due] == _replayed_by_hand(policy, history)


def test_a_misleading_pruner_makes_the_schedule_retrain_sooner() -> None:
    policy = RetrainPolicy(min_trials=10, min_new=5, growth=0.5)
    trusted, _ = training_schedule(policy, _results(220, 4))
    misled, _ = training_schedule(policy, _results(220, 4, misleading_from=60))
    assert len(misled) > len(trusted)


@pytest.mark.parametrize("cut", [15, 40, 77, 150, 219])
def test_resuming_the_replay_finds_what_the_whole_replay_finds(cut: int) -> None:
    """From where an earlier replay stopped, or from a scheduled training alone (a stored
    version's n_train): the same trainings after it."""
    policy = RetrainPolicy(min_trials=10, min_new=5, growth=0.1)
    history = _results(220, 5, misleading_from=100)
    whole, end = training_schedule(policy, history)
    order = arrival_order(history)
    earlier = replace(history, trials=tuple(sorted(order[:cut], key=lambda t: t.number)))
    first, replay = training_schedule(policy, earlier)
    assert replay is not None
    rest, resumed_end = training_schedule(policy, history, resume=replay)
    assert first + rest == whole and resumed_end == end
    for i, scheduled in enumerate(whole):
        after, _ = training_schedule(policy, history, resume=Replay(scheduled.n_results))
        assert after == whole[i + 1:]


def test_a_resume_point_past_the_history_replays_it_all() -> None:
    """An ask on an older snapshot than the one the replay was made on."""
    policy = RetrainPolicy()
    history = _results(120, 6)
    whole, end = training_schedule(policy, history)
    older = replace(history, trials=tuple(sorted(arrival_order(history)[:60],
                                                 key=lambda t: t.number)))
    mine, _ = training_schedule(policy, older, resume=end)
    assert mine == tuple(s for s in whole if s.arrived <= 60)


def test_a_study_with_a_prior_is_first_scheduled_before_any_result() -> None:
    due, replay = training_schedule(RetrainPolicy(), History("minimize"), pretrain=True)
    assert due == (ScheduledTraining(0, 0),) and replay == Replay(0, 0, None)
    assert training_schedule(RetrainPolicy(), History("minimize")) == ((), None)


def test_a_scheduled_training_learns_from_the_first_results_to_arrive() -> None:
    history = _results(60, 7)
    (first, *_), _ = training_schedule(RetrainPolicy(), history)
    learnt = results_up_to(history, first)
    arrived = arrival_order(history)[:first.arrived]
    assert {t.number for t in learnt.trials} == {t.number for t in arrived}
    assert [t.number for t in learnt.trials] == sorted(t.number for t in arrived)
    assert len(learnt.complete) == first.n_results and not learnt.pruned
