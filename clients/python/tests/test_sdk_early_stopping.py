"""Early stopping: report, should_stop, TrialStopped in optimize, stopped trials, curves."""

from __future__ import annotations

import pytest

from dyesp_client import APIError, Client, RetryPolicy, Study, Trial, TrialStopped
from dyesp_client._study import STOPPED_BEFORE_REPORT
from sdk_fakes import API_KEY, ScriptedHTTP, ScriptedResponse, problem, study_json, trial_json

SPACE = [{"name": "x", "type": "float", "low": -5.0, "high": 5.0}]
EPOCHS = {"name": "epoch", "min": 1, "max": 10}


def scripted(*script: ScriptedResponse) -> tuple[ScriptedHTTP, Trial, list[float]]:
    """A running trial bound to a scripted transport (no heartbeats, instant retries)."""
    sleeps: list[float] = []
    http = ScriptedHTTP(*script)
    client = Client("http://dyesp.test", api_key=API_KEY, http_client=http,
                    retries=RetryPolicy(retries=3, sleep=sleeps.append), heartbeat_interval=None)
    return http, Trial(Study(client, study_json()), trial_json()), sleeps


def answer(should_stop: bool, reason: str | None = None) -> ScriptedResponse:
    return ScriptedResponse(200, {"should_stop": should_stop, "reason": reason})


@pytest.fixture
def study(make_client):
    return make_client(heartbeat_interval=None).create_study("es", SPACE, fidelity=EPOCHS)


# --- report ----------------------------------------------------------------------------------

def test_report_posts_step_and_value_and_returns_the_verdict() -> None:
    http, trial, _ = scripted(answer(False), answer(True, "below the median at epoch 2"))
    assert trial.report(1, 0.25) is False and trial.should_stop is False
    assert trial.stop_reason is None
    assert trial.report(2, 0.5) is True
    assert trial.should_stop is True and trial.stop_reason == "below the median at epoch 2"
    method, url, kwargs = http.calls[0]
    assert (method, url) == ("POST", "http://dyesp.test/v1/studies/s1/trials/1/report")
    assert kwargs["json"] == {"step": 1, "value": 0.25}
    assert trial.last_step == 2 and trial.intermediate == [(1, 0.25), (2, 0.5)]


def test_report_is_retried_on_a_5xx_because_it_is_idempotent() -> None:
    http, trial, sleeps = scripted(problem(503), problem(502), answer(True, "pruned"))
    assert trial.report(3, 0.1) is True
    assert len(http.calls) == 3 and len(sleeps) == 2
    assert {str(c[2]["json"]) for c in http.calls} == {str({"step": 3, "value": 0.1})}


def test_report_conflict_is_raised_at_once() -> None:
    http, trial, _ = scripted(problem(409, "step 3 was reported with 0.2"))
    with pytest.raises(APIError) as caught:
        trial.report(3, 0.1)
    assert caught.value.status == 409 and len(http.calls) == 1


@pytest.mark.parametrize(("step", "value", "message"), [
    (1, float("nan"), "finite"), (1, float("inf"), "finite"), (1.5, 0.1, "integer"),
    (True, 0.1, "integer"),
])
def test_report_refuses_bad_input_without_sending(step, value, message) -> None:
    http, trial, _ = scripted()
    with pytest.raises(ValueError, match=message):
        trial.report(step, value)
    assert http.calls == []


def test_stop_tells_stopped_with_the_servers_reason() -> None:
    stopped = trial_json(state="stopped", value=0.5, last_step=2, reason="pruned",
                         intermediate=[[1, 0.25], [2, 0.5]])
    http, trial, _ = scripted(answer(True, "pruned"), ScriptedResponse(200, stopped))
    trial.report(2, 0.5)
    assert trial.stop() is trial
    assert http.calls[1][1].endswith("/trials/1/tell")
    assert http.calls[1][2]["json"] == {"state": "stopped", "reason": "pruned"}
    assert (trial.state, trial.value, trial.last_step) == ("stopped", 0.5, 2)
    assert trial.should_stop is True  # the last answer survives the re-read


# --- parsing ---------------------------------------------------------------------------------

def test_trials_parse_intermediate_last_step_and_the_stopped_state() -> None:
    _, trial, _ = scripted()
    parsed = Trial(trial.study, trial_json(state="stopped", value=0.4, last_step=7,
                                           intermediate=[[6, 0.5], [7, 0.4]]))
    assert parsed.state == "stopped" and parsed.last_step == 7 and parsed.value == 0.4
    assert parsed.intermediate == [(6, 0.5), (7, 0.4)]
    old = Trial(trial.study, {k: v for k, v in trial_json().items()
                              if k not in ("intermediate", "last_step")})
    assert old.intermediate == [] and old.last_step is None  # an older server's trial


