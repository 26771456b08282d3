"""Studies: creation, validation (422 naming the field), listing, ownership, deletion."""

from __future__ import annotations

import copy

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MIXED_SPACE, new_key


def create(api: TestClient, space: dict, **extra: object):
    return api.post("/v1/studies", json={"name": "s", "space": space, **extra})


def test_create_study_returns_its_id_and_normalised_space(api: TestClient) -> None:
    response = create(api, MIXED_SPACE, direction="maximize", seed=3)
    assert response.status_code == 201
    body = response.json()
    assert len(body["id"]) == 32
    assert body["direction"] == "maximize" and body["seed"] == 3
    assert [p["name"] for p in body["space"]["params"]] == [p["name"] for p in
                                                            MIXED_SPACE["params"]]
    assert body["n_trials"] == 0 and body["best_trial"] is None
    assert api.get(f"/v1/studies/{body['id']}").json()["id"] == body["id"]


def _with(index: int, **changes: object) -> dict:
    space = copy.deepcopy(MIXED_SPACE)
    space["params"][index].update(changes)
    return space


@pytest.mark.parametrize(("space", "field", "words"), [
    (_with(3, low=0.1, high=0.001), "space.params[3].high", "low <= high"),
    (_with(3, low=0.0), "space.params[3].low", "low > 0"),
    (_with(4, step=0.3), "space.params[4].step", "must divide"),
    (_with(1, name="depth"), "space.params[1].name", "duplicate name"),
    (_with(1, condition={"parent": "nope", "values": [1]}), "space.params[1].condition.parent",
     "unknown param"),
    (_with(1, condition={"parent": "depth", "values": [9]}),
     "space.params[1].condition.values[0]", "not a possible value"),
    (_with(2, choices=[]), "space.params[2].choices", ""),
    (_with(2, choices=["a", "a"]), "space.params[2].choices[1]", "duplicate choice"),
    (_with(0, type="tensor"), "space.params[0].type", ""),
    (_with(0, low="one"), "space.params[0].low", ""),
    (_with(0, colour="red"), "space.params[0].colour", ""),
    ({"params": []}, "space.params", ""),
    ({"params": [{"name": f"p{i}", "type": "float", "low": 0, "high": 1}
                 for i in range(300)]}, "space.params", ""),
])
def test_invalid_space_is_422_naming_the_field(api: TestClient, space: dict, field: str,
                                               words: str) -> None:
    response = create(api, space)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert any(e["field"] == field for e in problem["errors"]), problem
    assert words in problem["detail"]
    assert api.get("/v1/studies").json()["studies"] == []  # nothing stored


def test_condition_cycle_is_rejected(api: TestClient) -> None:
    space = {"params": [
        {"name": "a", "type": "categorical", "choices": [1, 2],
         "condition": {"parent": "b", "values": [1]}},
        {"name": "b", "type": "categorical", "choices": [1, 2],
         "condition": {"parent": "a", "values": [1]}},
    ]}
    response = create(api, space)
    assert response.status_code == 422
    assert "cycle" in response.json()["detail"]


def test_wrong_direction_and_unknown_top_level_field_are_422(api: TestClient) -> None:
    response = create(api, MIXED_SPACE, direction="sideways")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "direction"
    response = create(api, MIXED_SPACE, budget=10)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "budget"


def test_another_owner_gets_404_and_never_sees_the_study(api: TestClient, app, study) -> None:
    other = {"Authorization": f"Bearer {new_key(app)}"}
    assert api.get(f"/v1/studies/{study['id']}", headers=other).status_code == 404
    assert api.post(f"/v1/studies/{study['id']}/ask", headers=other).status_code == 404
    assert api.delete(f"/v1/studies/{study['id']}", headers=other).status_code == 404
    assert api.get("/v1/studies", headers=other).json()["studies"] == []
    assert [s["id"] for s in api.get("/v1/studies").json()["studies"]] == [study["id"]]


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer dyesp_nope_nope",
                                    "Bearer not-a-key"])
