"""Intermediate reports and early stopping over HTTP, on SQLite and PostgreSQL: the fidelity at
creation, reports (idempotent, durable, a heartbeat), the stop answer, the stopped state, curves."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.engine.early_stopping import Fidelity, policy_for
from service.usecases import reports
from service.usecases.ask_tell import reap_stale
from tests.api.test_hardening import custom_api, silence
from tests.conftest import MIXED_SPACE, unique_name

FIDELITY = {"name": "epoch", "min": 1, "max": 52}


def create(api: TestClient, **fields: Any) -> dict:
    response = api.post("/v1/studies", json={"name": unique_name("es"), "space": MIXED_SPACE,
                                             **fields})
    assert response.status_code == 201, response.text
    return response.json()


def ask(api: TestClient, study: dict, count: int = 1) -> list[dict]:
    response = api.post(f"/v1/studies/{study['id']}/ask", json={"count": count})
    assert response.status_code == 200, response.text
    return response.json()["trials"]


def trial_url(study: dict, trial: dict, what: str = "") -> str:
    return f"/v1/studies/{study['id']}/trials/{trial['id']}" + (f"/{what}" if what else "")


def report(api: TestClient, study: dict, trial: dict, step: int, value: float):
    return api.post(trial_url(study, trial, "report"), json={"step": step, "value": value})


@pytest.mark.parametrize(("fidelity", "field"), [
    ({"name": "epoch", "min": 5, "max": 5}, "fidelity.max"),
    ({"name": "epoch", "min": 9, "max": 3}, "fidelity.max"),
    ({"name": "epoch", "min": -1, "max": 3}, "fidelity.min"),
    ({"name": "epoch", "min": 1, "max": 10**6 + 1}, "fidelity.max"),
    ({"name": "", "min": 1, "max": 3}, "fidelity.name"),
    ({"name": "e" * 65, "min": 1, "max": 3}, "fidelity.name"),
    ({"name": "epoch", "min": 1.5, "max": 3}, "fidelity.min"),
    ({"name": "epoch", "min": 1}, "fidelity.max"),
])
def test_a_bad_fidelity_is_422_naming_the_field(api: TestClient, fidelity: dict,
                                                field: str) -> None:
    response = api.post("/v1/studies", json={"name": "es", "space": MIXED_SPACE,
                                             "fidelity": fidelity})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


def test_the_fidelity_is_returned_with_the_study(api: TestClient) -> None:
    study = create(api, fidelity=FIDELITY)
    assert study["fidelity"] == FIDELITY
    assert api.get(f"/v1/studies/{study['id']}").json()["fidelity"] == FIDELITY
    assert create(api)["fidelity"] is None


def test_reports_are_idempotent_and_conflicting_values_are_409(api: TestClient) -> None:
    study = create(api, fidelity=FIDELITY)
    (trial,) = ask(api, study)
    first = report(api, study, trial, 2, 0.5)
    assert first.status_code == 200 and first.json() == {"should_stop": False, "reason": None}
    assert report(api, study, trial, 2, 0.5).json() == first.json()
    conflict = report(api, study, trial, 2, 0.6)
    assert conflict.status_code == 409 and "already reported 0.5" in conflict.json()["detail"]
    got = api.get(trial_url(study, trial)).json()
    assert got["intermediate"] == [[2, 0.5]] and got["last_step"] == 2


def test_reports_without_a_fidelity_never_stop(api: TestClient) -> None:
    study = create(api)
    trials = ask(api, study, count=5)
    for i, trial in enumerate(trials):
        answer = report(api, study, trial, 1, float(i)).json()
        assert answer == {"should_stop": False, "reason": None}


@pytest.mark.parametrize(("body", "field"), [
    ('{"step": 1, "value": NaN}', "value"),
    ('{"step": 1, "value": Infinity}', "value"),
    ('{"step": 53, "value": 0.5}', "step"),
    ('{"step": 0, "value": 0.5}', "step"),
    ('{"step": -1, "value": 0.5}', "step"),
    ('{"step": 1.5, "value": 0.5}', "step"),
    ('{"step": 1}', "value"),
])
def test_bad_reports_are_422_naming_the_field(api: TestClient, body: str, field: str) -> None:
    study = create(api, fidelity=FIDELITY)
    (trial,) = ask(api, study)
    response = api.post(trial_url(study, trial, "report"), content=body,
                        headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    assert api.get(trial_url(study, trial)).json()["intermediate"] == []


def test_reports_on_waiting_or_finished_trials_are_409(api: TestClient) -> None:
    study = create(api, fidelity=FIDELITY)
    waiting = api.post(f"/v1/studies/{study['id']}/trials",
                       json={"params": ask(api, study)[0]["params"]}).json()
    assert report(api, study, waiting, 1, 0.5).status_code == 409
    (trial,) = ask(api, study)
    assert report(api, study, trial, 1, 0.5).status_code == 200
    assert api.post(trial_url(study, trial, "tell"), json={"value": 0.4}).status_code == 200
    assert report(api, study, trial, 2, 0.5).status_code == 409
    assert report(api, study, trial, 1, 0.5).status_code == 200  # the acknowledged one, again


def test_a_report_to_a_missing_trial_or_study_is_404_naming_what_is_missing(
        app, api: TestClient) -> None:
    """Checked in a request's order: the study (also another owner's), the step against its
    fidelity, then the trial."""
    from tests.conftest import new_key

    study = create(api, fidelity=FIDELITY)
    (trial,) = ask(api, study)
    missing_trial = {**trial, "id": trial["id"] + 10_000}

    def field(response) -> tuple[int, str]:
        return response.status_code, response.json()["errors"][0]["field"]

    assert field(report(api, study, missing_trial, 1, 0.5)) == (404, "trial_id")
    assert field(report(api, study, missing_trial, 99, 0.5)) == (422, "step")
    assert field(report(api, {"id": "nope"}, trial, 1, 0.5)) == (404, "study_id")
    other = TestClient(app)
    other.headers["Authorization"] = f"Bearer {new_key(app)}"
    assert field(report(other, study, trial, 1, 0.5)) == (404, "study_id")
    assert api.get(trial_url(study, trial)).json()["intermediate"] == []  # nothing was written
    assert report(api, study, trial, 1, 0.5).json() == {"should_stop": False, "reason": None}


def test_too_many_reports_are_refused(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reports, "MAX_REPORTS_PER_TRIAL", 3)
    study = create(api)
    (trial,) = ask(api, study)
    for step in range(3):
        assert report(api, study, trial, step, 0.1).status_code == 200
    refused = report(api, study, trial, 3, 0.1)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "step"
    assert report(api, study, trial, 2, 0.1).status_code == 200  # a known step is no new row


def test_a_report_is_a_heartbeat(database_url: str) -> None:
    with custom_api(database_url) as (api, app):
        study = create(api, heartbeat_timeout_s=30.0, fidelity=FIDELITY)
        (trial,) = ask(api, study)
        silence(app, trial["id"])
        assert report(api, study, trial, 1, 0.5).status_code == 200
        reap_stale(app.state.context)  # other tests' silent trials may share the database
        assert api.get(trial_url(study, trial)).json()["state"] == "running"


def test_a_bad_value_at_a_rung_is_told_to_stop_and_a_good_one_is_not(api: TestClient) -> None:
    study = create(api, fidelity=FIDELITY)
    good = ask(api, study, count=3)
    for trial, value in zip(good, [0.3, 0.2, 0.25], strict=True):
        assert report(api, study, trial, 3, value).json()["should_stop"] is False
    bad, better = ask(api, study, count=2)
    assert report(api, study, bad, 2, 0.9).json()["should_stop"] is False  # not a rung
    answer = report(api, study, bad, 3, 0.9).json()
    assert answer["should_stop"] is True
    # No finished curve yet: the rung keeps what its prior trust alone says (engine's rule).
    cold = policy_for((), "minimize", Fidelity(**FIDELITY)).rule(3)
    kept = int(4 * cold.keep + 1e-9)
    cut = sorted([0.3, 0.2, 0.25, 0.9])[kept - 1]
    assert 1 <= kept < 4
    assert answer["reason"] == (f"rung 3: 0.9 is not in the best {kept} of 4 values at this "
                                f"step (cut {cut:g}, keep {cold.keep:.2f} from trust "
                                f"{cold.trust:.2f})")
    assert report(api, study, bad, 3, 0.9).json() == answer  # the same answer again
    assert report(api, study, better, 3, 0.1).json()["should_stop"] is False


def test_a_job_reporting_every_other_epoch_is_judged_at_its_first_report_past_each_rung(
        app, api: TestClient) -> None:
    study = create(api, fidelity=FIDELITY)
    good = ask(api, study, count=3)
    for trial, value in zip(good, [0.3, 0.2, 0.25], strict=True):
        for step in (2, 4):  # rung 1 at step 2, rung 3 at step 4
            assert report(api, study, trial, step, value).json()["should_stop"] is False
    bad, hedge, better = ask(api, study, count=3)  # number 4 is a hedge: never stopped
    assert report(api, study, hedge, 2, 0.1).json()["should_stop"] is False
    assert report(api, study, bad, 2, 0.9).json()["should_stop"] is True
    answer = report(api, study, better, 2, 0.1).json()
    assert answer["should_stop"] is False
    assert report(api, study, better, 4, 0.95).json()["should_stop"] is True  # rung 3, at 4
    assert report(api, study, better, 6, 0.1).json()["should_stop"] is False  # no new rung
    stopped = report(api, study, bad, 2, 0.9).json()["reason"]
    assert stopped.startswith("rung 1 (reported at step 2): 0.9 is not in the best")
    api.post(trial_url(study, bad, "tell"), json={"state": "stopped"})
    api.post(trial_url(study, good[0], "tell"), json={"value": 0.3})
    context = app.state.context
    with context.sessions() as session:
        history = context.histories.load(session, study["id"], "minimize", rungs=(1, 3, 9, 27))
    curves = {t.number: t.curve for t in history.trials}
    assert curves[bad["number"]] == ((1, 0.9),)  # the value at step 2, kept at its rung
    assert curves[good[0]["number"]] == ((1, 0.3), (3, 0.3))


def test_maximize_studies_stop_the_small_values(api: TestClient) -> None:
    study = create(api, direction="maximize", fidelity=FIDELITY)
    for trial, value in zip(ask(api, study, count=3), [0.5, 0.6, 0.7], strict=True):
        report(api, study, trial, 1, value)
    low, high = ask(api, study, count=2)
    assert report(api, study, low, 1, 0.1).json()["should_stop"] is True
    assert report(api, study, high, 1, 0.9).json()["should_stop"] is False


def test_a_stopped_trial_keeps_its_curve_and_is_final(api: TestClient) -> None:
    study = create(api, fidelity=FIDELITY)
    for trial, value in zip(ask(api, study, count=3), [0.3, 0.2, 0.25], strict=True):
        report(api, study, trial, 3, value)
    (trial,) = ask(api, study)
    for step, value in [(1, 1.0), (2, 0.95), (3, 0.9)]:
        report(api, study, trial, step, value)
    told = api.post(trial_url(study, trial, "tell"), json={"state": "stopped"})
    assert told.status_code == 200, told.text
    got = told.json()
    assert got["state"] == "stopped" and got["value"] == 0.9 and got["last_step"] == 3
    assert got["reason"].startswith("rung 3: 0.9 is not in the best ")
    assert got["intermediate"] == [[1, 1.0], [2, 0.95], [3, 0.9]]
    again = api.post(trial_url(study, trial, "tell"), json={"state": "stopped"})
    assert again.status_code == 200 and again.json()["value"] == 0.9
    assert api.post(trial_url(study, trial, "tell"), json={"value": 0.5}).status_code == 409
    assert report(api, study, trial, 4, 0.8).status_code == 409
    listed = api.get(f"/v1/studies/{study['id']}/trials", params={"state": "stopped"}).json()
    assert [t["id"] for t in listed["trials"]] == [trial["id"]]
    assert listed["trials"][0]["intermediate"] == got["intermediate"]
    asked = ask(api, study, count=20)
    assert trial["id"] not in {t["id"] for t in asked}
    assert trial["params"] not in [t["params"] for t in asked]  # seen: never proposed again
    counts = api.get(f"/v1/studies/{study['id']}").json()["trials_by_state"]
    assert counts["stopped"] == 1


def test_the_clients_reason_is_kept_and_a_stop_without_reports_is_409(api: TestClient) -> None:
    study = create(api)
    silent, reporting = ask(api, study, count=2)
    assert api.post(trial_url(study, silent, "tell"),
                    json={"state": "stopped"}).status_code == 409
    assert api.get(trial_url(study, silent)).json()["state"] == "running"
    report(api, study, reporting, 7, 0.4)
    told = api.post(trial_url(study, reporting, "tell"),
                    json={"state": "stopped", "reason": "plateau"}).json()
    assert (told["value"], told["reason"], told["last_step"]) == (0.4, "plateau", 7)
    assert api.post(trial_url(study, reporting, "tell"),
                    json={"state": "stopped", "value": 0.4}).status_code == 422


def test_long_curves_page_and_trial_objects_show_the_last_100_points(api: TestClient) -> None:
    study = create(api)
    (trial,) = ask(api, study)
    for step in range(120):
        assert report(api, study, trial, step, step / 10).status_code == 200
    got = api.get(trial_url(study, trial)).json()
    assert got["last_step"] == 119
    assert got["intermediate"] == [[s, s / 10] for s in range(20, 120)]
    page = api.get(trial_url(study, trial, "curve"), params={"offset": 100, "limit": 50}).json()
    assert page["total"] == 120 and page["points"] == [[s, s / 10] for s in range(100, 120)]
    assert api.get(trial_url(study, trial, "curve"),
                   params={"limit": 1001}).status_code == 422
    rows = list(csv.DictReader(io.StringIO(
        api.get(f"/v1/studies/{study['id']}/trials.csv").text)))
    assert rows[0]["last_step"] == "119"


def finish_with_curves(api: TestClient, study: dict, pairs: list[tuple[float, float]]) -> None:
    """Trials that report ``rung`` at step 3 and complete with ``final``, one per pair."""
    for trial, (rung, final) in zip(ask(api, study, count=len(pairs)), pairs, strict=True):
        assert report(api, study, trial, 3, rung).status_code == 200
        told = api.post(trial_url(study, trial, "tell"), json={"value": final})
        assert told.status_code == 200, told.text


def test_how_hard_a_rung_stops_depends_on_how_well_it_predicted_the_finals(
        api: TestClient) -> None:
    """Two studies see the same values at rung 3; where those values predicted the final ones,
    a middling newcomer is stopped, where they were misleading (the best at rung 3 ended worst),
    the same newcomer goes on."""
    rungs = [0.1 * i for i in range(1, 13)]
    predictive = create(api, fidelity=FIDELITY)
    misleading = create(api, fidelity=FIDELITY)
    finish_with_curves(api, predictive, [(v, v - 0.05) for v in rungs])
    finish_with_curves(api, misleading, [(v, 2.0 - v) for v in rungs])
    answers = {}
    for name, study in (("predictive", predictive), ("misleading", misleading)):
        (newcomer,) = ask(api, study)
        answers[name] = report(api, study, newcomer, 3, 0.9).json()
    assert answers["predictive"]["should_stop"] is True
    assert "measured 1.00 on 12 curves" in answers["predictive"]["reason"]
    assert "predicted final" in answers["predictive"]["reason"]
    assert answers["misleading"] == {"should_stop": False, "reason": None}


def test_the_policy_is_stored_after_tells_and_an_older_one_never_replaces_it(
        app, api: TestClient) -> None:
    from service.db import stopping_policy_queries
    from service.db.session import transaction

    study = create(api, fidelity=FIDELITY)
    sessions = app.state.context.sessions
    with sessions() as session:
        assert stopping_policy_queries.get(session, study["id"]) is None
    finish_with_curves(api, study, [(0.1 * i, 0.1 * i) for i in range(1, 6)])
    with sessions() as session:
        stored = stopping_policy_queries.get(session, study["id"])
        assert stored.finished == 5
        revision, policy = stored.revision, stored.policy
        assert [r["step"] for r in policy["rules"]] == [1, 3, 9, 27]
        assert next(r for r in policy["rules"] if r["step"] == 3)["pairs"] == 5
    with transaction(sessions) as session:  # a late writer with an older history
        stopping_policy_queries.put(session, study["id"], revision - 1, 0, {"rules": []})
    with sessions() as session:
        assert stopping_policy_queries.get(session, study["id"]).policy == policy
    shown = api.get(f"/v1/studies/{study['id']}/stopping").json()
    assert shown["fidelity"] == FIDELITY and shown["curves"] == 5
    assert [r["keep"] for r in shown["rules"]] == [r["keep"] for r in policy["rules"]]
    assert "anchors" not in shown["rules"][0]


def test_the_policy_is_recomputed_once_per_growth_step_of_its_curves(app, api: TestClient
                                                                     ) -> None:
    """Past 40 curves a tell recalibrates only once enough trials finished since the stored
    policy (``early_stopping.recalibration_due``): the tells between leave it as it was."""
    from service.db import stopping_policy_queries
    from service.engine.early_stopping import RECALIBRATE_GROWTH

    study = create(api, fidelity=FIDELITY)

    def stored():
        with app.state.context.sessions() as session:
            row = stopping_policy_queries.get(session, study["id"])
            return row.revision, row.finished

    # calibrated on 1, 2, ..., 40 curves, then every 2: 42, 44, 46
    finish_with_curves(api, study, [(0.01 * i, 0.01 * i) for i in range(1, 47)])
    revision, finished = stored()
    step = int(RECALIBRATE_GROWTH * finished)
    assert finished == 46 and step == 2
    finish_with_curves(api, study, [(0.5, 0.5)] * (step - 1))
    assert stored() == (revision, finished)  # not due: the tells only read two rows
    finish_with_curves(api, study, [(0.6, 0.6)])
    later_revision, later_finished = stored()
    assert later_revision > revision and later_finished == finished + step


def test_the_stopping_policy_is_shown_cold_and_without_a_fidelity(api: TestClient) -> None:
    cold = api.get(f"/v1/studies/{create(api, fidelity=FIDELITY)['id']}/stopping").json()
    expected = policy_for((), "minimize", Fidelity(**FIDELITY))
    assert cold["curves"] == 0
    assert [(r["step"], r["keep"]) for r in cold["rules"]] == [
        (r.step, r.keep) for r in expected.rules]
    plain = api.get(f"/v1/studies/{create(api)['id']}/stopping").json()
    assert plain == {"fidelity": None, "curves": 0, "rules": []}
    assert api.get("/v1/studies/nope/stopping").status_code == 404


def test_stopped_trials_reach_the_engine_with_their_rung_values(app, api: TestClient) -> None:
    study = create(api, fidelity=FIDELITY)
    (stopped, done, silent) = ask(api, study, count=3)
    for step, value in [(1, 0.9), (2, 0.8), (3, 0.7)]:
        report(api, study, stopped, step, value)
    report(api, study, done, 1, 0.5)
    report(api, study, silent, 1, 0.4)  # still running: its curve is not evidence yet
    api.post(trial_url(study, stopped, "tell"), json={"state": "stopped"})
    api.post(trial_url(study, done, "tell"), json={"value": 0.3})
    context = app.state.context
    with context.sessions() as session:
        history = context.histories.load(session, study["id"], "minimize", rungs=(1, 3, 9, 27))
    curves = {t.number: t.curve for t in history.trials}
    assert curves[stopped["number"]] == ((1, 0.9), (3, 0.7))  # rung steps only
    assert curves[done["number"]] == ((1, 0.5),)
    assert curves[silent["number"]] == ()
