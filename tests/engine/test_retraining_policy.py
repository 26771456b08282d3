"""One retraining rule for the service and the in-process optimizer, and the activation rule."""

from __future__ import annotations

import pytest

from service.engine.history import History, Observation, ProposalInfo, TrialState
from service.engine.optimizer import Optimizer
from service.engine.retraining_policy import (
    ACTIVATION_SLACK,
    MIN_HOLDOUT,
    RetrainPolicy,
    holdout_split,
    recent_trust,
    should_activate,
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
