"""Deterministic studies (issue 14): one seed, one sequential client, the same results give the
same trials, however background retraining is timed; an ask that would need a retraining not
stored yet waits for it (never the gate, never the study's lock), and answers 503 past its bound.

Real retraining only: the server's spawned child, or RQ workers on the real Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import MIXED_SPACE, REDIS_URL, make_settings, new_key
from tests.workers.test_retraining import pruner_rows, redis  # noqa: F401 (fixture)

N_TRIALS = 30
MIN_TRIALS = 10  # the first retraining is due after 10 results, then every 5: 10, 15, 20, 25, 30


def objective(params: dict) -> float:
    """Deterministic, and shaped so the pruner has something to learn."""
    return (params["lr"] - 0.01) ** 2 * 100 + params["depth"] + params["dropout"]


def ask(api: TestClient, study_id: str, refusals: list[dict] | None = None) -> dict:
    """One ask as the SDK makes it: a 503 + Retry-After (a deterministic ask that waited its
    bound for a retraining) is asked again after Retry-After."""
    while True:
        response = api.post(f"/v1/studies/{study_id}/ask", json={"client_id": "worker-0"})
        if response.status_code != 503:
            assert response.status_code == 200, response.text
            (trial,) = response.json()["trials"]
            return trial
        assert response.json()["errors"][0]["field"] == "deterministic", response.text
        if refusals is not None:
            refusals.append(response.json())
        time.sleep(float(response.headers["Retry-After"]))


def run(api: TestClient, name: str, pause_s: float = 0.0) -> tuple[str, list[dict]]:
    """A study with seed 7 and one sequential client; ``pause_s`` after each tell lets the
    background retraining land before the next ask (without it, the ask waits for it). Returns
    the ``N_TRIALS`` told trials and a last one, asked only."""
    created = api.post("/v1/studies", json={"name": name, "space": MIXED_SPACE, "seed": 7})
    assert created.status_code == 201, created.text
    study = created.json()
    assert study["deterministic"] is True  # the default when a seed is given
    trials = []
    for _ in range(N_TRIALS):
        trial = ask(api, study["id"])
        trials.append(trial)
        told = api.post(f"/v1/studies/{study['id']}/trials/{trial['id']}/tell",
                        json={"value": objective(trial["params"])})
        assert told.status_code == 200, told.text
        time.sleep(pause_s)
    # One more ask: it waits for a retraining the last tell made due, which otherwise lands
    # whenever it lands, so both runs are compared with the same pruner versions stored.
    trials.append(ask(api, study["id"]))
    return study["id"], trials


def versions(api: TestClient, study_id: str) -> list[tuple[int, bool, float | None]]:
    report = api.get(f"/v1/studies/{study_id}/pruner").json()
    return sorted((v["n_train"], v["active"], v["metrics"]["spearman_holdout"])
                  for v in report["versions"])


def assert_same_runs(api: TestClient, first: tuple[str, list[dict]],
                     second: tuple[str, list[dict]]) -> None:
    (a_id, a), (b_id, b) = first, second
    assert [t["params"] for t in a] == [t["params"] for t in b]
    assert [t["proposal"] for t in a] == [t["proposal"] for t in b]
    # The pruner had its say (or the test would pass without one): predictions were made.
    assert any(t["proposal"]["predicted"] is not None for t in a[MIN_TRIALS + 1:])
    assert versions(api, a_id) == versions(api, b_id)
    report = api.get(f"/v1/studies/{a_id}/pruner").json()
    assert report["versions"] and all(v["metrics"]["deterministic"] for v in report["versions"])
    assert all(v["device"] == "cpu" for v in report["versions"])


def test_one_seed_gives_the_same_trials_with_retraining_in_a_child(database_url: str) -> None:
    """The issue's scenario without Redis: the server trains in its spawned child. The first
    run asks at once after each tell (its asks wait for each due retraining); the second gives
    each retraining time to land first. The trials are the same."""
    eager_and_patient_runs_agree(make_settings(database_url, retrain_enabled=True,
                                               retrain_min_trials=MIN_TRIALS), "thread", "det")


def eager_and_patient_runs_agree(settings, retraining: str, prefix: str) -> None:
    """One seed run twice on a server retraining by ``retraining``: asking at once after each
    tell, then leaving each retraining time to land; the trials must be the same."""
    app = create_app(settings)
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        assert api.get("/healthz").json()["retraining"] == retraining
        first = run(api, f"{prefix}-eager")
        second = run(api, f"{prefix}-patient", pause_s=0.3)
        assert_same_runs(api, first, second)


@pytest.fixture
def rq_worker(database_url: str, redis) -> Iterator[subprocess.Popen]:  # noqa: F811
    """A real ``dyesp worker`` process on the retraining queue, with the servers' policy."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"],
        env=dict(os.environ, DYESP_DATABASE_URL=database_url, DYESP_REDIS_URL=REDIS_URL,
                 DYESP_RETRAIN_MIN_TRIALS=str(MIN_TRIALS)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=30)


