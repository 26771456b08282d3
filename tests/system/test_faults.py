"""Fault injection with real processes: a server killed mid-load, PostgreSQL crashed and restarted,
Redis stopped and started, a client that never tells. Nothing is mocked: every server is a uvicorn
process, every client uses the SDK over HTTP, and PostgreSQL and Redis are private instances this
file starts, crashes and deletes (the shared ones are never touched)."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from dyesp_client import Client, DyespError, RetryPolicy

from service.db.trial_queries import HEARTBEAT_TIMEOUT_REASON
from tests.conftest import MIXED_SPACE, service_missing
from tests.system.pg_cluster import Cluster
from tests.system.servers import Server, free_port, make_key, start_server

pytestmark = pytest.mark.slow

REAPER_INTERVAL_S = "0.2"  # the servers' background reaper sweeps this often in these tests


# --- helpers ---------------------------------------------------------------------------------

def serve(database_url: str, **kwargs: Any) -> Server:
    """``start_server``, plus a thread that drains the server's stderr: a server logging a
    warning per failed request must never block on a full pipe. The tail is kept for messages."""
    server = start_server(database_url, **kwargs)
    tail: deque[str] = deque(maxlen=40)

    def drain() -> None:
        for line in server.process.stderr:
            tail.append(line.decode(errors="replace").rstrip())

    threading.Thread(target=drain, daemon=True).start()
    server.log = tail  # type: ignore[attr-defined]
    return server


def log_of(server: Server) -> str:
    return "\n".join(getattr(server, "log", ()))


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.1, server: Server | None = None) -> Any:
    """Poll until ``condition()`` is truthy; fail naming ``what`` (and the tail of ``server``'s
    log) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            log = f"\nserver log:\n{log_of(server)}" if server is not None else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what}{log}")
        time.sleep(interval)


