"""The per-study history cache stays exact when other processes write to the same database."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.app import create_app
from service.db.session import transaction
from service.engine.history import TrialState
from tests.conftest import MIXED_SPACE, make_settings, new_key


def test_cache_catches_up_with_writes_made_by_another_server(database_url: str) -> None:
    one = create_app(make_settings(database_url))
    two = create_app(make_settings(database_url))  # a second "process": its own cache and pool
    with TestClient(one) as a, TestClient(two) as b:
        key = new_key(one)
        a.headers["Authorization"] = b.headers["Authorization"] = f"Bearer {key}"
        study = a.post("/v1/studies", json={"name": "x", "space": MIXED_SPACE}).json()
        sid = study["id"]
        first = a.post(f"/v1/studies/{sid}/ask", json={"count": 3}).json()["trials"]
        second = b.post(f"/v1/studies/{sid}/ask", json={"count": 2}).json()["trials"]
        assert [t["number"] for t in first + second] == [0, 1, 2, 3, 4]
        for i, trial in enumerate(first + second):
            server = a if i % 2 else b
            server.post(f"/v1/studies/{sid}/trials/{trial['id']}/tell", json={"value": float(i)})
        a.post(f"/v1/studies/{sid}/ask")  # a's cache was filled before b's tells
        with transaction(one.state.context.sessions) as session:
            cached = one.state.context.histories.load(session, sid, "minimize")
        assert [t.number for t in cached.trials] == [0, 1, 2, 3, 4, 5]
        assert [t.value for t in cached.trials[:5]] == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert all(t.state is TrialState.COMPLETE for t in cached.trials[:5])
        assert cached.trials[5].state is TrialState.RUNNING


def test_cache_reads_only_changed_rows(database_url: str, monkeypatch) -> None:
    from service.db import trial_queries

    app = create_app(make_settings(database_url))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        sid = api.post("/v1/studies", json={"name": "x", "space": MIXED_SPACE}).json()["id"]
        for trial in api.post(f"/v1/studies/{sid}/ask", json={"count": 20}).json()["trials"]:
            api.post(f"/v1/studies/{sid}/trials/{trial['id']}/tell", json={"value": 1.0})
        api.post(f"/v1/studies/{sid}/ask")  # the cache now holds 20 finished + 1 running
        (last,) = api.post(f"/v1/studies/{sid}/ask").json()["trials"]
        api.post(f"/v1/studies/{sid}/trials/{last['id']}/tell", json={"value": 2.0})
        rows_read: list[int] = []
        real = trial_queries.changed_since

        def counting(session, study_id, revision):  # type: ignore[no-untyped-def]
            rows = real(session, study_id, revision)
            rows_read.append(len(rows))
            return rows

        monkeypatch.setattr(trial_queries, "changed_since", counting)
        (trial,) = api.post(f"/v1/studies/{sid}/ask").json()["trials"]
        assert trial["number"] == 22
        assert rows_read == [1]  # only the trial told since the last ask, not all 22


def test_cached_seen_keys_match_a_full_recount_through_state_changes(database_url: str) -> None:
    """The cache keeps the engine's "don't propose again" keys row by row; they must equal a
    recount over the whole history after completes, failures, infeasibles and a late tell."""
    from service.engine.history import seen_keys

    app = create_app(make_settings(database_url))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        sid = api.post("/v1/studies", json={"name": "x", "space": MIXED_SPACE,
                                            "heartbeat_timeout_s": 60}).json()["id"]
        trials = api.post(f"/v1/studies/{sid}/ask", json={"count": 8}).json()["trials"]
        bodies = [{"value": 1.0}, {"state": "failed"}, {"state": "infeasible"}, {"value": 2.0}]
        for trial, body in zip(trials, bodies, strict=False):
            api.post(f"/v1/studies/{sid}/trials/{trial['id']}/tell", json=body)
        api.post(f"/v1/studies/{sid}/trials", json={"params": trials[1]["params"]})
        api.post(f"/v1/studies/{sid}/ask", json={"count": 2})
        with transaction(app.state.context.sessions) as session:
            cached = app.state.context.histories.load(session, sid, "minimize")
        recount = seen_keys(type(cached)(cached.direction, cached.trials, cached.pruned))
        assert cached.seen is not None and set(cached.seen) == recount
        states = {t.state for t in cached.trials}
        assert {TrialState.FAILED, TrialState.INFEASIBLE, TrialState.COMPLETE,
                TrialState.RUNNING} <= states
        # The failed trial's configuration was enqueued again and handed out: it counts once.
        failed_key = seen_keys(type(cached)("minimize", (cached.trials[1],)))
        assert failed_key == set()
