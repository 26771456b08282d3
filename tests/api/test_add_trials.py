"""Finished trials recorded in one request (Optuna's add_trials): all or nothing, bounded, and
the engine, the stopping policy and transfer learn from them as from told trials."""

from __future__ import annotations

import random

import pytest
from fastapi.testclient import TestClient

from service.schemas import MAX_IMPORT_TRIALS
from tests.api.test_ask_tell import ask
from tests.conftest import MIXED_SPACE, unique_name

FIDELITY = {"name": "epoch", "min": 1, "max": 27}


def config(i: int) -> dict:
    rng = random.Random(i)
    depth = rng.randint(1, 4)
    out = {"depth": depth, "cell": rng.choice(["conv3", "conv1", "skip", True, 7]),
           "lr": 10 ** rng.uniform(-4, -1), "dropout": rng.choice([0.0, 0.1, 0.2, 0.3])}
    if depth >= 3:
        out["width_3"] = rng.randint(16, 256)
    return out


def add(api: TestClient, study: dict, items: list[dict]):
    return api.post(f"/v1/studies/{study['id']}/trials:batch", json={"trials": items})


def test_each_state_is_recorded_with_its_curve_and_attrs(api: TestClient) -> None:
    study = api.post("/v1/studies", json={"name": unique_name("add"), "space": MIXED_SPACE,
                                          "fidelity": FIDELITY}).json()
    response = add(api, study, [
        {"params": config(0), "value": 0.5, "intermediate": [[3, 0.7], [1, 0.9]],
         "user_attrs": {"source": "optuna"}, "started_at": "2026-01-01T10:00:00Z",
         "completed_at": "2026-01-01T10:05:00Z"},
        {"params": config(1), "state": "failed", "reason": "OOM"},
        {"params": config(2), "state": "stopped", "intermediate": [[1, 0.95], [3, 0.8]]},
        {"params": config(3), "state": "infeasible"},
    ])
    assert response.status_code == 201, response.text
    trials = response.json()["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    assert [t["state"] for t in trials] == ["complete", "failed", "stopped", "infeasible"]
    assert trials[0]["intermediate"] == [[1, 0.9], [3, 0.7]] and trials[0]["last_step"] == 3
    assert trials[0]["user_attrs"] == {"source": "optuna"}
    assert trials[0]["started_at"].startswith("2026-01-01T10:00")
    assert trials[0]["completed_at"].startswith("2026-01-01T10:05")
    assert trials[2]["value"] == 0.8 and trials[2]["last_step"] == 3
    assert trials[1]["reason"] == "OOM" and trials[1]["value"] is None
    assert {t["proposal"]["strategy"] for t in trials} == {"imported"}
    stored = api.get(f"/v1/studies/{study['id']}").json()
    assert stored["trials_by_state"] == {"complete": 1, "failed": 1, "stopped": 1,
                                         "infeasible": 1}
    assert stored["best_trial"]["id"] == trials[0]["id"]
    curve = api.get(f"/v1/studies/{study['id']}/trials/{trials[2]['id']}/curve").json()
    assert curve["points"] == [[1, 0.95], [3, 0.8]]
    # the stopping policy was recalibrated on the imported finished curves
    assert api.get(f"/v1/studies/{study['id']}/stopping").json()["curves"] == 2


def test_imported_curves_count_at_their_first_step_past_each_rung(app, api: TestClient) -> None:
    study = api.post("/v1/studies", json={"name": unique_name("add"), "space": MIXED_SPACE,
                                          "fidelity": FIDELITY}).json()  # rungs 1, 3, 9
    every_other = [[s, 1.0 / s] for s in range(2, 28, 2)]
    assert add(api, study, [{"params": config(0), "value": 0.01, "intermediate": every_other},
                            {"params": config(1), "value": 0.02,
                             "intermediate": [[10, 0.3], [4, 0.5]]}]).status_code == 201
    context = app.state.context
    with context.sessions() as session:
        history = context.histories.load(session, study["id"], "minimize", rungs=(1, 3, 9))
    # what the same reports sent one by one would have reached: rung 1 at step 2, 3 at 4, 9 at 10
    assert [t.curve for t in history.trials] == [((1, 0.5), (3, 0.25), (9, 0.1)),
                                                  ((3, 0.5), (9, 0.3))]
    rules = api.get(f"/v1/studies/{study['id']}/stopping").json()["rules"]
    assert {r["step"]: r["pairs"] for r in rules} == {1: 1, 3: 2, 9: 2}


def test_asks_continue_from_the_imported_history(api: TestClient, study: dict) -> None:
    assert ask(api, study)[0]["proposal"]["strategy"] == "initial"  # a cold study: the design
    items = [{"params": config(i), "value": float(i)} for i in range(12)]
    assert add(api, study, items).status_code == 201
    (trial,) = ask(api, study)
    assert trial["number"] == 13  # 1 asked + 12 imported before it
    assert trial["proposal"]["strategy"] != "initial"  # the design is done: models steer


def test_an_imported_study_is_a_transfer_source(api: TestClient, study: dict) -> None:
    add(api, study, [{"params": config(i), "value": float(i % 7)} for i in range(12)])
    warm = api.post("/v1/studies", json={"name": unique_name("warm"), "space": MIXED_SPACE,
                                         "transfer": "auto"}).json()
    assert warm["transfer"]["sources"] == [study["id"]]


@pytest.mark.parametrize(("item", "field"), [
    ({"params": {"depth": 1}, "value": 1.0}, "trials[1].params.cell"),
    ({"params": {**config(4), "lr": 9.0}, "value": 1.0}, "trials[1].params.lr"),
    ({"params": config(4)}, "trials[1]"),  # complete without a value
    ({"params": config(4), "state": "failed", "value": 1.0}, "trials[1]"),
    ({"params": config(4), "state": "stopped"}, "trials[1]"),  # nothing to keep
    ({"params": config(4), "value": 1.0, "intermediate": [[1, 0.5], [1, 0.6]]},
     "trials[1].intermediate"),
    ({"params": config(4), "value": 1.0, "intermediate": [[99, 0.5]]}, "trials[1].intermediate"),
    ({"params": config(4), "value": 1.0, "user_attrs": {"k" * 200: 1}},
     f"trials[1].user_attrs.{'k' * 128}"),
    ({"params": config(4), "value": 1.0, "static_metrics": {"flops": 1.0}},
     "trials[1].static_metrics.flops"),
    ({"params": config(4), "value": 1.0, "completed_at": "2026-01-01T10:00:00"},
     "trials[1].completed_at"),
])
def test_one_bad_item_is_a_422_naming_it_and_nothing_is_recorded(api: TestClient, item: dict,
                                                                 field: str) -> None:
    study = api.post("/v1/studies", json={"name": unique_name("bad"), "space": MIXED_SPACE,
                                          "fidelity": FIDELITY}).json()
    response = add(api, study, [{"params": config(0), "value": 1.0}, item])
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    assert api.get(f"/v1/studies/{study['id']}/trials").json()["total"] == 0
    assert add(api, study, [{"params": config(0), "value": 1.0}]).json()["trials"][0][
        "number"] == 0  # no number was used up


def test_more_than_the_limit_per_request_is_422(api: TestClient, study: dict) -> None:
    item = {"params": config(0), "value": 1.0}
    response = add(api, study, [item] * (MAX_IMPORT_TRIALS + 1))
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "trials"
    assert add(api, study, []).status_code == 422
    assert add(api, study, [item] * MAX_IMPORT_TRIALS).status_code == 201
