"""What a hostile-but-legal client found, pinned on SQLite and PostgreSQL: spaces that cost too
much, numbers the engine cannot hold, duplicated candidates, spreadsheet formulas in exports,
results overwriting a client's own verdict, unbounded lists and per-tenant quotas."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from sqlalchemy import event, func, select

from service.app import create_app
from service.db.models import Candidate, PrunerVersion, Trial, utcnow
from service.db.session import transaction
from service.usecases.ask_tell import reap_stale
from tests.conftest import MIXED_SPACE, make_settings, new_key, unique_name
from tests.engine.test_space_limits import conditional_parents, raw_spaces


def create(api: TestClient, space: dict[str, Any], **fields: Any) -> dict:
    response = api.post("/v1/studies", json={"name": unique_name("h"), "space": space, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def ask(api: TestClient, study: dict, **body: Any):
    return api.post(f"/v1/studies/{study['id']}/ask", json=body)


def silence(app: Any, trial_id: int) -> None:
    """Make a running trial look silent for a minute, past any heartbeat timeout here."""
    with transaction(app.state.context.sessions) as session:
        row = session.get(Trial, trial_id)
        row.heartbeat_at = row.deadline_at = utcnow() - timedelta(seconds=60)


@contextmanager
def custom_api(database_url: str, **overrides: Any) -> Iterator[tuple[TestClient, Any]]:
    app = create_app(make_settings(database_url, **overrides))
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {new_key(app)}"
        yield client, app


# --- spaces ----------------------------------------------------------------------------------

def test_forty_conditional_parents_are_accepted_and_asked(api: TestClient) -> None:
    study = create(api, conditional_parents(40))
    configs = []
    for _ in range(3):
        response = ask(api, study, count=2)
        assert response.status_code == 200, response.text
        configs += [t["params"] for t in response.json()["trials"]]
    assert len({str(sorted(c.items())) for c in configs}) == 6


@pytest.mark.parametrize(("space", "field"), [
    ({"params": [{"name": f"c{i}", "type": "categorical", "choices": list(range(1024))}
                 for i in range(150)]}, "space.params"),
    ({"params": [{"name": "x", "type": "float", "low": -1e308, "high": 1e308}]},
     "space.params[0].low"),
    ({"params": [{"name": "n", "type": "int", "low": 0, "high": 2**63}]}, "space.params[0].high"),
    ({"params": [{"name": "n", "type": "int", "low": 0, "high": 1.2e21}]},
     "space.params[0].high"),
    ({"params": [{"name": "n", "type": "int", "low": 1, "high": 2**62, "log": True}]},
     "space.params[0].high"),
])
def test_spaces_whose_asks_used_to_fail_are_422_naming_the_field(
        api: TestClient, space: dict, field: str) -> None:
    before = api.get("/v1/studies").json()["total"]
    response = api.post("/v1/studies", json={"name": unique_name("h"), "space": space})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    assert api.get("/v1/studies").json()["total"] == before


def test_integers_at_the_float64_limit_round_trip_exactly(api: TestClient) -> None:
    top = 2**53 - 1
    study = create(api, {"params": [{"name": "n", "type": "int", "low": -top, "high": top}]})
    for _ in range(3):
        (trial,) = ask(api, study).json()["trials"]
        assert isinstance(trial["params"]["n"], int) and -top <= trial["params"]["n"] <= top
    enqueued = api.post(f"/v1/studies/{study['id']}/trials", json={"params": {"n": top}})
    assert enqueued.status_code == 201 and enqueued.json()["params"] == {"n": top}
    over = api.post(f"/v1/studies/{study['id']}/trials", json={"params": {"n": top + 2}})
    assert over.status_code == 422 and over.json()["errors"][0]["field"] == "params.n"
    assert "<=" in over.json()["detail"]  # a range error, not "not an integer"


# --- two-step ask ----------------------------------------------------------------------------

def test_a_candidate_token_sent_twice_is_422_and_trains_nothing(api: TestClient) -> None:
    study = create(api, MIXED_SPACE, static_metrics=["params"])
    pool = ask(api, study, count=2).json()["candidates"]
    token = pool[0]["token"]
    response = ask(api, study, count=5, candidates=[{"token": token}] * 5)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "candidates[1].token"
    assert api.get(f"/v1/studies/{study['id']}/trials").json()["total"] == 0
    ok = ask(api, study, count=2, candidates=[{"token": c["token"]} for c in pool[:2]])
    params = [t["params"] for t in ok.json()["trials"]]
    assert len(params) == 2 and params[0] != params[1]  # the pool was left for a real answer


def test_expired_candidate_pools_are_purged(database_url: str) -> None:
    with custom_api(database_url, candidate_ttl_s=0.001) as (api, app):
        study = create(api, MIXED_SPACE, static_metrics=["params"])
        assert ask(api, study).json()["candidates"]
        context = app.state.context
        with context.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Candidate)
                                  .where(Candidate.study_id == study["id"])) > 0
        reap_stale(context)
        with context.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Candidate)
                                  .where(Candidate.study_id == study["id"])) == 0


# --- exports -----------------------------------------------------------------------------------

def test_csv_cells_a_spreadsheet_would_run_are_neutralised(api: TestClient) -> None:
    choices = ["=1+1", "+SUM(A1:A2)", "-2+3", "@cmd", "\tTAB", "safe"]
    study = create(api, {"params": [
        {"name": "op", "type": "categorical", "choices": choices},
        {"name": "x", "type": "float", "low": -1.0, "high": 1.0}]})
    for choice in choices:
        trial = api.post(f"/v1/studies/{study['id']}/trials",
                         json={"params": {"op": choice, "x": -0.5}}).json()
    ask(api, study, count=len(choices))
    api.post(f"/v1/studies/{study['id']}/trials/{trial['id']}/tell",
             json={"state": "infeasible", "reason": '=HYPERLINK("http://x","y")'})
    rows = list(csv.DictReader(io.StringIO(
        api.get(f"/v1/studies/{study['id']}/trials.csv").text)))
    assert sorted(r["params.op"] for r in rows) == sorted(
        ["'" + c if c[0] in "=+-@\t" else c for c in choices])
    assert all(float(r["params.x"]) == -0.5 for r in rows)  # numbers stay numbers
    (told,) = [r for r in rows if r["state"] == "infeasible"]
    assert told["reason"] == "'" + '=HYPERLINK("http://x","y")'


# --- tell ------------------------------------------------------------------------------------

def test_a_failure_the_client_told_is_final(api: TestClient, study: dict) -> None:
    (trial,) = ask(api, study).json()["trials"]
    url = f"/v1/studies/{study['id']}/trials/{trial['id']}/tell"
    # the reason the server writes for silence, sent by a client, earns no overwrite
    assert api.post(url, json={"state": "failed", "reason": "heartbeat timeout"}).status_code \
        == 200
    late = api.post(url, json={"value": 0.5})
    assert late.status_code == 409
    assert api.get(f"/v1/studies/{study['id']}/trials/{trial['id']}").json()["state"] == "failed"


def test_a_trial_the_server_timed_out_takes_one_late_result(database_url: str) -> None:
    with custom_api(database_url) as (api, app):
        study = create(api, MIXED_SPACE, heartbeat_timeout_s=0.01)
        (trial,) = ask(api, study).json()["trials"]
        silence(app, trial["id"])
        assert reap_stale(app.state.context) == 1
        url = f"/v1/studies/{study['id']}/trials/{trial['id']}/tell"
        assert api.post(url, json={"value": 0.5}).json()["state"] == "complete"
        assert api.post(url, json={"value": 0.5}).status_code == 200  # idempotent
        assert api.post(url, json={"value": 0.7}).status_code == 409  # the client's now


def test_the_reaper_fails_only_stale_trials_across_studies(database_url: str) -> None:
    with custom_api(database_url) as (api, app):
        fresh = create(api, MIXED_SPACE)
        stale = create(api, MIXED_SPACE, heartbeat_timeout_s=5.0)
        ask(api, fresh, count=5)
        (old,) = ask(api, stale).json()["trials"]
        (recent,) = ask(api, stale).json()["trials"]
        silence(app, old["id"])
        assert reap_stale(app.state.context) == 1
        states = {t["id"]: t["state"] for s in (fresh, stale) for t in
                  api.get(f"/v1/studies/{s['id']}/trials").json()["trials"]}
        assert states.pop(old["id"]) == "failed"
        assert set(states.values()) == {"running"} and recent["id"] in states
        assert reap_stale(app.state.context) == 0


def test_a_heartbeat_moves_the_deadline(database_url: str) -> None:
    with custom_api(database_url) as (api, app):
        study = create(api, MIXED_SPACE, heartbeat_timeout_s=30.0)
        (trial,) = ask(api, study).json()["trials"]
        silence(app, trial["id"])
        beat = api.post(f"/v1/studies/{study['id']}/trials/{trial['id']}/heartbeat")
        assert beat.status_code == 200
        assert reap_stale(app.state.context) == 0


# --- enqueue ---------------------------------------------------------------------------------

def test_enqueue_is_deduplicated_while_the_trial_waits(api: TestClient, study: dict) -> None:
    params = {"depth": 3, "width_3": 64, "cell": True, "lr": 0.01, "dropout": 0.2}
    url = f"/v1/studies/{study['id']}/trials"
    first = api.post(url, json={"params": params})
    again = api.post(url, json={"params": params})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    other = api.post(url, json={"params": {**params, "cell": 7}})  # True is not 7, nor 1
    assert other.status_code == 201
    handed = ask(api, study, count=2).json()["trials"]
    assert {t["id"] for t in handed} == {first.json()["id"], other.json()["id"]}
    rerun = api.post(url, json={"params": params})  # handed out: enqueue again on purpose
    assert rerun.status_code == 201 and rerun.json()["id"] != first.json()["id"]


# --- paging and bounds -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/studies", "/v1/studies/{id}/trials",
                                  "/v1/studies/{id}/pruner"])
def test_offsets_past_any_table_are_422(api: TestClient, study: dict, path: str) -> None:
    response = api.get(path.format(id=study["id"]), params={"offset": 2**63})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "offset"


def test_studies_are_listed_in_pages(api: TestClient) -> None:
    ids = [create(api, MIXED_SPACE)["id"] for _ in range(5)]
    first = api.get("/v1/studies", params={"limit": 2}).json()
    assert first["total"] == 5 and [s["id"] for s in first["studies"]] == ids[:2]
    last = api.get("/v1/studies", params={"offset": 4, "limit": 2}).json()
    assert [s["id"] for s in last["studies"]] == ids[4:]
    assert api.get("/v1/studies", params={"limit": 1001}).status_code == 422


def test_the_sdk_walks_every_page(client_factory) -> None:
    client = client_factory()
    made = [client.create_study(f"s{i}", MIXED_SPACE["params"]).id for i in range(5)]
    assert [s.id for s in client.list_studies(page_size=2)] == made


def test_the_pruner_report_pages_versions_without_loading_weights(api: TestClient, app,
                                                                  study: dict) -> None:
    with transaction(app.state.context.sessions) as session:
        for version in range(1, 4):
            session.add(PrunerVersion(study_id=study["id"], version=version, weights=b"w" * 1000,
                                      fingerprint="f", n_train=10 * version, metrics={},
                                      device="cpu", seconds=0.1, active=version < 3))
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(app.state.engine, "before_cursor_execute", record)
    try:
        report = api.get(f"/v1/studies/{study['id']}/pruner", params={"limit": 2}).json()
    finally:
        event.remove(app.state.engine, "before_cursor_execute", record)
    assert [v["version"] for v in report["versions"]] == [3, 2]
    assert report["versions_total"] == 3 and report["active_version"] == 2
    assert not any("weights" in s for s in statements)


# --- quotas ----------------------------------------------------------------------------------

def test_running_trials_per_study_are_capped_with_429(database_url: str) -> None:
    with custom_api(database_url, max_running_trials_per_study=3) as (api, _):
        study = create(api, MIXED_SPACE)
        trials = ask(api, study, count=3).json()["trials"]
        refused = ask(api, study)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        assert refused.json()["errors"][0]["field"] == "count"
        assert api.get(f"/v1/studies/{study['id']}/trials").json()["total"] == 3
        api.post(f"/v1/studies/{study['id']}/trials/{trials[0]['id']}/tell",
                 json={"value": 1.0})
        assert ask(api, study).status_code == 200


def test_waiting_trials_per_study_are_capped_with_429(database_url: str) -> None:
    with custom_api(database_url, max_waiting_trials_per_study=2) as (api, _):
        study = create(api, {"params": [{"name": "n", "type": "int", "low": 0, "high": 9}]})
        url = f"/v1/studies/{study['id']}/trials"
        assert [api.post(url, json={"params": {"n": n}}).status_code for n in range(3)] == \
            [201, 201, 429]
        ask(api, study)
        assert api.post(url, json={"params": {"n": 2}}).status_code == 201


def test_studies_per_owner_are_a_quota(database_url: str) -> None:
    with custom_api(database_url, max_studies_per_owner=2) as (api, app):
        create(api, MIXED_SPACE)
        second = create(api, MIXED_SPACE)
        refused = api.post("/v1/studies", json={"name": "x", "space": MIXED_SPACE})
        assert refused.status_code == 403 and "quota" in refused.json()["detail"]
        other = TestClient(app)
        other.headers["Authorization"] = f"Bearer {new_key(app)}"
        assert other.post("/v1/studies", json={"name": "x", "space": MIXED_SPACE}) \
            .status_code == 201  # another owner has its own quota
        api.delete(f"/v1/studies/{second['id']}")
        assert api.post("/v1/studies", json={"name": "y", "space": MIXED_SPACE}) \
            .status_code == 201


# --- the property, end to end: 201 and asks that answer, or a 422 naming the field ------------

@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=raw_spaces())
def test_any_space_posted_is_422_naming_a_field_or_asked(api: TestClient,
                                                         spec: dict[str, Any]) -> None:
    # NaN and infinities travel as the literals Python's JSON writes (and a lax parser reads)
    body = json.dumps({"name": unique_name("fuzz"), "space": spec}, allow_nan=True)
    response = api.post("/v1/studies", content=body,
                        headers={"content-type": "application/json"})
    if response.status_code == 422:
        assert response.json()["errors"][0]["field"].startswith("space")
        return
    assert response.status_code == 201, response.text
    study = response.json()
    for _ in range(2):
        asked = ask(api, study, count=2)
        assert asked.status_code == 200, asked.text
        for trial in asked.json()["trials"]:
            told = api.post(f"/v1/studies/{study['id']}/trials/{trial['id']}/tell",
                            json={"value": float(len(str(trial["params"])))})
            assert told.status_code == 200