def all_trials(url: str, headers: dict[str, str], study_id: str,
               state: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": 1000}
    if state is not None:
        params["state"] = state
    response = httpx.get(f"{url}/v1/studies/{study_id}/trials", headers=headers, params=params,
                         timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["trials"]


def assert_numbers_gapless(trials: list[dict[str, Any]]) -> None:
    numbers = sorted(t["number"] for t in trials)
    assert numbers == list(range(len(trials))), "trial numbers duplicated or missing"
    assert len({t["id"] for t in trials}) == len(trials)


def create_study(url: str, headers: dict[str, str], name: str, **fields: Any) -> str:
    response = httpx.post(f"{url}/v1/studies", headers=headers, timeout=30,
                          json={"name": name, "space": MIXED_SPACE, **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def read_line(process: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        pytest.fail(f"no output from client process in {timeout} s")
    line = process.stdout.readline().decode().strip()
    if not line:
        pytest.fail(f"client process exited early: {process.wait(5)}")
    return line


@pytest.fixture
def fast_reaper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYESP_REAPER_INTERVAL_S", REAPER_INTERVAL_S)


# --- 1. kill -9 of a server mid-load ---------------------------------------------------------

# A worker that asked for a trial and is "training" it: heartbeats keep the trial alive for as long
# as the process lives. Prints the trial id, then sleeps until killed.
TRAINING_CLIENT = textwrap.dedent("""
    import sys, time
    from dyesp_client import Client
    url, key, study_id = sys.argv[1:4]
    client = Client(url, api_key=key, retries=0, heartbeat_interval=0.4)
    trial = client.get_study(study_id).ask()
    print(trial.id, flush=True)
    time.sleep(600)
""")


def test_kill_9_mid_load_loses_no_tell_and_dead_clients_trials_are_reaped(
        database_url: str, fast_reaper: None) -> None:
    timeout_s = 3.0  # the training clients beat every 0.4 s: a generous margin on a busy box
    key = make_key(database_url, "fault-test")
    headers = {"Authorization": f"Bearer {key}"}
    server = serve(database_url)
    trainers: list[subprocess.Popen] = []
    acknowledged: dict[int, float] = {}
    asked: set[int] = set()
    errors: list[str] = []
    lock = threading.Lock()
    stop, killed = threading.Event(), threading.Event()
    try:
        study_id = create_study(server.url, headers, "crash", heartbeat_timeout_s=timeout_s)
        trainers = [subprocess.Popen([sys.executable, "-c", TRAINING_CLIENT, server.url, key,
                                      study_id], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL) for _ in range(2)]
        training = [int(read_line(p, 30)) for p in trainers]
        since = time.monotonic()

        def load(worker: int) -> None:
            with Client(server.url, api_key=key, retries=0, heartbeat_interval=None) as client:
                study = client.get_study(study_id)
                i = 0
                while not stop.is_set():
                    try:
                        trial = study.ask()
                        with lock:
                            asked.add(trial.id)
                        value = float(worker * 100_000 + i)
                        trial.tell(value)
                    except DyespError as error:
                        if not killed.is_set():
                            errors.append(repr(error))
                        return  # the server died under us
                    with lock:
                        acknowledged[trial.id] = value
                    i += 1

        threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        # Let the load run past the heartbeat timeout: the trainers' trials outlive it because
        # they beat, through reaper sweeps and the loaders' asks (which also fail stale trials).
        wait_for(lambda: len(acknowledged) >= 30 and time.monotonic() - since > timeout_s + 1,
                 30, "30 acknowledged tells and the heartbeat timeout to pass", server=server)
        for trial_id in training:
            trial = httpx.get(f"{server.url}/v1/studies/{study_id}/trials/{trial_id}",
                              headers=headers, timeout=30).json()
            assert trial["state"] == "running", trial
        assert not errors, errors

        killed.set()
        for trainer in trainers:  # the training clients die with the server: nobody beats
            trainer.send_signal(signal.SIGKILL)
        server.kill()  # SIGKILL mid-load: no shutdown hooks run
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        assert not any(t.is_alive() for t in threads)
        assert len(acknowledged) >= 30

        server = serve(database_url)  # same database, nothing asks: only the reaper can reap
        wait_for(lambda: not all_trials(server.url, headers, study_id, "running"), 20,
                 "the dead clients' running trials to be reaped")
        trials = {t["id"]: t for t in all_trials(server.url, headers, study_id)}
        assert_numbers_gapless(list(trials.values()))
        for trial_id, value in acknowledged.items():  # every acknowledged tell, with its value
            assert (trials[trial_id]["state"], trials[trial_id]["value"]) == ("complete", value)
        for trial_id in training:  # failed for their silence since the kill, not before
            trial = trials[trial_id]
            assert (trial["state"], trial["reason"]) == ("failed", HEARTBEAT_TIMEOUT_REASON)
            assert _parse(trial["completed_at"]) - _parse(trial["heartbeat_at"]) >= timeout_s
        for trial in trials.values():  # told (maybe unacknowledged) or reaped, nothing else
            assert trial["state"] == "complete" or (
                trial["state"] == "failed" and trial["reason"] == HEARTBEAT_TIMEOUT_REASON), trial
        handed = asked | set(training)
        assert handed <= set(trials)
        # Only an ask in flight at the kill may have committed a trial its client never saw.
        assert len(set(trials) - handed) <= len(threads)
    finally:
        stop.set()
        for trainer in trainers:
            if trainer.poll() is None:
                trainer.kill()
            trainer.wait(10)
        server.stop()


# --- 2. PostgreSQL crashed and restarted under load ------------------------------------------

def test_postgres_restart_under_load_answers_503_and_sdk_clients_ride_it_out(
        pg_cluster: Cluster, fast_reaper: None) -> None:
    n_clients, quota = 4, 12
    key = make_key(pg_cluster.url, "fault-test")
    headers = {"Authorization": f"Bearer {key}"}
    server = serve(pg_cluster.url)
    acknowledged: dict[int, float] = {}
    finished: list[int] = []
    errors: list[str] = []
    retries = [0]
    lock = threading.Lock()

    def counting_sleep(seconds: float) -> None:
        with lock:
            retries[0] += 1
        time.sleep(seconds)

    try:
        study_id = create_study(server.url, headers, "pg-restart")

        def client(worker: int) -> None:
            policy = RetryPolicy(retries=30, base_s=0.05, max_s=0.5, sleep=counting_sleep)
            try:
                with Client(server.url, api_key=key, retries=policy, heartbeat_interval=None,
                            timeout=15) as sdk:
                    study = sdk.get_study(study_id)
                    for i in range(quota):
                        trial = study.ask()
                        value = float(worker * 1000 + i)
                        trial.tell(value)
                        with lock:
                            acknowledged[trial.id] = value
                finished.append(worker)
            except Exception as error:  # a 500, or retries exhausted: the test fails below
                errors.append(repr(error))

        threads = [threading.Thread(target=client, args=(w,)) for w in range(n_clients)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(acknowledged) >= 8, 30, "8 acknowledged tells")

        pg_cluster.stop("immediate")  # every PostgreSQL process quits at once: a crash
        some_trial, some_value = next(iter(dict(acknowledged).items()))
        probes = [
            ("GET", f"/v1/studies/{study_id}", None),
            ("GET", f"/v1/studies/{study_id}/trials", None),
            ("POST", f"/v1/studies/{study_id}/ask", {"client_id": "probe"}),
            ("POST", f"/v1/studies/{study_id}/trials/{some_trial}/tell", {"value": some_value}),
        ]
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
            for _ in range(2):  # the first round meets pooled connections, the second new ones
                for method, path, body in probes:
                    start = time.monotonic()
                    response = http.request(method, path, json=body)
                    elapsed = time.monotonic() - start
                    assert response.status_code == 503, (method, path, response.text,
                                                         log_of(server))
                    assert float(response.headers["Retry-After"]) > 0
                    assert response.headers["content-type"].startswith(
                        "application/problem+json")
                    assert elapsed < 5, f"{method} {path} took {elapsed:.1f} s with the DB down"
            assert http.get("/healthz").status_code == 503
        time.sleep(0.5)  # clients are in their Retry-After waits now
        pg_cluster.start()  # crash recovery, then the server must reconnect on its own

        wait_for(lambda: httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200, 30,
                 "the server to reconnect to PostgreSQL")
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, (errors, log_of(server))
        assert sorted(finished) == list(range(n_clients))  # every client finished its quota
        assert retries[0] > 0  # the outage did hit the clients; their retries carried them

        trials = all_trials(server.url, headers, study_id)
        assert_numbers_gapless(trials)
        # Retried asks carry their client_id, so no trial was leaked; tells are idempotent.
        assert len(trials) == n_clients * quota
        assert {t["id"]: (t["state"], t["value"]) for t in trials} == {
            trial_id: ("complete", value) for trial_id, value in acknowledged.items()}

        # The background reaper survived the outage's errors: it still fails silent trials.
        abandoned = create_study(server.url, headers, "abandoned", heartbeat_timeout_s=1.0)
        response = httpx.post(f"{server.url}/v1/studies/{abandoned}/ask", headers=headers,
                              json={}, timeout=30)
        assert response.status_code == 200, response.text
        (trial,) = response.json()["trials"]
        reaped = wait_for(lambda: all_trials(server.url, headers, abandoned, "failed"), 15,
                          "the reaper to fail a silent trial after the outage")
        assert [(t["id"], t["reason"]) for t in reaped] == [(trial["id"],
                                                             HEARTBEAT_TIMEOUT_REASON)]
    finally:
        server.stop()


# --- 3. Redis stopped and started ------------------------------------------------------------

class RedisServer:
    """A private ``redis-server`` without persistence on a fixed port: a restart loses its queue,
    as a crashed Redis would."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        from service.retrain_queue import connect

        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = connect(self.url, timeout_s=1)

        def up() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited with {self.process.returncode}")
            try:
                return bool(client.ping())
            except Exception:
                return False

        wait_for(up, 15, "redis-server to accept connections", interval=0.05)
        client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server", FileNotFoundError("redis-server is not on the PATH"))
    redis = RedisServer(binary)
    try:
        redis.start()
        yield redis
    finally:
        redis.kill()


def test_redis_outage_keeps_ask_tell_working_and_retraining_resumes_on_rq(
        database_url: str, private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis dies (losing its queue) and comes back on the same port. Retraining is not due
    during the outage, so nothing falls back to training beside the server (that fallback is
    covered in tests/workers); what must hold is that nothing on the request path needs Redis,
    and that the first retraining due after the restart goes to RQ again."""
    from rq import Queue

    from service.retrain_queue import QUEUE_NAME, connect, job_id

    monkeypatch.setenv("DYESP_REDIS_URL", private_redis.url)
    monkeypatch.setenv("DYESP_RETRAIN_MIN_TRIALS", "10")
    key = make_key(database_url, "fault-test")
    headers = {"Authorization": f"Bearer {key}"}
    server = serve(database_url, retrain=True)

    def retraining_mode() -> str:
        response = httpx.get(f"{server.url}/healthz", timeout=30)
        assert response.status_code == 200, response.text  # the database is fine throughout
        return response.json()["retraining"]

    def pruner() -> dict[str, Any]:
        response = httpx.get(f"{server.url}/v1/studies/{study.id}/pruner", headers=headers,
                             timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def run_trials(n: int) -> None:
        for _ in range(n):
            start = time.monotonic()
            trial = study.ask()
            trial.tell((trial.params["lr"] - 0.01) ** 2 + trial.params["depth"])
            assert time.monotonic() - start < 5, "ask/tell slowed down by the Redis outage"

    redis = None
    try:
        assert retraining_mode() == "rq"
        # retries=0: any failed ask or tell fails the test, none is papered over by a retry
        with Client(server.url, api_key=key, retries=0, heartbeat_interval=None) as sdk:
            study = sdk.create_study("redis-outage", MIXED_SPACE, seed=1)
            run_trials(3)  # the server's Redis connection is in use before the crash

            private_redis.kill()
            run_trials(5)
            assert retraining_mode() == "thread (redis unreachable)"
            report = pruner()
            assert (report["retraining"], report["versions"]) == (
                "thread (redis unreachable)", [])

            private_redis.start()  # same port, empty
            assert retraining_mode() == "rq"
            run_trials(2)  # 10 results: retraining is due, and goes to RQ again
            redis = connect(private_redis.url)
            queue = Queue(QUEUE_NAME, connection=redis)
            wait_for(lambda: queue.job_ids == [job_id(study.id)], 30,
                     "the retraining job in the restarted Redis", server=server)
            assert pruner()["versions"] == []  # dispatched, not trained beside the server

            worker = subprocess.run(
                [sys.executable, "-m", "service.cli", "worker", "--burst"],
                env=dict(os.environ, DYESP_DATABASE_URL=database_url),
                capture_output=True, text=True, timeout=300)
            assert worker.returncode == 0, worker.stderr[-2000:]
            assert queue.fetch_job(job_id(study.id)).get_status(refresh=True).value == \
                "finished"
            report = pruner()
            assert report["retraining"] == "rq"
            assert [(v["version"], v["n_train"]) for v in report["versions"]] == [(1, 10)]
            assert report["active_version"] == 1
            run_trials(1)  # the new model is served: asks go on with it
    finally:
        if redis is not None:
            redis.close()
        server.stop()


# --- 4. a client that never tells ------------------------------------------------------------

def test_a_client_that_never_tells_is_reaped_without_blocking_others(
        database_url: str, fast_reaper: None) -> None:
    """A client asks, beats for a while, then goes silent without telling. While its trial runs,
    every other client is served; once it is silent past the timeout, the reaper fails it and the
    others go on. Each phase waits for events, not for a count inside a time window: a loaded CI
    box slows the phases down but cannot fail them (each bound is a generous minute)."""
    timeout_s = 5.0  # the silent client beats every 0.2 s until it goes silent: a wide margin
    key = make_key(database_url, "fault-test")
    headers = {"Authorization": f"Bearer {key}"}
    server = serve(database_url)
    told: list[tuple[int, int, float]] = []  # (worker, trial id, monotonic time of the tell)
    errors: list[str] = []
    lock = threading.Lock()
    stop, beating = threading.Event(), threading.Event()
    try:
        study_id = create_study(server.url, headers, "silent", heartbeat_timeout_s=timeout_s)

        def worker(n: int) -> None:
            try:
                with Client(server.url, api_key=key, retries=0, heartbeat_interval=None) as sdk:
                    study = sdk.get_study(study_id)
                    while not stop.is_set():
                        trial = study.ask()
                        trial.tell(float(n))
                        with lock:
                            told.append((n, trial.id, time.monotonic()))
                        time.sleep(0.01)
            except Exception as error:
                errors.append(repr(error))

        def tells_after(since: float) -> dict[int, int]:
            with lock:
                return {n: sum(w == n and t > since for w, _, t in told) for n in range(3)}

        with Client(server.url, api_key=key, retries=0, heartbeat_interval=None) as silent_sdk:
            silent = silent_sdk.get_study(study_id).ask()  # ...and never tells
            path = f"{server.url}/v1/studies/{study_id}/trials/{silent.id}"
            beats: list[int] = []

            def keep_alive() -> None:
                while beating.is_set():
                    beats.append(httpx.post(f"{path}/heartbeat", headers=headers, json={},
                                            timeout=30).status_code)
                    time.sleep(0.2)

            beating.set()
            beater = threading.Thread(target=keep_alive)
            beater.start()
            threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
            for thread in threads:
                thread.start()

            # 1. While the silent client's trial runs, every other client asks and tells.
            wait_for(lambda: min(tells_after(0).values()) >= 2, 60,
                     "every other client to tell twice while the silent trial runs",
                     server=server)
            running = httpx.get(path, headers=headers, timeout=30).json()
            beating.clear()
            beater.join(timeout=60)
            assert running["state"] == "running", running
            assert set(beats) == {200}, beats

            # 2. Silent past its timeout, the trial is failed for silence...
            def reaped() -> dict[str, Any] | None:
                trial = httpx.get(path, headers=headers, timeout=30).json()
                return trial if trial["state"] != "running" else None

            trial = wait_for(reaped, 60, "the silent trial to be failed", server=server)
            reaped_at = time.monotonic()
            # 3. ...and every other client is still served after the reaping.
            wait_for(lambda: min(tells_after(reaped_at).values()) >= 1, 60,
                     "every other client to tell after the reaping", server=server)
            stop.set()
            for thread in threads:
                thread.join(timeout=60)

            assert not errors, errors  # every ask and tell of the others succeeded
            assert (trial["state"], trial["reason"]) == ("failed", HEARTBEAT_TIMEOUT_REASON)
            # Failed for silence, and not before the study's timeout (server clocks on both ends).
            silent_for = (_parse(trial["completed_at"]) - _parse(trial["heartbeat_at"]))
            assert silent_for >= timeout_s
            ids = [trial_id for _, trial_id, _ in told]
            assert len(ids) == len(set(ids)) and silent.id not in ids

            # The late client learns its trial is gone from a heartbeat (409)...
            beat = httpx.post(f"{path}/heartbeat", headers=headers, json={}, timeout=30)
            assert beat.status_code == 409, beat.text
            # ...and a result it still sends is kept: a told result is never thrown away.
            assert silent.tell(0.5).state == "complete"
        trials = all_trials(server.url, headers, study_id)
        assert_numbers_gapless(trials)
        assert {t["state"] for t in trials} == {"complete"}
        assert len(trials) == len(ids) + 1
    finally:
        stop.set()
        beating.clear()
        server.stop()


def _parse(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