def test_missing_or_bad_key_is_401(http: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = http.get("/v1/studies", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_revoked_key_is_401(http: TestClient, app) -> None:
    """A key revoked before this process verified it is refused at once; one it verified is
    trusted for at most ``key_cache_s`` more (docs/api-contract.md), then refused."""
    from service.db import key_queries
    from service.db.session import transaction

    now = [1000.0]
    verified = app.state.context.verified_keys
    verified._clock = lambda: now[0]
    assert verified.ttl_s > 0  # the default: verified keys are remembered
    never_used, used = new_key(app), new_key(app)
    assert http.get("/v1/studies", headers={"Authorization": f"Bearer {used}"}).status_code == 200
    with transaction(app.state.context.sessions) as session:
        for key in (never_used, used):
            assert key_queries.revoke_key(session, key.split("_")[1])
    assert http.get("/v1/studies",
                    headers={"Authorization": f"Bearer {never_used}"}).status_code == 401
    assert http.get("/v1/studies", headers={"Authorization": f"Bearer {used}"}).status_code == 200
    now[0] += verified.ttl_s
    assert http.get("/v1/studies", headers={"Authorization": f"Bearer {used}"}).status_code == 401
    # once refused, it stays refused: failures are never remembered
    assert http.get("/v1/studies", headers={"Authorization": f"Bearer {used}"}).status_code == 401


def test_a_verified_key_is_not_read_again_until_its_time_is_up(http: TestClient, app) -> None:
    from sqlalchemy import event

    now = [1000.0]
    verified = app.state.context.verified_keys
    verified._clock = lambda: now[0]
    key = new_key(app)
    reads: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        if "FROM api_keys" in statement:
            reads.append(statement)

    event.listen(app.state.engine, "before_cursor_execute", record)
    try:
        for _ in range(3):
            assert http.get("/v1/studies",
                            headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert len(reads) == 1
        now[0] += verified.ttl_s
        assert http.get("/v1/studies", headers={"Authorization": f"Bearer {key}"}).status_code \
            == 200
        assert len(reads) == 2
        # a wrong secret for the same key id is read (and refused) every time
        wrong = key[:-1] + ("B" if key[-1] != "B" else "C")
        for _ in range(2):
            assert http.get("/v1/studies",
                            headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
        assert len(reads) == 4
    finally:
        event.remove(app.state.engine, "before_cursor_execute", record)


def test_list_filters_by_name_and_delete_removes_trials(api: TestClient, study) -> None:
    create(api, MIXED_SPACE)
    names = [s["name"] for s in api.get("/v1/studies", params={"name": "mixed"}).json()["studies"]]
    assert names == ["mixed"]
    api.post(f"/v1/studies/{study['id']}/ask", json={"count": 2})
    assert api.delete(f"/v1/studies/{study['id']}").status_code == 204
    assert api.get(f"/v1/studies/{study['id']}").status_code == 404
    assert api.get(f"/v1/studies/{study['id']}/trials").status_code == 404


def test_unsupported_method_lists_every_allowed_one(api: TestClient, study) -> None:
    response = api.put("/v1/studies")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert api.put(f"/v1/studies/{study['id']}").headers["allow"] == "DELETE, GET, PATCH"


def test_unicode_names_round_trip(api: TestClient) -> None:
    space = {"params": [{"name": "échelle_学习率", "type": "float", "low": 1e-4, "high": 1.0,
                         "log": True},
                        {"name": "块", "type": "categorical", "choices": ["卷积", "🙂", "skip"]}]}
    created = create(api, space, name="étude 🚀")
    assert created.status_code == 201
    study = api.get(f"/v1/studies/{created.json()['id']}").json()
    assert study["name"] == "étude 🚀"
    assert [p["name"] for p in study["space"]["params"]] == ["échelle_学习率", "块"]
    (trial,) = api.post(f"/v1/studies/{study['id']}/ask").json()["trials"]
    assert trial["params"]["块"] in ("卷积", "🙂", "skip")


@pytest.mark.parametrize(("extra", "expected"), [
    ({"seed": 3}, True), ({}, False), ({"seed": 3, "deterministic": False}, False),
    ({"deterministic": True}, True)])
def test_deterministic_defaults_to_whether_a_seed_is_given(api: TestClient, extra: dict,
                                                           expected: bool) -> None:
    response = create(api, MIXED_SPACE, **extra)
    assert response.status_code == 201, response.text
    assert response.json()["deterministic"] is expected
    assert api.get(f"/v1/studies/{response.json()['id']}").json()["deterministic"] is expected


NB201_EDGES = [(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)]


def cell_space(**cell: object) -> dict:
    """NAS-Bench-201's six edges as one annotated cell; ``cell`` overrides the last edge's."""
    params = [{"name": f"e{a}{b}", "type": "categorical",
               "choices": ["skip", "none", "conv3", "conv1", "pool"],
               "cell": {"name": "normal", "edge": [a, b], "zero": "none"}}
              for a, b in NB201_EDGES]
    params[-1]["cell"] = {**params[-1]["cell"], **cell}
    return {"params": params}


def test_cell_annotation_is_stored_and_asks_work(api: TestClient) -> None:
    response = create(api, cell_space(), seed=1)
    assert response.status_code == 201, response.text
    stored = response.json()["space"]["params"]
    assert stored[0]["cell"] == {"name": "normal", "edge": [1, 2], "zero": "none"}
    trials = api.post(f"/v1/studies/{response.json()['id']}/ask", json={"count": 3}).json()
    assert len(trials["trials"]) == 3


@pytest.mark.parametrize(("space", "field", "words"), [
    (cell_space(edge=[4, 3]), "space.params[5].cell.edge", "`from < to` must hold"),
    (cell_space(edge=[3, 64]), "space.params[5].cell.edge[1]", "0..63"),
    (cell_space(edge=[3, 4, 5]), "space.params[5].cell.edge", ""),
    (cell_space(edge=["3", 4]), "space.params[5].cell.edge[0]", ""),
    (cell_space(edge=[1, 2]), "space.params[5].cell.edge", "already 'e12'"),
    (cell_space(zero="zero"), "space.params[5].cell.zero", "one of the param's choices"),
    (cell_space(zero="skip"), "space.params[5].cell.zero", "share one zero"),
    (cell_space(name=""), "space.params[5].cell.name", ""),
    (cell_space(colour="red"), "space.params[5].cell.colour", ""),
    ({"params": [*cell_space()["params"][:5],
                 {**cell_space()["params"][5], "choices": ["skip", "none", "conv3"]}]},
     "space.params[5].choices", "same choices in the same order"),
    ({"params": [{"name": "w", "type": "int", "low": 1, "high": 4,
                  "cell": {"name": "normal", "edge": [0, 1]}}]}, "space.params[0].cell",
     "not a field of a int param"),
])
def test_bad_cell_annotation_is_422_naming_the_field(api: TestClient, space: dict, field: str,
                                                     words: str) -> None:
    test_invalid_space_is_422_naming_the_field(api, space, field, words)
