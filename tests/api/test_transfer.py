"""Transfer from prior studies through the API: sources, compatibility, trust and fallback."""

from __future__ import annotations

import math

from fastapi.testclient import TestClient

from tests.conftest import new_key, unique_name

SPACE = {"params": [
    {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
    {"name": "y", "type": "float", "low": 0.0, "high": 1.0},
    {"name": "op", "type": "categorical", "choices": ["a", "b", "c"]},
]}


def bowl(params: dict, centre: float = 0.8) -> float:
    """A smooth loss with its optimum near (centre, centre, "b")."""
    return ((params["x"] - centre) ** 2 + (params["y"] - centre) ** 2
            + (0.0 if params.get("op", "b") == "b" else 0.3))


def run(api: TestClient, sid: str, n: int, objective) -> list[dict]:
    told = []
    for _ in range(n):
        (trial,) = api.post(f"/v1/studies/{sid}/ask").json()["trials"]
        value = objective(trial["params"])
        response = api.post(f"/v1/studies/{sid}/trials/{trial['id']}/tell", json={"value": value})
        assert response.status_code == 200, response.text
        told.append({**trial, "value": value})
    return told


def create(api: TestClient, **extra) -> dict:
    response = api.post("/v1/studies", json={"name": unique_name("s"), "space": SPACE, "seed": 3,
                                             **extra})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_study_starts_from_its_prior_best_and_trusts_a_related_task(api: TestClient) -> None:
    source = create(api)
    history = run(api, source["id"], 14, bowl)
    best = min(history, key=lambda t: t["value"])
    target = create(api, transfer_from=[source["id"]])
    assert target["transfer"]["sources"] == [source["id"]]
    shown = api.get(f"/v1/studies/{target['id']}").json()["transfer"]
    assert shown == {"sources": [source["id"]], "prior_trials": 14, "trust": None,
                     "active": True}
    related = run(api, target["id"], 6, lambda p: bowl(p, centre=0.75))
    assert related[0]["proposal"]["strategy"] == "transfer"
    assert related[0]["params"] == best["params"]  # the prior's incumbent comes first
    status = api.get(f"/v1/studies/{target['id']}").json()["transfer"]
    assert status["trust"] is not None and status["trust"] > 0.3 and status["active"] is True


def test_a_misleading_prior_is_measured_and_dropped(api: TestClient) -> None:
    source = create(api)
    run(api, source["id"], 14, bowl)
    target = create(api, transfer_from=[source["id"]])
    flipped = run(api, target["id"], 6, lambda p: -bowl(p))  # the prior's best is worst here
    status = api.get(f"/v1/studies/{target['id']}").json()["transfer"]
    assert status["trust"] is not None and status["trust"] < 0 and status["active"] is False
    # Once distrusted, no more of the prior's incumbents are proposed.
    later = run(api, target["id"], 3, lambda p: -bowl(p))
    assert all(t["proposal"]["strategy"] != "transfer" for t in later)
    assert any(t["proposal"]["strategy"] == "transfer" for t in flipped)


def test_auto_picks_compatible_studies_with_enough_results(api: TestClient) -> None:
    ready = create(api)
    run(api, ready["id"], 10, bowl)
    too_young = create(api)
    run(api, too_young["id"], 3, bowl)
    other_type = api.post("/v1/studies", json={"name": "o", "space": {"params": [
        {"name": "x", "type": "categorical", "choices": ["p", "q"]}]}}).json()
    run(api, other_type["id"], 10, lambda p: 1.0 if p["x"] == "p" else 2.0)
    target = create(api, transfer="auto")
    assert target["transfer"]["sources"] == [ready["id"]]


def test_spaces_may_differ_in_ranges_and_params(api: TestClient) -> None:
    source = create(api)
    run(api, source["id"], 12, bowl)
    wider = {"params": [
        {"name": "x", "type": "float", "low": 0.0, "high": 0.5},  # the prior's best is clipped
        {"name": "op", "type": "categorical", "choices": ["b", "c", "d"]},
        {"name": "depth", "type": "int", "low": 1, "high": 8},  # only here: sampled
    ]}
    response = api.post("/v1/studies", json={"name": "w", "space": wider,
                                             "transfer_from": [source["id"]]})
    assert response.status_code == 201, response.text
    (first,) = api.post(f"/v1/studies/{response.json()['id']}/ask").json()["trials"]
    assert first["proposal"]["strategy"] == "transfer"
    assert set(first["params"]) == {"x", "op", "depth"}
    assert 0.0 <= first["params"]["x"] <= 0.5 and 1 <= first["params"]["depth"] <= 8


def test_bad_sources_are_422_naming_the_field(api: TestClient, app) -> None:
    source = create(api)
    stranger = TestClient(app)
    stranger.headers["Authorization"] = f"Bearer {new_key(app)}"
    theirs = stranger.post("/v1/studies", json={"name": "t", "space": SPACE}).json()
    incompatible = api.post("/v1/studies", json={"name": "i", "space": {"params": [
        {"name": "x", "type": "int", "low": 0, "high": 3}]}}).json()
    before = len(api.get("/v1/studies").json()["studies"])
    cases = [
        ({"transfer_from": ["nope"]}, "transfer_from[0]", "no study"),
        ({"transfer_from": [source["id"], theirs["id"]]}, "transfer_from[1]", "no study"),
        ({"transfer_from": [incompatible["id"]]}, "transfer_from[0]", "x: int in the prior"),
        ({"transfer_from": [source["id"]], "transfer": "auto"}, "transfer", "not both"),
        ({"transfer": "sometimes"}, "transfer", ""),
        ({"transfer_from": "abc"}, "transfer_from", ""),
    ]
    for extra, field, reason in cases:
        response = api.post("/v1/studies", json={"name": "x", "space": SPACE, **extra})
        assert response.status_code == 422, (extra, response.text)
        error = response.json()["errors"][0]
        assert error["field"] == field and reason in error["message"], (extra, error)
    assert len(api.get("/v1/studies").json()["studies"]) == before  # nothing was created


def test_a_deleted_source_leaves_a_working_cold_study(api: TestClient) -> None:
    source = create(api)
    run(api, source["id"], 10, bowl)
    target = create(api, transfer_from=[source["id"]])
    assert api.delete(f"/v1/studies/{source['id']}").status_code == 204
    told = run(api, target["id"], 3, bowl)
    assert all(t["proposal"]["strategy"] != "transfer" for t in told)
    status = api.get(f"/v1/studies/{target['id']}").json()["transfer"]
    assert status["prior_trials"] == 0 and status["active"] is False
    assert all(math.isfinite(t["value"]) for t in told)
