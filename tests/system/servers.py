"""Run real `uvicorn` server processes for the multi-process and crash tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(database_url: str, port: int | None = None, workers: int = 1,
                 auth: bool = True, retrain: bool | None = None) -> Server:
    """A uvicorn server in its own process; retraining is on only where auth is off (benchmarks)
    unless ``retrain`` says otherwise. Per-owner rate limits are off: the
    fault and load tests drive one owner faster than 50 asks a second on a quick machine, and a
    429 there is admission working, not the failure under test (tests/api/test_admission.py
    covers the limits)."""
    port = port or free_port()
    retrain = (not auth) if retrain is None else retrain
    env = dict(os.environ, DYESP_DATABASE_URL=database_url, DYESP_AUTH="on" if auth else "off",
               DYESP_RETRAIN_ENABLED="true" if retrain else "false")
    env.update(DYESP_RATE_LIMIT="", DYESP_ASK_RATE_LIMIT="")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.asgi:app", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, process)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not become healthy in 30 s")


def make_key(database_url: str, owner: str = "system-test") -> str:
    """An API key on a migrated database, made before any server process starts."""
    from service.db import key_queries, migrate
    from service.db.session import make_engine, make_sessionmaker, transaction

    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with transaction(make_sessionmaker(engine)) as session:
        secret = key_queries.create_key(session, owner, "k").secret
    engine.dispose()
    return secret
