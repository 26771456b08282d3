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


def run_with_early_stopping(seed: int, trials: int = 40,
                            every: int = 1) -> tuple[Optimizer, list[int]]:
    """A toy study whose curves decay towards the final loss ``(x - 0.3)**2``: a trial's value
    at epoch ``s`` is ``final + 1/s``, so every rung ranks trials as their finals do. Trials
    report every ``every`` epochs, and at the last."""
    from service.engine.early_stopping import Fidelity

    opt = Optimizer({"params": [{"name": "x", "type": "float", "low": -3, "high": 3}]},
                    seed=seed, fidelity=Fidelity("epoch", 1, 27))
    epochs = []
    for _ in range(trials):
        s = opt.ask()
        final = (s.params["x"] - 0.3) ** 2
        for step in [*range(every, 27, every), 27]:
            if opt.report(s, step, final + 1.0 / step).should_stop:
                opt.tell(s, state="stopped")
                break
        else:
            opt.tell(s, final + 1.0 / 27)
        epochs.append(step)
    return opt, epochs


def test_early_stopping_stops_the_bad_trials_and_learns_from_them() -> None:
    opt, epochs = run_with_early_stopping(seed=0)
    states = [t.state for t in opt.history.trials]
    stopped = [t for t in opt.history.trials if t.state is TrialState.STOPPED]
    complete = opt.history.complete
    assert len(stopped) >= 10 and sum(epochs) < 0.6 * 27 * len(states)
    best = opt.best()
    assert best is not None and best.state is TrialState.COMPLETE
    assert abs(best.params["x"] - 0.3) < 0.1
    # no stopped trial would have ended better than the best complete one
    assert min((t.params["x"] - 0.3) ** 2 for t in stopped) + 1 / 27 >= best.value
    assert all(t.curve for t in stopped) and all(t.curve for t in complete)
    # a stopped trial's reason says what the rung saw; reports are answered again alike
    assert opt.report(stopped[0].number, stopped[0].curve[-1][0],
                      stopped[0].curve[-1][1]).should_stop


@pytest.mark.parametrize("every", [2, 5])
def test_trials_reporting_between_rungs_are_judged_at_their_first_report_past_each(
        every: int) -> None:
    opt, epochs = run_with_early_stopping(seed=0, every=every)
    stopped = [t for t in opt.history.trials if t.state is TrialState.STOPPED]
    assert len(stopped) >= 10 and sum(epochs) < 0.6 * 27 * len(epochs)
    rungs = {1, 3, 9}  # Fidelity("epoch", 1, 27)
    assert all(t.curve and {r for r, _ in t.curve} <= rungs for t in opt.history.trials)
    # a stop happens at the report that reached the rung, which its curve keeps at the rung
    for t, step in zip(opt.history.trials, epochs, strict=True):
        if t.state is TrialState.STOPPED:
            rung, value = t.curve[-1]
            assert rung <= step < rung + every and value == (t.params["x"] - 0.3) ** 2 + 1 / step


def test_early_stopping_decisions_are_deterministic_for_a_seed() -> None:
    assert run_with_early_stopping(seed=3)[1] == run_with_early_stopping(seed=3)[1]
