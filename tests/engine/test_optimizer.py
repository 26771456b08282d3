"""The in-process ask/tell loop: bookkeeping, failure states and the retraining schedule."""

from __future__ import annotations

import pytest

from service.engine.history import TrialState
from service.engine.optimizer import Optimizer
from tests.engine.conftest import SPACES, DistanceModel, toy_loss


def test_tell_records_values_and_states() -> None:
    opt = Optimizer(SPACES["mixed_conditional"], direction="maximize", seed=0)
    a, b, c = opt.ask(), opt.ask(), opt.ask()
    opt.tell(a, 1.0)
    opt.tell(b, None, state="infeasible")
    opt.tell(c, None)  # no value, no state: the infrastructure failed
    states = [t.state for t in opt.history.trials]
    assert states == [TrialState.COMPLETE, TrialState.INFEASIBLE, TrialState.FAILED]
    with pytest.raises(ValueError, match="already"):
        opt.tell(a, 2.0)
    with pytest.raises(ValueError, match="finite"):
        opt.tell(opt.ask(), float("nan"), state="complete")


def test_ask_many_returns_distinct_configurations() -> None:
    opt = Optimizer(SPACES["categorical_only"], seed=0)
    batch = opt.ask_many(6)
    assert len({tuple(sorted(s.params.items())) for s in batch}) == 6
    assert [s.number for s in batch] == list(range(6))


def test_trainer_runs_on_schedule_and_its_model_is_used() -> None:
    space = SPACES["float_only"]
    calls = []

    def trainer(training_set, previous):
        calls.append((training_set.n_trials, previous))
        return DistanceModel(space, {"x": 0.5, "y": 1.0})

    opt = Optimizer(space, seed=0, trainer=trainer, options={"retrain": {"min_new": 5}})
    for _ in range(30):
        s = opt.ask()
        opt.tell(s, toy_loss(s.params))
    assert [n for n, _ in calls] == [10, 15, 20, 25, 30]
    assert calls[0][1] is None and calls[1][1] is not None  # the previous model is passed on
    assert opt.ask().proposal.predicted is not None


def test_pruner_ablation_never_trains() -> None:
    opt = Optimizer(SPACES["float_only"], seed=0, trainer=lambda *a: pytest.fail("trained"),
                    options={"pruner": False})
    for _ in range(15):
        s = opt.ask()
        opt.tell(s, 1.0)
