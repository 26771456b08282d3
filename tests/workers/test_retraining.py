"""Pruner retraining off the request path: a spawned process without Redis, RQ workers with it."""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.app import create_app
from service.db.models import PrunerVersion as PrunerRow
from tests.conftest import MIXED_SPACE, REDIS_URL, make_settings, new_key, service_missing


def run_trials(api: TestClient, n: int) -> str:
    # Not deterministic: these tests hold the queue's jobs back, which a deterministic study's
    # asks would wait for (tests/workers/test_deterministic.py).
    study = api.post("/v1/studies", json={"name": "r", "space": MIXED_SPACE, "seed": 1,
                                          "deterministic": False}).json()
    for _ in range(n):
        (trial,) = api.post(f"/v1/studies/{study['id']}/ask").json()["trials"]
        loss = (trial["params"]["lr"] - 0.01) ** 2 + trial["params"]["depth"]
        told = api.post(f"/v1/studies/{study['id']}/trials/{trial['id']}/tell",
                        json={"value": loss})
        assert told.status_code == 200
    return study["id"]


def pruner_rows(app, study_id: str) -> list[PrunerRow]:
    with app.state.context.sessions() as session:
        return list(session.scalars(select(PrunerRow).where(PrunerRow.study_id == study_id)))


def test_without_redis_retraining_runs_beside_the_server(database_url: str) -> None:
    app = create_app(make_settings(database_url, retrain_enabled=True, retrain_min_trials=10))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        assert api.get("/healthz").json()["retraining"] == "thread"
        study_id = run_trials(api, 12)
        deadline = time.monotonic() + 120
        while not pruner_rows(app, study_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        (row,) = pruner_rows(app, study_id)[:1]
        assert row.version == 1 and row.n_train >= 10 and row.device == "cpu"
        with app.state.context.sessions() as session:
            model = app.state.context.pruners.active(session, study_id)
        assert model is not None
        report = api.get(f"/v1/studies/{study_id}/pruner").json()
        assert report["active_version"] == 1 and report["retraining"] == "thread"
        assert report["versions"][0]["n_train"] == row.n_train
        assert report["versions"][0]["metrics"]["n_fit"] == model.n_train


@pytest.fixture
def redis():
    """The real Redis, with the retraining queue emptied; a failure (not a skip) in CI."""
    from rq import Queue

    from service.retrain_queue import QUEUE_NAME, connect

    client = connect(REDIS_URL)
    try:
        client.ping()
    except Exception as error:
        service_missing("Redis", error)
    Queue(QUEUE_NAME, connection=client).empty()
    return client


def test_with_redis_an_rq_worker_trains_and_jobs_are_deduplicated(database_url: str, redis,
                                                                  monkeypatch) -> None:
    from rq import Queue, SimpleWorker

    from service.retrain_queue import QUEUE_NAME, enqueue_retraining

    settings = make_settings(database_url, retrain_enabled=True, retrain_min_trials=10,
                             redis_url=REDIS_URL)
    app = create_app(settings)
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        assert api.get("/healthz").json()["retraining"] == "rq"
        study_id = run_trials(api, 12)
        queue = Queue(QUEUE_NAME, connection=redis)
        deadline = time.monotonic() + 10
        while not queue.job_ids and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queue.job_ids == [f"retrain-{study_id}"]
        assert not enqueue_retraining(redis, study_id)  # one job per study at a time
        assert len(queue.job_ids) == 1
        job = queue.fetch_job(f"retrain-{study_id}")
        monkeypatch.setenv("DYESP_DATABASE_URL", database_url)  # the worker's own settings
        SimpleWorker([queue], connection=redis).work(burst=True)
        rows = pruner_rows(app, study_id)
        assert [r.version for r in rows] == [1]
        assert job.get_status(refresh=True).value == "finished"


@pytest.mark.parametrize("n_complete, trained_on, due", [(9, 0, False), (10, 0, True),
                                                        (14, 10, False), (15, 10, True),
                                                        (1050, 1000, False), (1100, 1000, True)])
def test_retraining_is_due_after_enough_new_results(n_complete: int, trained_on: int,
                                                    due: bool) -> None:
    from service.config import Settings

    policy = Settings(retrain_min_trials=10, retrain_min_new=5, retrain_growth=0.1).retrain_policy
    assert policy.is_due(n_complete, trained_on) is due


def test_the_settings_build_the_engines_retraining_policy(monkeypatch) -> None:
    from service.config import Settings
    from service.engine.retraining_policy import RetrainPolicy

    assert Settings().retrain_policy == RetrainPolicy()  # the defaults live once, in the engine
    monkeypatch.setenv("DYESP_RETRAIN_MIN_TRIALS", "20")
    monkeypatch.setenv("DYESP_RETRAIN_GROWTH", "0.5")
    assert Settings().retrain_policy == RetrainPolicy(min_trials=20, min_new=5, growth=0.5)


def test_a_worker_killed_mid_job_leaves_no_model_and_the_job_is_retried(database_url: str,
                                                                        redis,
                                                                        monkeypatch) -> None:
    import os
    import signal
    import subprocess
    import sys

    from rq import Queue, SimpleWorker
    from rq.registry import StartedJobRegistry

    from service.retrain_queue import QUEUE_NAME

    app = create_app(make_settings(database_url, retrain_enabled=True, retrain_min_trials=10,
                                   redis_url=REDIS_URL))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        study_id = run_trials(api, 12)
        queue = Queue(QUEUE_NAME, connection=redis)
        deadline = time.monotonic() + 10
        while not queue.job_ids and time.monotonic() < deadline:
            time.sleep(0.05)
        job = queue.fetch_job(f"retrain-{study_id}")
        worker = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--burst"],
            env=dict(os.environ, DYESP_DATABASE_URL=database_url, DYESP_REDIS_URL=REDIS_URL),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while job.get_status(refresh=True).value != "started" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert job.get_status(refresh=True).value == "started"
        worker.send_signal(signal.SIGKILL)  # mid-job: torch is still loading or training
        worker.wait(timeout=10)
        assert pruner_rows(app, study_id) == []  # nothing half-written
        # The dead worker's execution expires; RQ's registry cleanup then retries the job.
        StartedJobRegistry(QUEUE_NAME, connection=redis).cleanup(time.time() + 3600)
        assert job.get_status(refresh=True).value == "scheduled"  # retry with backoff
        queue.scheduled_job_registry.remove(job)  # don't wait out the backoff in a test
        queue.enqueue_job(job)
        monkeypatch.setenv("DYESP_DATABASE_URL", database_url)
        SimpleWorker([queue], connection=redis).work(burst=True)
        assert [(r.version, r.active) for r in pruner_rows(app, study_id)] == [(1, True)]


def test_low_trust_makes_retraining_due_sooner() -> None:
    from service.engine.retraining_policy import RetrainPolicy

    policy = RetrainPolicy(min_trials=10, min_new=5, growth=0.1)
    assert not policy.is_due(1060, 1000, trust=0.7)  # trusted: wait for 10 % growth
    assert policy.is_due(1060, 1000, trust=0.1)  # misleading: retrain after 5 new results
    assert not policy.is_due(1003, 1000, trust=0.1)


@pytest.mark.parametrize("trained_on", [None, 0, 10, 100, 1000, 10_000])
def test_a_check_that_said_no_is_repeated_before_the_policy_could_say_yes(
        trained_on: int | None) -> None:
    """``results_before_recheck`` never skips past a result at which ``is_due`` says yes under
    the growth rule, and asks the trust trigger again within ``min_new`` results."""
    from service.engine.retraining_policy import RetrainPolicy

    policy = RetrainPolicy(min_trials=10, min_new=5, growth=0.1)
    start = trained_on or 0
    for n in range(start, start + 1200):
        if policy.is_due(n, start, trust=None):
            continue
        if trained_on and policy.is_due(n, start, trust=0.0):
            continue  # due by trust now: the retrainer dispatches, nothing is skipped
        wait = policy.results_before_recheck(n, trained_on)
        assert wait >= 1
        # under any trust, nothing becomes due before the next check
        assert not any(policy.is_due(n + k, start, trust=t)
                       for k in range(1, wait) for t in (None, 0.0, 0.9))
        if trained_on:
            assert wait <= policy.min_new  # a pruner gone bad is noticed that soon


def test_the_retrainer_reads_only_when_a_check_could_say_yes(database_url: str, redis) -> None:
    """Driven tell by tell (its thread is not started): the retrainer checks the study fewer
    times than results arrive, and still dispatches exactly at the result that makes training
    due (the 10th), to the real RQ queue."""
    from rq import Queue

    from service.db import study_queries
    from service.retrain_queue import QUEUE_NAME
    from service.retraining import Retrainer

    app = create_app(make_settings(database_url))
    retrainer = Retrainer(make_settings(database_url, retrain_enabled=True, redis_url=REDIS_URL,
                                        retrain_min_trials=10), app.state.context.sessions)
    queue = Queue(QUEUE_NAME, connection=redis)
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        study_id = run_trials(api, 0)
        dispatched_at = []
        for result in range(1, 13):
            (trial,) = api.post(f"/v1/studies/{study_id}/ask").json()["trials"]
            assert api.post(f"/v1/studies/{study_id}/trials/{trial['id']}/tell",
                            json={"value": float(result)}).status_code == 200
            with app.state.context.sessions() as session:
                revision = study_queries.current_revision(session, study_id)
            retrainer.notify(study_id, revision, 1)
            if retrainer.step() == study_id:
                dispatched_at.append(result)
        assert dispatched_at[0] == 10 and queue.count == 1  # one job: RQ deduplicates
        checks = retrainer.checks
        assert checks < 12
        # A result told with no revision (a new study learning from prior ones) is checked.
        retrainer.notify(study_id)
        retrainer.step()
        assert retrainer.checks == checks + 1
    queue.empty()


def test_two_trainers_storing_one_version_drop_the_second_quietly(postgres_url: str) -> None:
    """Without Redis each server process may train the same study at once. On PostgreSQL both
    may number their version 1; the second insert waits for the first and then finds the number
    taken: ``VersionTaken``, nothing stored, the first transaction's version kept. (SQLite's
    BEGIN IMMEDIATE serialises the two: the second numbers its version 2.)"""
    import threading

    from sqlalchemy import text

    from service.db import pruner_queries
    from service.db.session import transaction

    app = create_app(make_settings(postgres_url))
    sessions = app.state.context.sessions
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        study_id = run_trials(api, 0)
    fields = dict(weights=b"w", fingerprint="f", n_train=1, metrics={}, device="cpu",
                  seconds=0.1, active=True)
    outcome: dict[str, object] = {}

    def second() -> None:
        try:
            with transaction(sessions) as session:
                outcome["version"] = pruner_queries.add_version(session, study_id, **fields)
        except pruner_queries.VersionTaken as taken:
            outcome["taken"] = str(taken)

    with transaction(sessions) as first:
        assert pruner_queries.add_version(first, study_id, **fields) == 1
        first.flush()
        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 30  # until the second insert waits on the unique key
        waiting = text("SELECT count(*) FROM pg_locks WHERE NOT granted "
                       "AND locktype = 'transactionid'")
        with sessions() as watcher:
            while watcher.scalar(waiting) == 0:
                assert time.monotonic() < deadline and thread.is_alive()
                time.sleep(0.02)
    thread.join(timeout=30)
    assert outcome == {"taken": f"pruner v1 of study {study_id} was stored meanwhile by "
                                "another trainer"}
    assert [r.version for r in pruner_rows(app, study_id)] == [1]


def test_unreachable_redis_falls_back_to_training_beside_the_server(database_url: str) -> None:
    from tests.system.servers import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = create_app(make_settings(database_url, retrain_enabled=True, retrain_min_trials=10,
                                   redis_url=dead))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        assert api.get("/healthz").json()["retraining"] == "thread (redis unreachable)"
        study_id = run_trials(api, 12)  # ask/tell unaffected
        deadline = time.monotonic() + 120
        while not pruner_rows(app, study_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [r.version for r in pruner_rows(app, study_id)] == [1]


def test_a_transfer_study_pretrains_its_pruner_before_any_result(database_url: str) -> None:
    """With prior studies the pruner is due at once (their ranks are its labels); a cold study
    with no results is not."""
    from workers.jobs import retrain_pruner

    app = create_app(make_settings(database_url))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        source = run_trials(api, 12)
        target = api.post("/v1/studies", json={"name": "t", "space": MIXED_SPACE,
                                               "transfer_from": [source]}).json()["id"]
        cold = api.post("/v1/studies", json={"name": "c", "space": MIXED_SPACE}).json()["id"]
        assert retrain_pruner(cold, database_url=database_url, device="cpu") is None
        summary = retrain_pruner(target, database_url=database_url, device="cpu")
        assert summary is not None and summary.startswith("pruner v1 (active)")
        report = api.get(f"/v1/studies/{target}/pruner").json()
        assert report["active_version"] == 1
        assert report["versions"][0]["n_train"] == 0  # none of the study's own results yet
        assert report["versions"][0]["metrics"]["n_fit"] == 12  # the prior's rows
        (trial,) = api.post(f"/v1/studies/{target}/ask").json()["trials"]
        assert trial["proposal"]["predicted"] is not None  # the pretrained pruner had a say
        # Not due again until the study's own results arrive.
        assert retrain_pruner(target, database_url=database_url, device="cpu") is None


# --- a study deleted before or while it retrains; a retraining child that dies -----------------

def spawned_children() -> list[int]:
    """This process's live spawned executor workers (the retraining child), read from /proc."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except (OSError, NotADirectoryError):
            continue
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]  # the command name may hold spaces
        if ppid == me and state not in ("Z", "X") and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def deleted_study(api: TestClient) -> str:
    """A study whose retraining is due (12 results), deleted through the API."""
    study_id = run_trials(api, 12)
    assert api.delete(f"/v1/studies/{study_id}").status_code == 204
    return study_id


def test_retraining_a_deleted_or_unknown_study_ends_quietly(database_url: str,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    from workers.jobs import retrain_pruner

    caplog.set_level(logging.DEBUG)
    app = create_app(make_settings(database_url))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        for study_id in (deleted_study(api), uuid.uuid4().hex):
            outcome = retrain_pruner(study_id, database_url=database_url, device="cpu")
            assert outcome == f"study {study_id} no longer exists: nothing retrained"
            assert pruner_rows(app, study_id) == []
    assert tracebacks(caplog) == []


def test_a_study_deleted_while_its_pruner_trains_gets_no_model(
        database_url: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The study is read, then deleted (through the API) while the model trains: storing the
    model would break the foreign key; the job notices and ends quietly instead."""
    import service.training
    from workers.jobs import retrain_pruner

    caplog.set_level(logging.DEBUG)
    app = create_app(make_settings(database_url))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        study_id = run_trials(api, 12)
        train = service.training.train_pruner

        def train_while_the_study_is_deleted(*args, **kwargs):
            assert api.delete(f"/v1/studies/{study_id}").status_code == 204
            return train(*args, **kwargs)

        monkeypatch.setattr(service.training, "train_pruner", train_while_the_study_is_deleted)
        outcome = retrain_pruner(study_id, database_url=database_url, device="cpu")
        assert outcome == f"study {study_id} no longer exists: nothing retrained"
        assert pruner_rows(app, study_id) == []
    assert tracebacks(caplog) == []


def test_the_spawned_child_ends_a_deleted_studys_retraining_quietly(
        database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The path without Redis: the study was deleted between the notify and the dispatch (which
    is called directly: the retrainer thread would not find a deleted study due). A clean stop
    then ends the child."""
    from service.retraining import Retrainer

    caplog.set_level(logging.DEBUG)
    settings = make_settings(database_url, retrain_enabled=True)
    app = create_app(make_settings(database_url))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        study_id = deleted_study(api)
        retrainer = Retrainer(settings, app.state.context.sessions)
        try:
            retrainer._dispatch(study_id)
            assert len(spawned_children()) == 1
        finally:
            retrainer.stop()
        assert pruner_rows(app, study_id) == []
    assert spawned_children() == []
    assert tracebacks(caplog) == []
    assert f"study {study_id} no longer exists" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_rq_job_for_a_study_deleted_while_queued_finishes_quietly(
        database_url: str, redis, caplog: pytest.LogCaptureFixture) -> None:
    from rq import Queue, SimpleWorker

    from service.retrain_queue import QUEUE_NAME, enqueue_retraining, job_id

    caplog.set_level(logging.DEBUG)
    app = create_app(make_settings(database_url))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        study_id = run_trials(api, 12)
        assert enqueue_retraining(redis, study_id, database_url=database_url)
        assert api.delete(f"/v1/studies/{study_id}").status_code == 204
        queue = Queue(QUEUE_NAME, connection=redis)
        SimpleWorker([queue], connection=redis).work(burst=True)
        job = queue.fetch_job(job_id(study_id))
        assert job.get_status(refresh=True).value == "finished"  # not failed, not retried
        assert job.return_value() == f"study {study_id} no longer exists: nothing retrained"
        assert pruner_rows(app, study_id) == []
    assert tracebacks(caplog) == []


def test_a_killed_child_is_reported_once_and_replaced(database_url: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A child killed (OOM, an operator) breaks its pool, which refuses every later job: the
    retrainer must say so in one line, with no traceback, and start a new child next time."""
    caplog.set_level(logging.INFO, logger="dyesp.retraining")
    app = create_app(make_settings(database_url, retrain_enabled=True, retrain_min_trials=10))
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {new_key(app)}"
        study_id = run_trials(api, 12)
        deadline = time.monotonic() + 180
        while not pruner_rows(app, study_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [r.version for r in pruner_rows(app, study_id)] == [1]
        (child,) = spawned_children()
        os.kill(child, signal.SIGKILL)  # idle now, waiting for its next job
        deadline = time.monotonic() + 180
        while len(pruner_rows(app, study_id)) < 2 and time.monotonic() < deadline:
            (trial,) = api.post(f"/v1/studies/{study_id}/ask").json()["trials"]
            assert api.post(f"/v1/studies/{study_id}/trials/{trial['id']}/tell",
                            json={"value": trial["params"]["depth"]}).status_code == 200
            time.sleep(0.5)
        assert sorted(r.version for r in pruner_rows(app, study_id))[:2] == [1, 2]
        assert spawned_children() not in ([], [child])  # a new child trained version 2
    died = [r for r in caplog.records
            if r.name == "dyesp.retraining" and r.levelno >= logging.WARNING]
    assert len(died) == 1 and "retraining child died" in died[0].getMessage()
    assert tracebacks(caplog) == []


def test_the_enqueued_job_path_names_the_worker_function() -> None:
    """The service enqueues the job by name and never imports ``workers``: the name must hold."""
    import importlib

    from service.retrain_queue import JOB
    from workers.jobs import retrain_pruner

    module, name = JOB.rsplit(".", 1)
    assert getattr(importlib.import_module(module), name) is retrain_pruner


def test_the_job_checks_the_trust_trigger_as_the_retrainer_does() -> None:
    """The retrainer dispatches when trust fell to the floor after a few new results; the job
    must not then refuse for want of the growth margin."""
    from service.engine.history import History, Observation, ProposalInfo, TrialState
    from service.engine.retraining_policy import RetrainPolicy
    from service.engine.space import SearchSpace
    from service.pruner_training import _due, _Study

    def done(i: int, predicted: float) -> Observation:
        return Observation(i, {"x": i / 2000}, TrialState.COMPLETE, float(i),
                           proposal=ProposalInfo("parzen", 0.5, predicted))

    space = SearchSpace.from_dict({"params": [{"name": "x", "type": "float", "low": 0,
                                               "high": 1}]})
    # Minimised values rise with i: the pruner predicted the later (worse) trials as better.
    misled = History("minimize", tuple(done(i, i / 2000) for i in range(1006)))
    trusted = History("minimize", tuple(done(i, 1 - i / 2000) for i in range(1006)))
    for history, due in ((misled, True), (trusted, False)):
        study = _Study(space, (), history, None, trained_on=1000, newest=None, active=None)
        assert _due(study, RetrainPolicy()) is due
