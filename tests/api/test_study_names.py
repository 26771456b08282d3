"""Study names are unique per owner: a second create with a name the owner has is a 409 naming
``name`` (also when two creates race), and another owner may use the same name."""

from __future__ import annotations

import threading
import uuid

from fastapi.testclient import TestClient

from service.db import key_queries, study_queries
from service.db.session import transaction
from service.errors import Conflict
from service.schemas import StudyCreate
from service.usecases import study_lifecycle
from tests.conftest import MIXED_SPACE, new_key

BODY = {"name": "mlp", "space": MIXED_SPACE}


def test_a_name_the_owner_has_is_409_naming_name(api: TestClient) -> None:
    first = api.post("/v1/studies", json=BODY)
    assert first.status_code == 201
    again = api.post("/v1/studies", json={**BODY, "direction": "maximize"})
    assert again.status_code == 409, again.text
    assert again.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in again.json()["errors"]] == ["name"]
    assert "'mlp'" in again.json()["detail"]
    listed = api.get("/v1/studies", params={"name": "mlp"}).json()
    assert listed["total"] == 1 and listed["studies"][0]["id"] == first.json()["id"]


def test_another_owner_may_use_the_same_name(api: TestClient, app) -> None:
    assert api.post("/v1/studies", json=BODY).status_code == 201
    other = api.post("/v1/studies", json=BODY,
                     headers={"Authorization": f"Bearer {new_key(app)}"})
    assert other.status_code == 201


def test_a_deleted_study_frees_its_name(api: TestClient) -> None:
    first = api.post("/v1/studies", json=BODY).json()
    assert api.delete(f"/v1/studies/{first['id']}").status_code == 204
    assert api.post("/v1/studies", json=BODY).status_code == 201


def test_two_creates_racing_for_one_name_make_one_study_and_one_conflict(app, api) -> None:
    """The second create checks the name while the first one's insert is not committed yet (on
    PostgreSQL it then waits on the unique index; on SQLite on the file lock): it must answer a
    conflict, never a 500, and leave exactly one study."""
    ctx = app.state.context
    name = f"race-{uuid.uuid4().hex[:8]}"
    with transaction(ctx.sessions) as session:
        owner_id = key_queries.get_or_create_owner(session, f"owner-{name}").id
    outcome: list[object] = []
    first_inserted = threading.Event()

    def second() -> None:
        first_inserted.wait(30)
        try:
            outcome.append(study_lifecycle.create_study(
                ctx, owner_id, StudyCreate.model_validate({**BODY, "name": name})))
        except BaseException as error:  # asserted below, in the test's thread
            outcome.append(error)

    thread = threading.Thread(target=second)
    thread.start()
    with transaction(ctx.sessions) as session:
        created = study_queries.create_study(
            session, owner_id, name=name, direction="minimize", space=MIXED_SPACE, seed=0,
            heartbeat_timeout_s=300.0, static_metrics=[], transfer_from=[], fidelity=None)
        assert created is not None
        first_inserted.set()
        thread.join(0.5)  # let the second create reach the name (it cannot finish before us)
    thread.join(60)  # a hang detector only
    assert not thread.is_alive()
    (error,) = outcome
    assert isinstance(error, Conflict) and error.field == "name", error
    with ctx.sessions() as session:
        rows, total = study_queries.list_studies(session, owner_id, name)
    assert total == 1 and rows[0].id == created.id
