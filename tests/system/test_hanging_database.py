"""A database that hangs (rather than refusing connections) costs a 503 + Retry-After, not a hang.

Real services throughout: a private PostgreSQL cluster frozen with SIGSTOP (the kernel still
accepts its connections and acknowledges what is sent to it, but nothing answers), a listener that
accepts connections and never says a word, a row lock held by a second connection to the shared
PostgreSQL, a write lock on the SQLite file. Client timeouts here are generous and only detect a
hang; nothing asserts how fast an answer came.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from service.api import problems
from service.api.deadline import DeadlineMiddleware
from service.app import create_app
from service.db.session import make_engine
from tests.conftest import MIXED_SPACE, make_settings, new_key
from tests.system.pg_cluster import Cluster
from tests.system.servers import make_key
from tests.system.test_faults import create_study, log_of, serve, wait_for

WELL_FORMED_KEY = "Bearer dyesp_0123456789ab_unknown"  # looked up in the database, unlike junk
HANG_DETECTOR_S = 30.0  # far beyond every timeout configured here: reaching it means a hang
T = TypeVar("T")

# Small timeouts, so a test meets them all in seconds.
SMALL_TIMEOUTS = {"db_connect_timeout_s": 1.0, "db_statement_timeout_s": 2.0,
                  "db_pool_timeout_s": 2.0, "request_timeout_s": 4.0}


def returns(call: Callable[[], T], what: str) -> T:
    """``call()``'s result, failing the test (instead of hanging it) if it never returns."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # re-raised below, in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_DETECTOR_S)
    if thread.is_alive():
        pytest.fail(f"{what} still hangs after {HANG_DETECTOR_S} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def assert_retryable_problem(response: httpx.Response, what: str = "") -> None:
    assert response.status_code == 503, (what, response.status_code, response.text)
    assert float(response.headers["Retry-After"]) > 0, what
    assert response.headers["content-type"].startswith("application/problem+json"), what
    body = response.json()
    assert (body["status"], body["title"]) == (503, "Service Unavailable"), body
    assert body["detail"] and body["errors"] == [], body


# --- a frozen PostgreSQL behind a real server --------------------------------------------------

def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@contextmanager
def frozen(cluster: Cluster) -> Iterator[None]:
    """SIGSTOP the cluster's postmaster and every backend: connections still open (the kernel
    completes them) but no byte is ever answered. SIGCONT on exit, whatever happened."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    stopped: list[int] = []
    try:
        os.kill(postmaster, signal.SIGSTOP)  # first, so it forks no backend we would miss
        stopped.append(postmaster)
        for pid in _children(postmaster):
            with suppress(ProcessLookupError):  # a backend that exited meanwhile
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield
    finally:
        for pid in reversed(stopped):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@pytest.mark.slow
def test_frozen_postgres_gets_503s_and_the_server_recovers_on_its_own(
        pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SMALL_TIMEOUTS.items():
        monkeypatch.setenv(f"DYESP_{name.upper()}", str(value))
    key = make_key(pg_cluster.url, "hang-test")
    headers = {"Authorization": f"Bearer {key}"}
    server = serve(pg_cluster.url)
    try:
        study_id = create_study(server.url, headers, "hang")
        with httpx.Client(base_url=server.url, headers=headers, timeout=HANG_DETECTOR_S) as http:
            told = http.post(f"/v1/studies/{study_id}/ask", json={}).json()["trials"][0]
            response = http.post(f"/v1/studies/{study_id}/trials/{told['id']}/tell",
                                 json={"value": 0.25})
            assert response.status_code == 200, response.text  # acknowledged before the hang
            running = http.post(f"/v1/studies/{study_id}/ask", json={}).json()["trials"][0]

            with frozen(pg_cluster):
                probes = [
                    ("POST", f"/v1/studies/{study_id}/ask", {"client_id": "probe"}),
                    ("POST", f"/v1/studies/{study_id}/trials/{running['id']}/tell",
                     {"value": 0.5}),
                    ("GET", f"/v1/studies/{study_id}", None),
                ]
                for method, path, body in probes:
                    try:
                        response = http.request(method, path, json=body)
                    except httpx.TimeoutException:
                        pytest.fail(f"{method} {path} hung with the database frozen\n"
                                    f"{log_of(server)}")
                    assert_retryable_problem(response, f"{method} {path}")
                for _ in range(2):  # a later check must not hang on an earlier stuck one
                    health = http.get("/healthz")
                    assert health.status_code == 503, health.text
                    assert float(health.headers["Retry-After"]) > 0
                    assert health.json()["database"] == "unreachable"

            wait_for(lambda: http.get("/healthz").status_code == 200, HANG_DETECTOR_S,
                     "the server to answer 200 again after the database woke", server=server)
            assert http.get(f"/v1/studies/{study_id}").status_code == 200
            stored = http.get(f"/v1/studies/{study_id}/trials/{told['id']}").json()
            assert (stored["state"], stored["value"]) == ("complete", 0.25)
    finally:
        server.stop()


# --- a database host that accepts connections and never answers --------------------------------

@contextmanager
def black_hole() -> Iterator[int]:
    """A loopback port whose connections complete (the kernel's backlog) but stay silent."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def test_connecting_to_a_silent_host_fails_instead_of_hanging() -> None:
    with black_hole() as port:
        engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
                             connect_timeout_s=1)

        def connect() -> None:
            with engine.connect():
                pass

        with pytest.raises(OperationalError):
            returns(connect, "connecting to a silent host")
        engine.dispose()


def test_a_silent_database_host_gets_503s_from_the_app() -> None:
    with black_hole() as port:
        settings = make_settings(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
                                 migrate_on_start=False, **SMALL_TIMEOUTS)
        with TestClient(create_app(settings)) as http:
            response = returns(lambda: http.get("/v1/studies",
                                                headers={"Authorization": WELL_FORMED_KEY}),
                               "a request to the app")
            assert_retryable_problem(response)
            health = returns(lambda: http.get("/healthz"), "the health check")
            assert health.status_code == 503 and float(health.headers["Retry-After"]) > 0


# --- a lock held by another connection -----------------------------------------------------------

def _ask_one(http: TestClient, study_id: str) -> dict[str, Any]:
    response = http.post(f"/v1/studies/{study_id}/ask", json={})
    assert response.status_code == 200, response.text
    return response.json()["trials"][0]


def _tell_blocked_by(hold_lock: Callable[[str], Callable[[], None]], database_url: str) -> None:
    """A tell waiting on a lock that ``hold_lock(study_id)`` takes (and its result releases) gets
    a 503 + Retry-After; the trial is unchanged, and the same tell succeeds once the lock is
    gone."""
    app = create_app(make_settings(database_url, db_statement_timeout_s=1.0,
                                   request_timeout_s=HANG_DETECTOR_S / 2))
    with TestClient(app) as http:
        http.headers["Authorization"] = f"Bearer {new_key(app)}"
        response = http.post("/v1/studies", json={"name": "locked", "direction": "minimize",
                                                  "space": MIXED_SPACE})
        assert response.status_code == 201, response.text
        study_id = response.json()["id"]
        trial = _ask_one(http, study_id)
        tell = f"/v1/studies/{study_id}/trials/{trial['id']}/tell"
        release = hold_lock(study_id)
        try:
            response = returns(lambda: http.post(tell, json={"value": 1.5}), "a blocked tell")
        finally:
            release()
        assert_retryable_problem(response)
        stored = http.get(f"/v1/studies/{study_id}/trials/{trial['id']}").json()
        assert (stored["state"], stored["value"]) == ("running", None)
        assert http.post(tell, json={"value": 1.5}).status_code == 200


def test_a_tell_blocked_on_a_postgres_row_lock_gets_503(postgres_url: str) -> None:
    def hold_lock(study_id: str) -> Callable[[], None]:
        engine = make_engine(postgres_url, statement_timeout_s=None)
        connection = engine.connect()
        connection.execute(text("SELECT id FROM studies WHERE id = :id FOR UPDATE"),
                           {"id": study_id})

        def release() -> None:
            connection.rollback()
            connection.close()
            engine.dispose()

        return release

    _tell_blocked_by(hold_lock, postgres_url)


def test_waiting_for_a_pooled_connection_gets_503(postgres_url: str) -> None:
    app = create_app(make_settings(postgres_url, db_pool_size=1, db_max_overflow=0,
                                   db_pool_timeout_s=1.0))
    with TestClient(app) as http:
        http.headers["Authorization"] = f"Bearer {new_key(app)}"
        with app.state.engine.connect():  # the pool's only connection, held
            response = returns(lambda: http.get("/v1/studies"), "a request with the pool empty")
        assert_retryable_problem(response)
        assert http.get("/v1/studies").status_code == 200


def test_a_statement_past_its_timeout_gets_503_not_500(postgres_url: str) -> None:
    engine = make_engine(postgres_url, statement_timeout_s=0.5)
    app = FastAPI()
    problems.install(app)

    @app.get("/slow-query")
    def slow_query() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_sleep(5)"))

    with TestClient(app) as http:
        assert_retryable_problem(returns(lambda: http.get("/slow-query"), "a slow query"))
        assert "in time" in http.get("/slow-query").json()["detail"]
    engine.dispose()


def test_postgres_connections_carry_the_timeouts_and_keep_the_operators_options(
        postgres_url: str) -> None:
    def show(url: str, name: str) -> str:
        engine = make_engine(url, statement_timeout_s=2.5)
        with engine.connect() as connection:
            value = connection.execute(text(f"SHOW {name}")).scalar_one()
        engine.dispose()
        return value

    assert show(postgres_url, "statement_timeout") == "2500ms"
    assert show(postgres_url, "lock_timeout") == "2s"  # a little shorter: names the contention
    assert show(postgres_url, "idle_in_transaction_session_timeout") == "15s"
    assert show(f"{postgres_url}?options=-c%20lock_timeout%3D777", "lock_timeout") == "777ms"


def test_a_tell_blocked_on_the_sqlite_write_lock_gets_503(sqlite_url: str) -> None:
    def hold_lock(_: str) -> Callable[[], None]:
        connection = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")  # the file's write lock, until rolled back

        def release() -> None:
            connection.rollback()
            connection.close()

        return release

    _tell_blocked_by(hold_lock, sqlite_url)


# --- the request deadline itself -----------------------------------------------------------------

def test_the_deadline_answers_503_for_a_handler_that_does_not_return() -> None:
    release, slow_done = threading.Event(), threading.Event()
    app = FastAPI()

    @app.get("/slow")
    def slow() -> dict[str, str]:  # a sync handler: a worker thread nothing can interrupt
        try:
            release.wait(HANG_DETECTOR_S)
            return {"late": "discarded"}
        finally:
            slow_done.set()

    @app.get("/streaming")
    def streaming() -> StreamingResponse:
        def chunks() -> Iterator[bytes]:
            yield b"started;"
            release.wait(HANG_DETECTOR_S)
            yield b"finished"
        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/fast")
    def fast() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(DeadlineMiddleware, timeout_s=0.5)
    with TestClient(app) as http:
        response = returns(lambda: http.get("/slow"), "a request to a stuck handler")
        assert_retryable_problem(response)
        assert "0.5 s" in response.json()["detail"]
        assert http.get("/fast").json() == {"ok": True}  # the stuck thread blocks no one else

        def release_soon() -> httpx.Response:  # the stream outlives the deadline, but started
            threading.Timer(1.0, release.set).start()
            return http.get("/streaming")

        streamed = returns(release_soon, "a streaming response")
        assert (streamed.status_code, streamed.text) == (200, "started;finished")
        assert slow_done.wait(HANG_DETECTOR_S)  # the stuck handler finished; its answer dropped
        assert http.get("/fast").json() == {"ok": True}


def test_the_deadline_leaves_answers_in_time_and_errors_alone() -> None:
    app = FastAPI()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    app.add_middleware(DeadlineMiddleware, timeout_s=HANG_DETECTOR_S)
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.get("/boom").status_code == 500
        assert http.get("/missing").status_code == 404
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        DeadlineMiddleware(app, timeout_s=0)
