"""What the most frequent requests send to the database, statement by statement.

On a busy host every statement waits for the database, so the count is the cost that grows with
load (``docs/scaling.md``). These hold the counts of the hot paths, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from sqlalchemy import event

from tests.conftest import MIXED_SPACE, unique_name

FIDELITY = {"name": "epoch", "min": 1, "max": 52}


@contextmanager
def recorded(app) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        text = " ".join(statement.split())
        # the API key's lookup is authentication's, the same for every request
        if text.upper() not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK") \
                and "FROM api_keys" not in text:
            statements.append(text)

    event.listen(app.state.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(app.state.engine, "before_cursor_execute", record)


def new_study(api: TestClient, **fields) -> str:
    response = api.post("/v1/studies", json={"name": unique_name("sql"), "space": MIXED_SPACE,
                                             **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def ask_one(api: TestClient, study_id: str) -> dict:
    response = api.post(f"/v1/studies/{study_id}/ask")
    assert response.status_code == 200, response.text
    return response.json()["trials"][0]


def test_a_sequential_workers_ask_skips_what_only_running_trials_need(app, api: TestClient
                                                                      ) -> None:
    """With nothing running or enqueued (its last trial told), an ask neither fails stale
    trials, nor looks for enqueued ones; with a trial running it fails stale ones. Neither counts
    the running trials in the database: the history as of the study's lock knows them."""
    study_id = new_study(api)
    for value in (3.0, 2.0, 1.0):
        trial = ask_one(api, study_id)
        api.post(f"/v1/studies/{study_id}/trials/{trial['id']}/tell", json={"value": value})
    with recorded(app) as sequential:
        running = ask_one(api, study_id)
    with recorded(app) as concurrent:
        ask_one(api, study_id)
    assert not any(s.startswith("UPDATE trials") for s in sequential)
    assert not any("trials.state =" in s and s.startswith("SELECT trials") for s in sequential)
    assert len(sequential) <= 7, sequential
    assert any(s.startswith("UPDATE trials") for s in concurrent)  # stale ones are failed
    assert not any("count(" in s.lower() for s in sequential + concurrent)
    assert len(concurrent) <= 8, concurrent
    assert running["state"] == "running"


def test_an_enqueued_trial_is_still_handed_out_first(app, api: TestClient) -> None:
    """The ask looks for enqueued trials only when its history holds one: it must still find
    one enqueued by another request, before proposing."""
    study_id = new_study(api)
    ask_one(api, study_id)  # one running
    params = {"depth": 2, "cell": "skip", "lr": 0.01, "dropout": 0.2}
    enqueued = api.post(f"/v1/studies/{study_id}/trials", json={"params": params})
    assert enqueued.status_code == 201, enqueued.text
    with recorded(app) as statements:
        handed = ask_one(api, study_id)
    assert handed["id"] == enqueued.json()["id"]
    assert any("trials.state =" in s and s.startswith("SELECT trials") for s in statements)


def test_a_report_between_rungs_is_three_statements(app, api: TestClient) -> None:
    study_id = new_study(api, fidelity=FIDELITY)
    trial = ask_one(api, study_id)
    url = f"/v1/studies/{study_id}/trials/{trial['id']}/report"
    assert api.post(url, json={"step": 1, "value": 0.9}).status_code == 200
    with recorded(app) as between:
        assert api.post(url, json={"step": 2, "value": 0.8}).json()["should_stop"] is False
    with recorded(app) as again:
        assert api.post(url, json={"step": 2, "value": 0.8}).status_code == 200
    assert len(between) == 3, between  # the joined, locked read; the insert; the trial's update
    assert len(again) == 2, again  # the read, and the heartbeat
