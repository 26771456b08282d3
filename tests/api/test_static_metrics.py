"""Static-metrics studies: ask is a two-step exchange (pool -> metrics -> trials)."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import MIXED_SPACE, make_settings, new_key


def metrics_study(api: TestClient) -> dict:
    response = api.post("/v1/studies", json={"name": "zc", "space": MIXED_SPACE,
                                             "static_metrics": ["params", "synflow"]})
    assert response.status_code == 201, response.text
    return response.json()


def fake_metrics(params: dict) -> dict:
    return {"params": params["depth"] * 1000.0, "synflow": params["lr"] * 10}


def test_ask_offers_a_pool_then_returns_trials_for_its_metrics(api: TestClient) -> None:
    study = metrics_study(api)
    first = api.post(f"/v1/studies/{study['id']}/ask", json={"count": 2}).json()
    assert first["trials"] == [] and first["expires_at"]
    pool = first["candidates"]
    assert len(pool) == 8 and len({c["token"] for c in pool}) == 8
    # metrics for only some of them: still trials
    answers = [{"token": c["token"], "static_metrics": fake_metrics(c["params"])}
               for c in pool[:3]] + [{"token": pool[3]["token"]}]
    second = api.post(f"/v1/studies/{study['id']}/ask",
                      json={"count": 2, "candidates": answers}).json()
    trials = second["trials"]
    assert len(trials) == 2 and second["candidates"] == []
    offered = {c["token"]: c["params"] for c in pool}
    answered = [offered[a["token"]] for a in answers]
    for trial in trials:
        assert trial["params"] in answered
        assert trial["state"] == "running" and trial["number"] in (0, 1)
        if trial["params"] in answered[:3]:
            assert trial["static_metrics"] == fake_metrics(trial["params"])
    again = api.post(f"/v1/studies/{study['id']}/ask", json={"count": 1, "candidates": answers})
    assert again.status_code == 409  # a pool is consumed by the ask that answers it


def test_undeclared_metric_is_422_and_stores_nothing(api: TestClient) -> None:
    study = metrics_study(api)
    pool = api.post(f"/v1/studies/{study['id']}/ask").json()["candidates"]
    response = api.post(f"/v1/studies/{study['id']}/ask", json={
        "candidates": [{"token": pool[0]["token"], "static_metrics": {"latency": 3.0}}]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "candidates[0].static_metrics.latency"
    assert api.get(f"/v1/studies/{study['id']}/trials").json()["total"] == 0
    ok = api.post(f"/v1/studies/{study['id']}/ask", json={
        "candidates": [{"token": pool[0]["token"], "static_metrics": {"params": 3.0}}]})
    assert ok.status_code == 200 and len(ok.json()["trials"]) == 1  # the pool was not consumed


def test_expired_or_unknown_tokens_are_409(database_url: str) -> None:
    app = create_app(make_settings(database_url, candidate_ttl_s=0.2))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        study = metrics_study(api)
        pool = api.post(f"/v1/studies/{study['id']}/ask").json()["candidates"]
        time.sleep(0.3)
        late = api.post(f"/v1/studies/{study['id']}/ask",
                        json={"candidates": [{"token": pool[0]["token"]}]})
        assert late.status_code == 409 and "ask again" in late.json()["detail"]
        unknown = api.post(f"/v1/studies/{study['id']}/ask",
                           json={"candidates": [{"token": "nope"}]})
        assert unknown.status_code == 409


def test_metrics_told_with_a_result_are_stored(api: TestClient) -> None:
    study = metrics_study(api)
    pool = api.post(f"/v1/studies/{study['id']}/ask").json()["candidates"]
    (trial,) = api.post(f"/v1/studies/{study['id']}/ask",
                        json={"candidates": [{"token": pool[0]["token"]}]}).json()["trials"]
    assert trial["static_metrics"] == {}
    told = api.post(f"/v1/studies/{study['id']}/trials/{trial['id']}/tell",
                    json={"value": 0.5, "static_metrics": {"params": 1234, "synflow": 2.5}})
    assert told.status_code == 200
    assert told.json()["static_metrics"] == {"params": 1234.0, "synflow": 2.5}


def test_enqueued_trials_come_first_and_the_pool_covers_the_rest(api: TestClient) -> None:
    study = metrics_study(api)
    params = {"depth": 2, "cell": "skip", "lr": 0.01, "dropout": 0.1}
    enqueued = api.post(f"/v1/studies/{study['id']}/trials", json={"params": params}).json()
    response = api.post(f"/v1/studies/{study['id']}/ask", json={"count": 2}).json()
    assert [t["id"] for t in response["trials"]] == [enqueued["id"]]
    assert len(response["candidates"]) == 4  # a pool for the one trial still missing
