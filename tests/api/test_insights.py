"""The dashboard's data (``/v1/studies/{id}/insights/*``): bounded answers that agree with the
trials stored, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import random

import pytest
from fastapi.testclient import TestClient

from tests.conftest import new_key

SPACE = {"params": [
    {"name": "lr", "type": "float", "low": 1e-4, "high": 1.0, "log": True},
    {"name": "depth", "type": "int", "low": 1, "high": 6},
    {"name": "noise", "type": "float", "low": 0.0, "high": 1.0},
    {"name": "op", "type": "categorical", "choices": ["conv", "skip", "pool"]},
]}
OP_COST = {"conv": 0.0, "skip": 1.0, "pool": 2.0}


def objective(params: dict) -> float:
    """Driven by ``op`` and ``lr``; ``noise`` does nothing (importance must say so)."""
    return OP_COST[params["op"]] + abs(math.log10(params["lr"]) + 2) * 0.3


def random_params(rng: random.Random) -> dict:
    return {"lr": 10 ** rng.uniform(-4, 0), "depth": rng.randint(1, 6),
            "noise": rng.random(), "op": rng.choice(["conv", "skip", "pool"])}


@pytest.fixture
def filled(api: TestClient) -> dict:
    """A minimize study with 150 finished trials added in batches (a few failed and stopped ones
    with curves) and 12 asked and told through the engine."""
    study = api.post("/v1/studies", json={"name": "insights", "direction": "minimize",
                                          "space": SPACE, "seed": 3,
                                          "fidelity": {"name": "epoch", "min": 1,
                                                       "max": 10}}).json()
    rng = random.Random(5)
    trials = []
    for i in range(150):
        params = random_params(rng)
        if i % 25 == 7:
            trials.append({"params": params, "state": "failed"})
        elif i % 10 == 3:
            curve = [[s, objective(params) + 1.0 / s] for s in range(1, 4)]
            trials.append({"params": params, "state": "stopped", "intermediate": curve})
        else:
            curve = [[s, objective(params) + 1.0 / s] for s in range(1, 11)] if i % 5 == 0 else []
            trials.append({"params": params, "value": objective(params), "intermediate": curve})
    for start in (0, 100):
        response = api.post(f"/v1/studies/{study['id']}/trials:batch",
                            json={"trials": trials[start:start + 100]})
        assert response.status_code == 201, response.text
    for _ in range(12):
        trial = api.post(f"/v1/studies/{study['id']}/ask").json()["trials"][0]
        api.post(f"/v1/studies/{study['id']}/trials/{trial['id']}/tell",
                 json={"value": objective(trial["params"])})
    study["all"] = [t for t in all_trials(api, study["id"])]
    return study


def all_trials(api: TestClient, study_id: str) -> list[dict]:
    out, offset = [], 0
    while True:
        page = api.get(f"/v1/studies/{study_id}/trials",
                       params={"offset": offset, "limit": 1000}).json()
        out += page["trials"]
        offset += 1000
        if offset >= page["total"]:
            return out


def test_history_samples_past_the_limit_but_bins_and_best_line_use_every_trial(
        api: TestClient, filled: dict) -> None:
    sid = filled["id"]
    finished = [t for t in filled["all"] if t["state"] != "running"]
    full = api.get(f"/v1/studies/{sid}/insights/history", params={"max_points": 5000}).json()
    assert full["total"] == len(finished) and full["shown"] == len(finished)
    assert not full["sampled"] and full["points"]["number"] == [t["number"] for t in finished]
    by_strategy: dict[str, int] = {}
    for t in finished:
        name = t["proposal"]["strategy"] if t["proposal"] else "enqueued"
        by_strategy[name] = by_strategy.get(name, 0) + 1
    assert sorted(full["strategies"]) == sorted(by_strategy)

    # The best-so-far line: every trial that beat all complete ones before it.
    best, line = math.inf, []
    for t in finished:
        if t["state"] == "complete" and t["value"] < best:
            best = t["value"]
            line.append((t["number"], t["value"]))
    assert list(zip(full["best"]["number"], full["best"]["value"], strict=True)) == line

    small = api.get(f"/v1/studies/{sid}/insights/history", params={"max_points": 20}).json()
    assert small["sampled"] and small["shown"] <= 20 and small["total"] == len(finished)
    assert "every" in small["note"]
    assert sum(b["count"] for b in small["bins"]) == len(finished)
    assert small["best"]["value"][-1] == line[-1][1]  # the current best survives the thinning
    for name, count in by_strategy.items():
        assert sum(b["by_strategy"].get(name, 0) for b in small["bins"]) == count
    assert sum(sum(b["improved_by"].values()) for b in small["bins"]) == len(line)


def test_params_sample_keeps_the_best_and_importance_finds_the_parameters_that_matter(
        api: TestClient, filled: dict) -> None:
    sid = filled["id"]
    complete = [t for t in filled["all"] if t["state"] == "complete"]
    full = api.get(f"/v1/studies/{sid}/insights/params", params={"max_points": 5000}).json()
    assert full["total"] == full["shown"] == len(complete) and not full["sampled"]
    stored = {t["id"]: t for t in complete}
    for k, trial_id in enumerate(full["trial_ids"]):
        assert full["values"][k] == stored[trial_id]["value"]
        assert full["columns"]["op"][k] == stored[trial_id]["params"]["op"]
    ranked = sorted(full["importance"], key=full["importance"].get, reverse=True)
    assert ranked[0] == "op" and full["importance"]["noise"] < 0.1
    assert math.isclose(sum(full["importance"].values()), 1.0)

    small = api.get(f"/v1/studies/{sid}/insights/params", params={"max_points": 10}).json()
    assert small["sampled"] and small["shown"] < len(complete)
    best = min(complete, key=lambda t: t["value"])
    assert best["id"] in small["trial_ids"]


def test_curves_are_the_reported_ones_thinned_and_bounded(api: TestClient, filled: dict) -> None:
    sid = filled["id"]
    answer = api.get(f"/v1/studies/{sid}/insights/curves", params={"best": 3,
                                                                  "recent": 2}).json()
    reported = {t["id"]: t for t in filled["all"] if t["last_step"] is not None}
    assert 1 <= len(answer["curves"]) <= 5
    for curve in answer["curves"]:
        trial = reported[curve["trial_id"]]
        assert curve["points"][-1][0] == trial["last_step"]
        assert curve["points"] == sorted(curve["points"])
    best_reported = min((t for t in reported.values() if t["value"] is not None),
                        key=lambda t: t["value"])
    assert best_reported["id"] in {c["trial_id"] for c in answer["curves"]}


def test_map_places_every_shown_trial_and_marks_the_best_region(
        api: TestClient, filled: dict) -> None:
    sid = filled["id"]
    m = api.get(f"/v1/studies/{sid}/insights/map", params={"max_points": 50}).json()
    n = m["shown"]
    assert 10 <= n <= 50 + 50 and m["total"] == sum(t["state"] == "complete"
                                                     for t in filled["all"])
    for column in ("x", "y", "value", "number", "trial_id", "cluster", "label"):
        assert len(m["points"][column]) == n
    assert sum(c["size"] for c in m["clusters"]) == n
    assert 0.0 <= m["explained"][1] <= m["explained"][0] <= 1.0
    region = m["best_region"]
    assert region is not None and region["count"] == n // 10 == len(region["trial_ids"])
    by_id = dict(zip(m["points"]["trial_id"], m["points"]["value"], strict=True))
    cut = sorted(m["points"]["value"])[n // 10 - 1]
    assert all(by_id[i] <= cut for i in region["trial_ids"])  # minimize: the smallest tenth
    assert len(m["pruned"]["x"]) == len(m["pruned"]["predicted"])
    again = api.get(f"/v1/studies/{sid}/insights/map", params={"max_points": 50}).json()
    assert again["points"] == m["points"]  # deterministic: the same picture twice


def test_trials_table_filters_sorts_and_pages_like_the_stored_trials(
        api: TestClient, filled: dict) -> None:
    sid = filled["id"]
    expected = [t for t in filled["all"] if t["state"] == "complete"
                and 1e-3 <= t["params"]["lr"] <= 1e-1 and t["params"]["op"] == "skip"]
    expected.sort(key=lambda t: (-t["value"], t["number"]))
    seen, offset = [], 0
    while True:
        page = api.get(f"/v1/studies/{sid}/insights/trials", params={
            "state": "complete", "range": "lr:0.001:0.1", "choice": "op:skip",
            "sort": "-value", "offset": offset, "limit": 7}).json()
        assert page["total"] == len(expected)
        seen += page["trials"]
        offset += 7
        if offset >= page["total"]:
            break
    assert [t["id"] for t in seen] == [t["id"] for t in expected]

    by_value = api.get(f"/v1/studies/{sid}/insights/trials",
                       params={"sort": "value", "limit": 200}).json()["trials"]
    values = [t["value"] for t in by_value]
    present = [v for v in values if v is not None]
    assert present == sorted(present) and values[len(present):] == [None] * (len(values)
                                                                             - len(present))


@pytest.mark.parametrize(("params", "field"), [
    ({"range": "zz:1:2"}, "range"), ({"range": "lr:2:1"}, "range"), ({"range": "lr:a:b"}, "range"),
    ({"range": "op:1:2"}, "range"), ({"range": "lr:nan:1"}, "range"),
    ({"choice": "op:nope"}, "choice"), ({"choice": "lr:1"}, "choice"),
    ({"sort": "params"}, "sort"), ({"limit": 201}, "limit"), ({"range": "lr:0:\x00"}, "range"),
])
def test_bad_table_filters_are_422s_naming_the_field(api: TestClient, filled: dict,
                                                     params: dict, field: str) -> None:
    response = api.get(f"/v1/studies/{filled['id']}/insights/trials", params=params)
    assert response.status_code == 422, response.text
    assert field in response.text


@pytest.mark.parametrize("path", ["history", "params", "curves", "map", "trials"])
def test_insights_are_the_owners_only(api: TestClient, app, filled: dict, path: str) -> None:
    mine = api.get(f"/v1/studies/{filled['id']}/insights/{path}")
    assert mine.status_code == 200
    other = api.get(f"/v1/studies/{filled['id']}/insights/{path}",
                    headers={"Authorization": f"Bearer {new_key(app)}"})
    assert other.status_code == 404
    anonymous = api.get(f"/v1/studies/{filled['id']}/insights/{path}",
                        headers={"Authorization": ""})
    assert anonymous.status_code == 401


@pytest.mark.parametrize("limit", [9, 5001])
def test_point_limits_are_bounded(api: TestClient, filled: dict, limit: int) -> None:
    response = api.get(f"/v1/studies/{filled['id']}/insights/history",
                       params={"max_points": limit})
    assert response.status_code == 422 and "max_points" in response.text


def test_empty_study_insights_answer_empty(api: TestClient) -> None:
    sid = api.post("/v1/studies", json={"name": "empty", "direction": "maximize",
                                        "space": SPACE}).json()["id"]
    for path in ("history", "params", "curves", "map", "trials"):
        assert api.get(f"/v1/studies/{sid}/insights/{path}").status_code == 200
    m = api.get(f"/v1/studies/{sid}/insights/map").json()
    assert m["shown"] == 0 and m["best_region"] is None and m["clusters"] == []


def test_studies_search_order_revision_and_last_activity(api: TestClient) -> None:
    ids = [api.post("/v1/studies", json={"name": name, "direction": "minimize",
                                         "space": SPACE}).json()["id"]
           for name in ("ResNet_a", "resnet-b", "vit", "100%_done")]
    found = api.get("/v1/studies", params={"search": "RESNET"}).json()
    assert [s["id"] for s in found["studies"]] == ids[:2] and found["total"] == 2
    # LIKE wildcards in a search are literal characters
    assert [s["id"] for s in api.get("/v1/studies", params={"search": "_"}).json()["studies"]] \
        == [ids[0], ids[3]]
    assert api.get("/v1/studies", params={"search": "%"}).json()["total"] == 1
    newest = api.get("/v1/studies", params={"order": "-created"}).json()["studies"]
    assert [s["id"] for s in newest] == ids[::-1]

    before = api.get(f"/v1/studies/{ids[2]}").json()
    assert before["last_activity"] is None
    trial = api.post(f"/v1/studies/{ids[2]}/ask").json()["trials"][0]
    api.post(f"/v1/studies/{ids[2]}/trials/{trial['id']}/tell", json={"value": 1.0})
    after = api.get(f"/v1/studies/{ids[2]}").json()
    assert after["revision"] > before["revision"]
    assert after["last_activity"] is not None


def test_a_choice_filter_on_mixed_type_choices_matches_only_its_own(api: TestClient) -> None:
    """A categorical may mix strings, booleans and numbers (conftest's MIXED_SPACE): filtering by
    one must not try to read the others as its type (a database error on PostgreSQL)."""
    from tests.conftest import MIXED_SPACE

    sid = api.post("/v1/studies", json={"name": "mixed-choices", "direction": "minimize",
                                        "space": MIXED_SPACE}).json()["id"]
    cells = ["conv3", True, 7, "skip", 7]
    response = api.post(f"/v1/studies/{sid}/trials:batch", json={"trials": [
        {"params": {"depth": 1, "cell": cell, "lr": 0.01, "dropout": 0.1}, "value": float(i)}
        for i, cell in enumerate(cells)]})
    assert response.status_code == 201, response.text
    for text, wanted in (("cell:7", 7), ("cell:True", True), ("cell:conv3", "conv3")):
        page = api.get(f"/v1/studies/{sid}/insights/trials", params={"choice": text})
        assert page.status_code == 200, page.text
        found = [t["params"]["cell"] for t in page.json()["trials"]]
        assert found == [c for c in cells if c == wanted and type(c) is type(wanted)]