def test_one_seed_gives_the_same_trials_with_an_rq_worker(database_url: str,
                                                          rq_worker: subprocess.Popen) -> None:
    eager_and_patient_runs_agree(make_settings(database_url, retrain_enabled=True,
                                               retrain_min_trials=MIN_TRIALS,
                                               redis_url=REDIS_URL), "rq", "rq")
    assert rq_worker.poll() is None


def tell_results(api: TestClient, study_id: str, n: int) -> None:
    for _ in range(n):
        trial = ask(api, study_id)
        told = api.post(f"/v1/studies/{study_id}/trials/{trial['id']}/tell",
                        json={"value": objective(trial["params"])})
        assert told.status_code == 200, told.text


def two_running_at_the_last_result_before_due(api: TestClient, study_id: str
                                              ) -> tuple[dict, dict]:
    """``MIN_TRIALS - 1`` results (nothing due yet), then two trials handed out (two clients).
    """
    tell_results(api, study_id, MIN_TRIALS - 1)
    return ask(api, study_id), api.post(f"/v1/studies/{study_id}/ask",
                                        json={"client_id": "worker-1"}).json()["trials"][0]


def tell(api: TestClient, study_id: str, trial: dict) -> None:
    told = api.post(f"/v1/studies/{study_id}/trials/{trial['id']}/tell",
                    json={"value": objective(trial["params"])})
    assert told.status_code == 200, told.text


def work_the_queue(redis, database_url: str,  # noqa: F811
                   monkeypatch: pytest.MonkeyPatch) -> None:
    from rq import Queue, SimpleWorker

    from service.retrain_queue import QUEUE_NAME

    monkeypatch.setenv("DYESP_DATABASE_URL", database_url)  # the worker's own settings
    monkeypatch.setenv("DYESP_RETRAIN_MIN_TRIALS", str(MIN_TRIALS))
    SimpleWorker([Queue(QUEUE_NAME, connection=redis)], connection=redis).work(burst=True)


def queued_jobs(redis) -> list[str]:  # noqa: F811
    from rq import Queue

    from service.retrain_queue import QUEUE_NAME

    return Queue(QUEUE_NAME, connection=redis).job_ids


