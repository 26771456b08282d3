"""study.optimize: exactly n_trials, failures recorded, exceptions surfaced, progress shown."""

from __future__ import annotations

import io
import threading
import time

import pytest

from dyesp_client import Infeasible, Trial
from dyesp_client._optimize import Progress

SPACE = [{"name": "x", "type": "float", "low": -5.0, "high": 5.0}]


@pytest.fixture
def study(make_client):
    return make_client(heartbeat_interval=None).create_study("opt", SPACE)


def quadratic(trial: Trial) -> float:
    return (trial.params["x"] - 2.0) ** 2


def test_workers_complete_exactly_n_distinct_trials(study, fake_server) -> None:
    def fn(trial: Trial) -> float:
        time.sleep(0.002)  # let the workers interleave
        return quadratic(trial)

    best = study.optimize(fn, n_trials=20, n_workers=3, show_progress=False)
    trials = study.trials()
    assert len(trials) == 20 and {t.state for t in trials} == {"complete"}
    assert fake_server.count("ask") == 20 and fake_server.count("tell") == 20
    assert best is not None and best.value == min(t.value for t in trials)


def test_each_worker_keeps_one_client_id(study, fake_server) -> None:
    all_started = threading.Barrier(3)

    def fn(trial: Trial) -> float:
        if trial.number < 3:  # hold the first trials until every worker has one
            all_started.wait(timeout=5)
        return quadratic(trial)

    study.optimize(fn, n_trials=9, n_workers=3, show_progress=False)
    ids = [body["client_id"] for body in fake_server.bodies("ask")]
    assert len(set(ids)) == 3


def test_caught_exceptions_fail_the_trial_and_the_run_goes_on(study) -> None:
    def fn(trial: Trial) -> float:
        if trial.number % 2:
            raise RuntimeError("loader died")
        return quadratic(trial)

    study.optimize(fn, n_trials=6, show_progress=False, catch=(RuntimeError,))
    trials = study.trials()
    assert [t.state for t in trials] == ["complete", "failed"] * 3
    assert {t.reason for t in trials if t.state == "failed"} == {"RuntimeError('loader died')"}


def test_infeasible_is_recorded_with_its_reason(study) -> None:
    def fn(trial: Trial) -> float:
        raise Infeasible("does not fit in memory")

    assert study.optimize(fn, n_trials=2, show_progress=False) is None
    assert [(t.state, t.reason) for t in study.trials()] == [
        ("infeasible", "does not fit in memory")] * 2


def test_an_uncaught_exception_fails_the_trial_and_stops_the_run(study, fake_server) -> None:
    def fn(trial: Trial) -> float:
        if trial.number == 2:
            raise KeyError("bug")
        return quadratic(trial)

    with pytest.raises(KeyError, match="bug"):
        study.optimize(fn, n_trials=10, show_progress=False, catch=(ValueError,))
    assert [t.state for t in study.trials()] == ["complete", "complete", "failed"]


def test_an_uncaught_exception_in_a_worker_thread_is_reraised(study) -> None:
    def fn(trial: Trial) -> float:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        study.optimize(fn, n_trials=10, n_workers=2, show_progress=False, catch=())
    trials = study.trials()
    assert 1 <= len(trials) <= 2 and {t.state for t in trials} == {"failed"}


def test_a_non_finite_or_non_numeric_result_fails_the_trial(study) -> None:
    results = iter([float("nan"), None, "0.5", 1.0])
    study.optimize(lambda trial: next(results), n_trials=4, show_progress=False)
    assert [(t.state, t.value) for t in study.trials()] == [
        ("failed", None), ("failed", None), ("complete", 0.5), ("complete", 1.0)]


def test_arguments_state_what_must_hold(study) -> None:
    with pytest.raises(ValueError, match="`n_workers >= 1` must hold, got n_workers=0"):
        study.optimize(quadratic, n_trials=1, n_workers=0)
    with pytest.raises(ValueError, match="`n_trials >= 0` must hold"):
        study.optimize(quadratic, n_trials=-1)


def test_progress_goes_to_stderr_only_when_asked(study, capsys) -> None:
    study.optimize(quadratic, n_trials=3, show_progress=False)
    assert capsys.readouterr().err == ""
    study.optimize(quadratic, n_trials=3)
    err = capsys.readouterr().err
    assert "dyesp 3/3 trials | best " in err


def test_progress_line_tracks_best_by_direction_and_outcomes(study) -> None:
    stream = io.StringIO()
    progress = Progress(20, "maximize", stream=stream)
    trials = study.ask(3)
    trials[0].tell(1.0)
    trials[1].tell(5.0)
    trials[2].fail()
    for trial in trials:
        progress.update(trial)
    assert progress.line().startswith("dyesp 3/20 trials | best 5 | failed 1 | infeasible 0")
    assert stream.getvalue().count("\n") == 1  # not a terminal: a line per tenth of the run