def test_create_study_sends_fidelity_and_reads_it_back(study, fake_server) -> None:
    assert fake_server.bodies("create")[0]["fidelity"] == EPOCHS
    assert study.fidelity == EPOCHS
    assert Study(study.client, study_json()).fidelity is None


# --- optimize --------------------------------------------------------------------------------

def curve_objective(trial: Trial) -> float:
    value = 0.0
    for epoch in range(1, 6):
        value = epoch * (abs(trial.params["x"]) + 0.1)
        if trial.report(epoch, value):
            raise TrialStopped()
    return value


def test_optimize_tells_a_stopped_trial_stopped_with_the_reason(study, fake_server) -> None:
    fake_server.stop_rule = lambda t, step, value: (
        f"stopped at {step}" if t["number"] % 2 and step == 2 else None)
    study.optimize(curve_objective, n_trials=4, show_progress=False)
    trials = study.trials()
    assert [t.state for t in trials] == ["complete", "stopped"] * 2
    for trial in trials:
        if trial.state == "stopped":
            assert trial.reason == "stopped at 2" and trial.last_step == 2
            assert trial.value == trial.intermediate[-1][1]
        else:
            assert trial.last_step == 5 and len(trial.intermediate) == 5
    tells = fake_server.bodies("tell")
    assert {"state": "stopped", "reason": "stopped at 2"} in tells


def test_an_explicit_reason_wins_over_the_servers(study, fake_server) -> None:
    fake_server.stop_rule = lambda t, step, value: "server reason"

    def fn(trial: Trial) -> float:
        trial.report(1, 0.3)
        raise TrialStopped("my reason")

    study.optimize(fn, n_trials=1, show_progress=False)
    (trial,) = study.trials()
    assert (trial.state, trial.reason, trial.value) == ("stopped", "my reason", 0.3)


def test_trial_stopped_before_any_report_fails_the_trial_with_a_reason(study,
                                                                       fake_server) -> None:
    def fn(trial: Trial) -> float:
        raise TrialStopped()

    assert study.optimize(fn, n_trials=2, show_progress=False) is None
    assert [(t.state, t.reason) for t in study.trials()] == [
        ("failed", STOPPED_BEFORE_REPORT)] * 2
    assert all(body["state"] == "failed" for body in fake_server.bodies("tell"))


def test_trial_stopped_is_not_caught_as_a_failure_even_with_catch_empty(study) -> None:
    def fn(trial: Trial) -> float:
        trial.report(1, 1.0)
        raise TrialStopped()

    study.optimize(fn, n_trials=1, show_progress=False, catch=())
    assert [t.state for t in study.trials()] == ["stopped"]


def test_a_trial_used_as_a_context_manager_records_trial_stopped(study) -> None:
    with study.ask() as trial:
        trial.report(1, 0.7)
        raise TrialStopped()
    assert trial.state == "stopped" and trial.value == 0.7 and trial.last_step == 1
    with pytest.raises(TrialStopped), study.ask() as other:  # a mistake stays loud
        raise TrialStopped()
    assert other.state == "failed" and other.reason == STOPPED_BEFORE_REPORT


def test_progress_counts_stopped_trials(study, fake_server) -> None:
    from dyesp_client._optimize import Progress

    fake_server.stop_rule = lambda t, step, value: "stop"
    study.optimize(curve_objective, n_trials=2, show_progress=False)
    progress = Progress(2, "minimize")
    for trial in study.trials():
        progress.update(trial)
    assert "| stopped 2 |" in progress.line() and "best -" in progress.line()


# --- curve -----------------------------------------------------------------------------------

def test_curve_walks_every_page(study, fake_server) -> None:
    trial = study.ask()
    for step in range(1, 8):
        trial.report(step, step / 10)
    assert trial.curve(page_size=3) == [(s, s / 10) for s in range(1, 8)]
    assert fake_server.count("curve") == 3
    assert study.trial_curve(trial.id) == trial.curve()


def test_curve_sends_offset_and_limit_and_stops_on_an_empty_page() -> None:
    page = {"points": [[1, 0.5], [2, 0.25]], "total": 5, "offset": 0, "limit": 2}
    http, trial, _ = scripted(ScriptedResponse(200, page),
                              ScriptedResponse(200, {**page, "points": [], "offset": 2}))
    assert trial.curve(page_size=2) == [(1, 0.5), (2, 0.25)]
    assert [c[2]["params"] for c in http.calls] == [{"offset": 0, "limit": 2},
                                                    {"offset": 2, "limit": 2}]
    assert http.calls[0][1].endswith("/v1/studies/s1/trials/1/curve")
