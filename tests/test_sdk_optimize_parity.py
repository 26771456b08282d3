"""study.optimize behaves as Optuna's: catch=() by default, timeout, callbacks, study.stop().

The real SDK against the real app in-process (`client_factory`, tests/conftest.py), on SQLite and
PostgreSQL. No assertion depends on timing: a timeout is checked by what it must and must not do
(fewer trials than asked, none left running), never by how long the run took.
"""

from __future__ import annotations

import threading
import time

import pytest
from dyesp_client import Study, Trial

SPACE = [{"name": "x", "type": "float", "low": -5.0, "high": 5.0}]


def quadratic(trial: Trial) -> float:
    return (trial.params["x"] - 2.0) ** 2


@pytest.fixture
def study(client_factory) -> Study:
    return client_factory(heartbeat_interval=None).create_study("parity", SPACE, seed=0)


def test_a_bug_in_the_objective_fails_its_trial_and_ends_the_run(study: Study) -> None:
    def objective(trial: Trial) -> float:
        if trial.number == 2:
            return {"a": 1}["missing"]  # a KeyError: a bug, not a bad configuration
        return quadratic(trial)

    with pytest.raises(KeyError, match="missing"):
        study.optimize(objective, n_trials=10, show_progress=False)
    trials = study.trials()
    assert [t.state for t in trials] == ["complete", "complete", "failed"]
    assert trials[2].reason == "KeyError('missing')"


def test_other_workers_finish_their_trial_before_the_error_is_raised(study: Study) -> None:
    first_failed = threading.Event()

    def objective(trial: Trial) -> float:
        if trial.number == 0:
            raise ValueError("boom")
        first_failed.wait(timeout=30)  # still running when the other worker's error arrives
        return quadratic(trial)

    def signal_first_failure(trial: Trial) -> float:
        try:
            return objective(trial)
        except ValueError:
            first_failed.set()
            raise

    with pytest.raises(ValueError, match="boom"):
        study.optimize(signal_first_failure, n_trials=20, n_workers=2, show_progress=False)
    trials = study.trials()
    assert "running" not in {t.state for t in trials}
    by_state = {t.state: t for t in trials}
    assert by_state["failed"].reason == "ValueError('boom')"
    assert len(trials) < 20


def test_exceptions_in_catch_fail_the_trial_and_the_run_goes_on(study: Study) -> None:
    def objective(trial: Trial) -> float:
        if trial.number % 2:
            raise RuntimeError("flaky loader")
        return quadratic(trial)

    study.optimize(objective, n_trials=4, show_progress=False, catch=RuntimeError)
    assert [(t.state, t.reason) for t in study.trials()] == [
        ("complete", None), ("failed", "RuntimeError('flaky loader')")] * 2


def test_timeout_stops_asking_and_lets_running_trials_finish(study: Study) -> None:
    def slower_than_the_timeout(trial: Trial) -> float:
        time.sleep(0.3)  # every trial asked is still running at the deadline
        return quadratic(trial)

    best = study.optimize(slower_than_the_timeout, n_trials=1000, timeout=0.1, n_workers=2,
                          show_progress=False)
    trials = study.trials()
    assert len(trials) < 1000
    assert {t.state for t in trials} <= {"complete"}  # none left running, none failed
    assert best is None if not trials else best.value == min(t.value for t in trials)


def test_timeout_without_n_trials(study: Study) -> None:
    study.optimize(quadratic, timeout=0.0, show_progress=False)
    assert study.trials() == []  # the deadline had passed before the first ask


def test_callbacks_see_every_finished_trial_in_its_worker_thread(study: Study) -> None:
    seen: list[tuple[str, int, str, str]] = []
    lock = threading.Lock()

    def record(callback_study: Study, trial: Trial) -> None:
        with lock:
            seen.append((callback_study.id, trial.id, trial.state, threading.current_thread().name))

    def objective(trial: Trial) -> float:
        if trial.number == 1:
            raise RuntimeError("caught")
        return quadratic(trial)

    study.optimize(objective, n_trials=6, n_workers=2, show_progress=False,
                   catch=(RuntimeError,), callbacks=[record])
    stored = {t.id: t.state for t in study.trials()}
    assert sorted((trial_id, state) for _, trial_id, state, _ in seen) == sorted(stored.items())
    assert {study_id for study_id, *_ in seen} == {study.id}
    assert {thread for *_, thread in seen} <= {"dyesp-worker-0", "dyesp-worker-1"}


def test_an_exception_in_a_callback_ends_the_run(study: Study) -> None:
    def broken(callback_study: Study, trial: Trial) -> None:
        if trial.number == 1:
            raise LookupError("callback bug")

    with pytest.raises(LookupError, match="callback bug"):
        study.optimize(quadratic, n_trials=10, show_progress=False, callbacks=[broken])
    assert [t.state for t in study.trials()] == ["complete", "complete"]


def test_stop_from_a_callback_ends_the_run_without_n_trials(study: Study) -> None:
    def stop_after_three(callback_study: Study, trial: Trial) -> None:
        if len(callback_study.trials()) >= 3:
            callback_study.stop()

    study.optimize(quadratic, callbacks=[stop_after_three], show_progress=False)
    assert [t.state for t in study.trials()] == ["complete"] * 3


def test_stop_from_the_objective_finishes_the_trial_and_asks_no_more(study: Study) -> None:
    def objective(trial: Trial) -> float:
        if trial.number == 3:
            study.stop()
        return quadratic(trial)

    study.optimize(objective, n_trials=100, show_progress=False)
    assert [t.state for t in study.trials()] == ["complete"] * 4
    study.optimize(quadratic, n_trials=2, show_progress=False)  # a stop ends one run only
    assert len(study.trials()) == 6


def test_stop_with_two_workers_lets_the_running_trials_finish(study: Study) -> None:
    def objective(trial: Trial) -> float:
        if trial.number == 3:
            study.stop()
        time.sleep(0.01)
        return quadratic(trial)

    study.optimize(objective, n_trials=100, n_workers=2, show_progress=False)
    trials = study.trials()
    assert 4 <= len(trials) < 100
    assert {t.state for t in trials} == {"complete"}


def test_stop_outside_optimize_is_an_error(study: Study) -> None:
    with pytest.raises(RuntimeError, match="from the objective or a callback"):
        study.stop()


def test_arguments_state_what_must_hold(study: Study) -> None:
    with pytest.raises(ValueError, match="`timeout >= 0` must hold, got timeout=-1"):
        study.optimize(quadratic, timeout=-1)
