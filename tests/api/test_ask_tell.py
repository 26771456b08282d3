"""Ask, tell, heartbeat, enqueue and the read endpoints, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from service.engine.space import SearchSpace
from tests.conftest import MIXED_SPACE


def ask(api: TestClient, study: dict, **body: object) -> list[dict]:
    response = api.post(f"/v1/studies/{study['id']}/ask", json=body)
    assert response.status_code == 200, response.text
    return response.json()["trials"]


def tell(api: TestClient, study: dict, trial: dict, **body: object):
    return api.post(f"/v1/studies/{study['id']}/trials/{trial['id']}/tell", json=body)


def test_ask_returns_valid_configurations_with_only_active_params(api, study) -> None:
    space = SearchSpace.from_dict(MIXED_SPACE)
    trials = ask(api, study, count=12)
    assert [t["number"] for t in trials] == list(range(12))
    for trial in trials:
        assert space.validate_config(trial["params"]) == trial["params"]
        assert ("width_3" in trial["params"]) == (trial["params"]["depth"] >= 3)
        assert trial["state"] == "running"
        assert trial["proposal"]["strategy"]


def test_tell_completes_and_is_idempotent(api, study) -> None:
    (trial,) = ask(api, study)
    first = tell(api, study, trial, value=0.25)
    assert first.status_code == 200 and first.json()["state"] == "complete"
    again = tell(api, study, trial, value=0.25)
    assert again.status_code == 200 and again.json() == first.json()
    conflict = tell(api, study, trial, value=0.5)
    assert conflict.status_code == 409
    assert "0.25" in conflict.json()["detail"]
    page = api.get(f"/v1/studies/{study['id']}/trials").json()
    assert page["total"] == 1 and page["trials"][0]["value"] == 0.25


def test_nan_and_inf_are_422_and_change_nothing(api, study) -> None:
    (trial,) = ask(api, study)
    for literal in ("NaN", "Infinity", "-Infinity"):
        response = api.post(f"/v1/studies/{study['id']}/trials/{trial['id']}/tell",
                            content=f'{{"value": {literal}}}',
                            headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "value"
    assert api.get(f"/v1/studies/{study['id']}/trials/{trial['id']}").json()["state"] == "running"


def test_tell_rejects_bad_bodies_naming_the_field(api, study) -> None:
    (trial,) = ask(api, study)
    assert tell(api, study, trial, value="0.3").json()["errors"][0]["field"] == "value"
    assert tell(api, study, trial).status_code == 422
    assert tell(api, study, trial, state="complete").status_code == 422
    assert tell(api, study, trial, state="failed", value=1.0).status_code == 422
    response = tell(api, study, trial, value=1.0, static_metrics={"flops": 3})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "static_metrics.flops"
    missing = api.post(f"/v1/studies/{study['id']}/trials/999999/tell", json={"value": 1})
    assert missing.status_code == 404


def test_failed_and_infeasible_are_recorded_distinctly(api, study) -> None:
    a, b = ask(api, study, count=2)
    assert tell(api, study, a, state="failed").json()["state"] == "failed"
    infeasible = tell(api, study, b, state="infeasible", reason="OOM at batch 512").json()
    assert infeasible["state"] == "infeasible" and infeasible["reason"] == "OOM at batch 512"
    counts = api.get(f"/v1/studies/{study['id']}").json()["trials_by_state"]
    assert counts == {"failed": 1, "infeasible": 1}


def test_reask_with_client_id_returns_the_running_trial(api, study) -> None:
    (first,) = ask(api, study, client_id="worker-1")
    (again,) = ask(api, study, client_id="worker-1")
    assert again["id"] == first["id"]
    (other,) = ask(api, study, client_id="worker-2")
    assert other["id"] != first["id"]
    tell(api, study, first, value=1.0)
    (fresh,) = ask(api, study, client_id="worker-1")
    assert fresh["id"] not in (first["id"], other["id"])


def test_heartbeat_keeps_alive_and_silence_fails_the_trial(api, study) -> None:
    quick = api.post("/v1/studies", json={"name": "hb", "space": MIXED_SPACE,
                                          "heartbeat_timeout_s": 0.5}).json()
    alive, silent = ask(api, quick, count=2)
    for _ in range(3):
        time.sleep(0.25)
        beat = api.post(f"/v1/studies/{quick['id']}/trials/{alive['id']}/heartbeat")
        assert beat.status_code == 200
    ask(api, quick)  # asks reap silent trials of their study
    states = {t["id"]: t for t in api.get(f"/v1/studies/{quick['id']}/trials").json()["trials"]}
    assert states[alive["id"]]["state"] == "running"
    assert states[silent["id"]]["state"] == "failed"
    assert states[silent["id"]]["reason"] == "heartbeat timeout"
    beat = api.post(f"/v1/studies/{quick['id']}/trials/{silent['id']}/heartbeat")
    assert beat.status_code == 409
    # A late result is still accepted: a told result is never thrown away.
    late = tell(api, quick, silent, value=0.1)
    assert late.status_code == 200 and late.json()["state"] == "complete"


def test_background_reaper_fails_silent_trials_without_any_ask(database_url) -> None:
    from service.app import create_app
    from tests.conftest import make_settings, new_key

    app = create_app(make_settings(database_url, reaper_interval_s=0.1))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        quick = api.post("/v1/studies", json={"name": "hb", "space": MIXED_SPACE,
                                              "heartbeat_timeout_s": 0.2}).json()
        (trial,) = ask(api, quick)
        deadline = time.monotonic() + 5
        state = "running"
        while state == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
            state = api.get(f"/v1/studies/{quick['id']}/trials/{trial['id']}").json()["state"]
        assert state == "failed"


def test_enqueued_configuration_is_handed_out_first(api, study) -> None:
    params = {"depth": 4, "width_3": 64, "cell": True, "lr": 0.01, "dropout": 0.2}
    response = api.post(f"/v1/studies/{study['id']}/trials", json={"params": params})
    assert response.status_code == 201
    assert response.json()["state"] == "waiting"
    (trial,) = ask(api, study)
    assert trial["params"] == params and trial["id"] == response.json()["id"]


def test_enqueue_validates_against_the_space(api, study) -> None:
    # a param left out is no error (it is filled when handed out: tests/api/test_partial_enqueue)
    bad = [
        ({"depth": 1, "width_3": 64, "cell": "skip", "lr": 0.01, "dropout": 0.2},
         "params.width_3"),
        ({"depth": 9, "cell": "skip", "lr": 0.01, "dropout": 0.2}, "params.depth"),
        ({"depth": 1, "cell": "maxpool", "lr": 0.01, "dropout": 0.2}, "params.cell"),
        ({"depth": 1, "cell": "skip", "lr": 0.01, "dropout": 0.25}, "params.dropout"),
        ({"depth": 1, "cell": "skip", "lr": 0.01, "dropout": 0.2, "x": 1}, "params.x"),
    ]
    for params, field in bad:
        response = api.post(f"/v1/studies/{study['id']}/trials", json={"params": params})
        assert response.status_code == 422, (params, response.text)
        assert response.json()["errors"][0]["field"] == field
    assert api.get(f"/v1/studies/{study['id']}/trials").json()["total"] == 0


def test_huge_count_is_422_and_ask_for_unknown_study_is_404(api, study) -> None:
    response = api.post(f"/v1/studies/{study['id']}/ask", json={"count": 10**9})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "count"
    assert api.post("/v1/studies/nope/ask").status_code == 404


def test_list_pages_filters_and_best(api, study) -> None:
    trials = ask(api, study, count=5)
    for i, trial in enumerate(trials[:4]):
        tell(api, study, trial, value=float(10 - i))
    page = api.get(f"/v1/studies/{study['id']}/trials",
                   params={"state": "complete", "limit": 3}).json()
    assert page["total"] == 4 and len(page["trials"]) == 3
    rest = api.get(f"/v1/studies/{study['id']}/trials",
                   params={"state": "complete", "limit": 3, "offset": 3}).json()
    assert [t["number"] for t in rest["trials"]] == [3]
    best = api.get(f"/v1/studies/{study['id']}/best").json()
    assert best["value"] == 7.0 and best["number"] == 3
    assert api.get(f"/v1/studies/{study['id']}").json()["best_trial"]["number"] == 3
    assert api.get(f"/v1/studies/{study['id']}/trials",
                   params={"state": "bogus"}).status_code == 422


def test_best_is_404_before_any_result(api, study) -> None:
    assert api.get(f"/v1/studies/{study['id']}/best").status_code == 404


def test_csv_export_has_one_row_per_trial(api, study) -> None:
    trials = ask(api, study, count=3)
    tell(api, study, trials[0], value=1.5)
    response = api.get(f"/v1/studies/{study['id']}/trials.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(r["number"]) for r in rows] == [0, 1, 2]
    assert rows[0]["value"] == "1.5" and rows[0]["state"] == "complete"
    assert rows[1]["params.lr"] == str(trials[1]["params"]["lr"])


def test_concurrent_asks_hand_out_unique_gapless_numbers(api, study) -> None:
    def one(_: int) -> list[dict]:
        return ask(api, study, count=2)

    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(one, range(24)))
    trials = [t for batch in batches for t in batch]
    assert sorted(t["number"] for t in trials) == list(range(48))
    assert len({t["id"] for t in trials}) == 48
    configs = {json.dumps(t["params"], sort_keys=True) for t in trials}
    assert len(configs) == 48  # pending trials are seen: no configuration handed out twice


def test_healthz_and_metrics(api, study) -> None:
    health = api.get("/healthz").json()
    assert health == {"status": "ok", "database": "ok", "retraining": "off", "auth": "on"}
    (trial,) = ask(api, study)
    tell(api, study, trial, value=1.0)
    text = api.get("/metrics").text
    assert 'dyesp_requests_total{method="POST",route="/v1/studies/{study_id}/ask",status="200"}' \
        in text
    assert 'dyesp_trials_told_total{state="complete"} 1.0' in text
    assert study["id"] not in text  # aggregate only: no label names a study or an owner


def test_oversized_body_is_413_and_deep_json_is_4xx(api, study) -> None:
    big = {"params": {"depth": 1, "cell": "skip", "lr": 0.01, "dropout": 0.2,
                      "pad": "x" * 2_000_000}}
    assert api.post(f"/v1/studies/{study['id']}/trials", json=big).status_code == 413
    deep = "[" * 100_000 + "]" * 100_000
    response = api.post("/v1/studies", content=deep, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500


def _owner_of(app, sid: str) -> int:
    from service.db.models import Study

    with app.state.context.sessions() as session:
        return session.get(Study, sid).owner_id


def test_a_draft_made_outside_the_lock_is_used_unless_its_configuration_was_taken(
        api, app, study, monkeypatch) -> None:
    """Asks run the engine before taking the study's lock. A draft that went stale is still
    recorded when nothing it proposes was handed out meanwhile, and recomputed when it was."""
    from service.usecases import proposals

    sid, ctx = study["id"], app.state.context
    for trial in api.post(f"/v1/studies/{sid}/ask", json={"count": 5}).json()["trials"]:
        api.post(f"/v1/studies/{sid}/trials/{trial['id']}/tell", json={"value": trial["number"]})
    owner = _owner_of(app, sid)
    stale = proposals.draft(ctx, owner, sid, 1)
    (taken,) = api.post(f"/v1/studies/{sid}/ask").json()["trials"]  # same snapshot, same seed
    assert taken["params"] == stale.decision.proposals[0].params
    monkeypatch.setattr(proposals, "draft", lambda *args: stale)
    (again,) = api.post(f"/v1/studies/{sid}/ask").json()["trials"]
    assert again["params"] != taken["params"] and again["number"] == taken["number"] + 1

    monkeypatch.undo()
    fresh = proposals.draft(ctx, owner, sid, 1)
    api.post(f"/v1/studies/{sid}/trials/{taken['id']}/tell", json={"value": 0.5})  # moves on
    monkeypatch.setattr(proposals, "draft", lambda *args: fresh)
    (used,) = api.post(f"/v1/studies/{sid}/ask").json()["trials"]
    assert used["params"] == fresh.decision.proposals[0].params


def test_concurrent_drafts_of_a_study_get_distinct_seed_offsets(app) -> None:
    offsets = app.state.context.seed_offsets
    with offsets.hold("s") as a, offsets.hold("s") as b, offsets.hold("t") as c:
        assert (a, b, c) == (0, 1, 0)
        with offsets.hold("s") as d:
            assert d == 2
    with offsets.hold("s") as e:
        assert e == 0
    assert len(offsets) == 0