def test_an_ask_waiting_past_its_bound_answers_503_and_tells_never_wait(
        database_url: str, redis, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Retraining on RQ with no worker running: the due retraining is queued and nobody trains
    it, as slow as a retraining gets. The ask answers 503 + Retry-After naming the reason and
    records nothing; a tell goes on; once a worker stores the version, the ask is answered."""
    app = create_app(make_settings(database_url, retrain_enabled=True,
                                   retrain_min_trials=MIN_TRIALS, redis_url=REDIS_URL,
                                   deterministic_wait_s=0.2))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        study_id = api.post("/v1/studies", json={"name": "slow", "space": MIXED_SPACE,
                                                 "seed": 7}).json()["id"]
        first, second = two_running_at_the_last_result_before_due(api, study_id)
        tell(api, study_id, first)  # the retraining at 10 results is now due
        refused = api.post(f"/v1/studies/{study_id}/ask", json={"client_id": "w"})
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["Retry-After"]) >= 1
        problem = refused.json()
        assert problem["errors"][0]["field"] == "deterministic"
        assert f"first {MIN_TRIALS} results" in problem["detail"]
        listed = api.get(f"/v1/studies/{study_id}/trials").json()
        assert listed["total"] == MIN_TRIALS + 1  # the refused ask recorded nothing
        tell(api, study_id, second)  # a tell never waits for a retraining
        assert queued_jobs(redis) == [f"retrain-{study_id}"]
        work_the_queue(redis, database_url, monkeypatch)
        assert [r.n_train for r in pruner_rows(app, study_id)] == [MIN_TRIALS]
        trial = ask(api, study_id)  # 11 results: the version of the first 10 serves it
        assert trial["number"] == MIN_TRIALS + 1


def test_a_waiting_ask_holds_neither_the_engine_gate_nor_the_studys_lock(
        database_url: str, redis, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """While a deterministic ask waits (RQ, no worker yet), another study's ask is answered
    through the process's one-at-a-time engine gate and a tell of this study commits under its
    row lock; then a worker stores the version and the waiting ask is answered."""
    app = create_app(make_settings(database_url, retrain_enabled=True,
                                   retrain_min_trials=MIN_TRIALS, redis_url=REDIS_URL,
                                   deterministic_wait_s=50, request_timeout_s=60))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        study_id = api.post("/v1/studies", json={"name": "waits", "space": MIXED_SPACE,
                                                 "seed": 7}).json()["id"]
        other_id = api.post("/v1/studies", json={"name": "other", "space": MIXED_SPACE,
                                                 "seed": 7, "deterministic": False}).json()["id"]
        first, second = two_running_at_the_last_result_before_due(api, study_id)
        tell(api, study_id, first)
        answer: dict = {}

        def waiting_ask() -> None:
            answer["response"] = api.post(f"/v1/studies/{study_id}/ask",
                                          json={"client_id": "waiter"})

        waiter = threading.Thread(target=waiting_ask)
        waiter.start()
        deadline = time.monotonic() + 30
        while not queued_jobs(redis) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert queued_jobs(redis) == [f"retrain-{study_id}"]
        other = api.post(f"/v1/studies/{other_id}/ask", json={"client_id": "other"})
        assert other.status_code == 200, other.text  # the gate was free
        tell(api, study_id, second)  # the study's row lock was free
        assert waiter.is_alive() and "response" not in answer  # still waiting, meanwhile
        work_the_queue(redis, database_url, monkeypatch)
        waiter.join(timeout=60)
        assert answer["response"].status_code == 200, answer["response"].text
        assert [r.n_train for r in pruner_rows(app, study_id)] == [MIN_TRIALS]


def test_a_study_without_determinism_never_waits(database_url: str,
                                                 redis) -> None:  # noqa: F811
    """The same slow retraining (RQ, no worker): an ordinary study's ask is answered at once
    without a pruner, as before."""
    app = create_app(make_settings(database_url, retrain_enabled=True,
                                   retrain_min_trials=MIN_TRIALS, redis_url=REDIS_URL,
                                   deterministic_wait_s=0.2))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        for body in ({"seed": 7, "deterministic": False}, {}):
            study = api.post("/v1/studies", json={"name": f"free-{len(body)}",
                                                  "space": MIXED_SPACE, **body}).json()
            assert study["deterministic"] is False
            tell_results(api, study["id"], MIN_TRIALS + 3)
            assert pruner_rows(app, study["id"]) == []  # nothing trained, and nobody waited


def test_a_short_request_deadline_caps_the_deterministic_wait() -> None:
    """A request timeout below the wait setting still starts (the hanging-database tests run
    with 4 s), and a deterministic ask then waits at most half the deadline, so it answers its
    own 503 in time."""
    settings = Settings(database_url="sqlite://", request_timeout_s=4, deterministic_wait_s=5)
    settings.check()
    assert settings.deterministic_wait_bound_s == 2
    assert Settings(database_url="sqlite://").deterministic_wait_bound_s == 5
