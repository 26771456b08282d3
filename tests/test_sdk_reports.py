"""Early stopping end to end: the real SDK (report, TrialStopped, stop, curve) against the real
app in-process, through `client_factory` (tests/conftest.py).

The assertions hold for any stop rule the server applies: a trial is stopped exactly when one of
its reports was answered ``should_stop``, and a stopped trial keeps its last reported value and
step. The curves are shaped so that successive halving stops the bad configurations: the good
ones are enqueued first and set the bar at the first rung.
"""

from __future__ import annotations

import pytest
from dyesp_client import APIError, Trial, TrialStopped

FIDELITY = {"name": "epoch", "min": 1, "max": 10}
SPACE = [{"name": "quality", "type": "float", "low": 0.0, "high": 1.0}]
GOOD = [0.9, 0.8, 0.85]
BAD = [0.1, 0.2, 0.15, 0.05]


def accuracy(quality: float, epoch: int) -> float:
    return quality * (1.0 - 0.5 ** epoch)


def test_bad_configurations_are_stopped_and_keep_their_last_report(client_factory) -> None:
    with client_factory(heartbeat_interval=None) as client:
        study = client.create_study("early-stop", SPACE, direction="maximize", seed=0,
                                    fidelity=FIDELITY)
        assert study.fidelity == FIDELITY
        assert client.get_study(study.id).fidelity == FIDELITY
        for quality in GOOD + BAD:
            study.enqueue({"quality": quality})
        told_to_stop: dict[int, tuple[int, float, str | None]] = {}
        reported: dict[int, list[tuple[int, float]]] = {}

        def objective(trial: Trial) -> float:
            value = 0.0
            for epoch in range(FIDELITY["min"], FIDELITY["max"] + 1):
                value = accuracy(trial.params["quality"], epoch)
                reported.setdefault(trial.id, []).append((epoch, value))
                if trial.report(epoch, value):
                    assert trial.should_stop and trial.stop_reason
                    told_to_stop[trial.id] = (epoch, value, trial.stop_reason)
                    raise TrialStopped()
            return value

        best = study.optimize(objective, n_trials=len(GOOD + BAD), show_progress=False)
        trials = study.trials()
        policy = study.stopping_policy()

    assert len(trials) == len(GOOD + BAD)
    assert {t.id for t in trials if t.state == "stopped"} == set(told_to_stop)
    assert {t.state for t in trials} <= {"complete", "stopped"}
    assert told_to_stop, "successive halving stopped none of the bad configurations"
    for trial in trials:
        assert trial.intermediate == reported[trial.id][-100:]
        assert trial.last_step == reported[trial.id][-1][0]
        if trial.state == "stopped":
            epoch, value, reason = told_to_stop[trial.id]
            assert trial.params["quality"] in BAD
            assert (trial.last_step, trial.value, trial.reason) == (epoch, value, reason)
        else:
            assert trial.last_step == FIDELITY["max"]
            assert trial.value == accuracy(trial.params["quality"], FIDELITY["max"])
    assert all(t.state == "complete" for t in trials if t.params["quality"] in GOOD)
    assert best is not None and best.params["quality"] == max(GOOD)
    # calibrated on every finished curve: the complete ones paired rung values with finals
    assert policy["curves"] == len(trials)
    assert all(r["pairs"] == sum(t.state == "complete" for t in trials)
               for r in policy["rules"])


def test_report_is_idempotent_and_the_curve_pages(client_factory) -> None:
    with client_factory(heartbeat_interval=None) as client:
        study = client.create_study("curve", SPACE, fidelity=FIDELITY)
        trial = study.ask()
        for epoch in range(1, 8):
            assert trial.report(epoch, epoch / 10) is False  # alone: never stopped
        assert trial.report(7, 0.7) is False  # the same report again is harmless
        with pytest.raises(APIError) as caught:
            trial.report(7, 0.9)
        assert caught.value.status == 409
        assert trial.curve(page_size=3) == [(e, e / 10) for e in range(1, 8)]
        assert study.trial_curve(trial.id, page_size=1000) == trial.curve()
        trial.stop("enough")
        assert (trial.state, trial.value, trial.last_step, trial.reason) == (
            "stopped", 0.7, 7, "enough")
        with pytest.raises(APIError) as caught:
            trial.report(8, 0.8)
        assert caught.value.status == 409


def test_a_stop_without_any_report(client_factory) -> None:
    with client_factory(heartbeat_interval=None) as client:
        study = client.create_study("no-report", SPACE, fidelity=FIDELITY)
        trial = study.ask()
        with pytest.raises(APIError) as caught:
            trial.stop()  # nothing to keep: the server refuses
        assert caught.value.status == 409

        def objective(trial: Trial) -> float:
            raise TrialStopped()

        assert study.optimize(objective, n_trials=1, show_progress=False) is None
        states = [t.state for t in study.trials()]
        assert states.count("failed") == 1 and "stopped" not in states
