"""User attributes on studies and trials: merged by PATCH (null deletes a key), returned by every
read and in trials.csv, bounded per object (422 naming the field past a limit)."""

from __future__ import annotations

import csv
import io
import json
import threading

import pytest
from fastapi.testclient import TestClient

from service.usecases.user_attrs import MAX_BYTES, MAX_KEY_LENGTH, MAX_KEYS
from tests.api.test_ask_tell import ask, tell


def test_study_attrs_merge_delete_and_come_back_in_reads(api: TestClient, study: dict) -> None:
    url = f"/v1/studies/{study['id']}"
    assert study["user_attrs"] == {}
    first = api.patch(url, json={"user_attrs": {"dataset": "cifar10", "tags": ["a", {"b": 1}]}})
    assert first.status_code == 200, first.text
    assert first.json()["user_attrs"] == {"dataset": "cifar10", "tags": ["a", {"b": 1}]}
    second = api.patch(url, json={"user_attrs": {"tags": None, "owner": "me"}}).json()
    assert second["user_attrs"] == {"dataset": "cifar10", "owner": "me"}
    assert api.get(url).json()["user_attrs"] == {"dataset": "cifar10", "owner": "me"}
    listed = api.get("/v1/studies", params={"name": study["name"]}).json()["studies"][0]
    assert listed["user_attrs"] == {"dataset": "cifar10", "owner": "me"}


def test_trial_attrs_are_settable_while_running_and_after(api: TestClient, study: dict) -> None:
    (trial,) = ask(api, study)
    url = f"/v1/studies/{study['id']}/trials/{trial['id']}"
    running = api.patch(url, json={"user_attrs": {"host": "gpu-3"}})
    assert running.status_code == 200 and running.json()["state"] == "running"
    assert running.json()["user_attrs"] == {"host": "gpu-3"}
    tell(api, study, trial, value=0.5)
    done = api.patch(url, json={"user_attrs": {"note": "rerun", "host": None}}).json()
    assert done["state"] == "complete" and done["value"] == 0.5
    assert done["user_attrs"] == {"note": "rerun"}
    assert api.get(url).json()["user_attrs"] == {"note": "rerun"}
    page = api.get(f"/v1/studies/{study['id']}/trials").json()["trials"]
    assert page[0]["user_attrs"] == {"note": "rerun"}
    rows = list(csv.DictReader(io.StringIO(api.get(f"/v1/studies/{study['id']}/trials.csv").text)))
    assert json.loads(rows[0]["user_attrs"]) == {"note": "rerun"}


@pytest.mark.parametrize(("attrs", "field", "words"), [
    ({f"k{i}": i for i in range(MAX_KEYS + 1)}, "user_attrs", f"at most {MAX_KEYS} keys"),
    ({"big": "x" * MAX_BYTES}, "user_attrs", f"at most {MAX_BYTES} bytes"),
    ({"k" * (MAX_KEY_LENGTH + 1): 1}, f"user_attrs.{'k' * MAX_KEY_LENGTH}", "1 to 128"),
    ({"": 1}, "user_attrs.", "1 to 128"),
])
def test_attrs_past_a_limit_are_422_naming_the_field(api: TestClient, study: dict, attrs: dict,
                                                    field: str, words: str) -> None:
    (trial,) = ask(api, study)
    for url in (f"/v1/studies/{study['id']}", f"/v1/studies/{study['id']}/trials/{trial['id']}"):
        response = api.patch(url, json={"user_attrs": attrs})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field
        assert words in response.json()["detail"]
        assert api.get(url).json()["user_attrs"] == {}  # nothing stored


def test_the_key_limit_counts_the_merged_object(api: TestClient, study: dict) -> None:
    url = f"/v1/studies/{study['id']}"
    half = MAX_KEYS // 2 + 1
    assert api.patch(url, json={"user_attrs": {f"a{i}": i for i in range(half)}}).status_code == 200
    response = api.patch(url, json={"user_attrs": {f"b{i}": i for i in range(half)}})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "user_attrs"
    # deleting as many keys as are added keeps the object within the limit
    swap = {**{f"a{i}": None for i in range(half)}, **{f"b{i}": i for i in range(half)}}
    assert api.patch(url, json={"user_attrs": swap}).json()["user_attrs"] == \
        {f"b{i}": i for i in range(half)}


@pytest.mark.parametrize("body", ['{"user_attrs": {"x": NaN}}', '{"user_attrs": {"x": [Infinity]}}',
                                  '{"user_attrs": {"x": "\\u0000"}}', '{"user_attrs": []}',
                                  '{"user_attrs": {}, "other": 1}'])
def test_unstorable_or_malformed_attrs_are_422(api: TestClient, study: dict, body: str) -> None:
    response = api.patch(f"/v1/studies/{study['id']}", content=body,
                         headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"].startswith(("user_attrs", "other"))


def test_unknown_trial_or_another_owners_study_is_404(api: TestClient, app, study: dict) -> None:
    from tests.conftest import new_key

    assert api.patch(f"/v1/studies/{study['id']}/trials/999999",
                     json={"user_attrs": {"a": 1}}).status_code == 404
    stranger = {"Authorization": f"Bearer {new_key(app)}"}
    assert api.patch(f"/v1/studies/{study['id']}", json={"user_attrs": {"a": 1}},
                     headers=stranger).status_code == 404
    assert api.get(f"/v1/studies/{study['id']}").json()["user_attrs"] == {}


def test_concurrent_patches_of_one_trial_lose_no_key(api: TestClient, study: dict) -> None:
    """Each PATCH reads, merges and writes under the trial's row lock: none overwrites another."""
    (trial,) = ask(api, study)
    url = f"/v1/studies/{study['id']}/trials/{trial['id']}"
    statuses: list[int] = []

    def patch(i: int) -> None:
        statuses.append(api.patch(url, json={"user_attrs": {f"k{i}": i}}).status_code)

    threads = [threading.Thread(target=patch, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * 8
    assert api.get(url).json()["user_attrs"] == {f"k{i}": i for i in range(8)}
