"""Enqueue with some params left out (Optuna's enqueue_trial with fixed values): the given ones
are checked against the space and its conditions; the ask that hands the trial out fills the
rest, reproducibly from the study's seed; ``skip_if_exists`` returns a trial that has them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.engine.space import SearchSpace
from tests.api.test_ask_tell import ask, tell
from tests.conftest import MIXED_SPACE, unique_name


def enqueue(api: TestClient, study: dict, params: dict, **extra: object):
    return api.post(f"/v1/studies/{study['id']}/trials", json={"params": params, **extra})


def test_a_partial_trial_is_handed_out_with_the_rest_filled(api: TestClient, study) -> None:
    queued = enqueue(api, study, {"lr": 0.01, "depth": 3})
    assert queued.status_code == 201, queued.text
    assert queued.json()["state"] == "waiting"
    assert queued.json()["params"] == {"depth": 3, "lr": 0.01}
    (trial,) = ask(api, study)
    assert trial["id"] == queued.json()["id"] and trial["proposal"]["strategy"] == "user"
    assert trial["params"]["lr"] == 0.01 and trial["params"]["depth"] == 3
    space = SearchSpace.from_dict(MIXED_SPACE)
    assert space.validate_config(trial["params"]) == trial["params"]  # full and valid
    assert "width_3" in trial["params"]  # active under depth 3, so filled too
    stored = api.get(f"/v1/studies/{study['id']}/trials/{trial['id']}").json()
    assert stored["params"] == trial["params"]


def test_the_filled_values_follow_the_seed(api: TestClient) -> None:
    def filled(seed: int) -> dict:
        study = api.post("/v1/studies", json={"name": unique_name("fill"), "space": MIXED_SPACE,
                                              "seed": seed}).json()
        enqueue(api, study, {"cell": "skip"})
        return ask(api, study)[0]["params"]

    assert filled(5) == filled(5)
    assert filled(5) != filled(6)


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"depth": 1, "width_3": 32}, "params.width_3", "inactive"),
    ({"width_3": 32}, "params.width_3", "give 'depth' too"),
    ({"lr": 5.0}, "params.lr", "<= value <="),
    ({"nope": 1}, "params.nope", "not a parameter"),
    ({"cell": "conv5"}, "params.cell", "must be one of"),
])
def test_invalid_given_params_are_422_naming_them(api: TestClient, study, params: dict,
                                                  field: str, words: str) -> None:
    response = enqueue(api, study, params)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    assert words in response.json()["detail"]


def test_the_same_partial_enqueue_while_waiting_is_the_same_trial(api: TestClient, study) -> None:
    first = enqueue(api, study, {"lr": 0.01})
    again = enqueue(api, study, {"lr": 0.01})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


def test_skip_if_exists_returns_a_trial_with_those_values_in_any_state(api: TestClient,
                                                                      study) -> None:
    full = {"depth": 1, "cell": "conv3", "lr": 0.01, "dropout": 0.2}
    ran = enqueue(api, study, full).json()
    (trial,) = ask(api, study)
    tell(api, study, trial, value=0.3)
    skipped = enqueue(api, study, full, skip_if_exists=True)
    assert skipped.status_code == 200 and skipped.json()["id"] == ran["id"]
    assert skipped.json()["state"] == "complete"
    assert enqueue(api, study, full).status_code == 201  # a second measurement, on purpose
    # a partial enqueue matches on the values it fixed, after its trial was filled and ran
    partial = enqueue(api, study, {"lr": 0.02}).json()
    ask(api, study, count=2)
    again = enqueue(api, study, {"lr": 0.02}, skip_if_exists=True)
    assert again.status_code == 200 and again.json()["id"] == partial["id"]
    assert enqueue(api, study, {"lr": 0.03}, skip_if_exists=True).status_code == 201
