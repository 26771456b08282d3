"""Real DyESP servers for the benchmarks: ``uvicorn`` in a process of its own.

Every benchmark that measures the service over HTTP starts it here, alike: run from this checkout,
no Redis (retraining, when on, runs in the server's spawned child; rate limits are per process),
one BLAS thread per process (the clients share the cores), the server's log in a file, and the
whole process group killed on stop. The tests have their own helper (``tests/system/servers.py``,
which pipes stderr to the test); benchmarks never import the tests (an import contract in
pyproject.toml).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_LOG = Path(tempfile.gettempdir()) / "dyesp-bench-server.log"  # server stderr, appended
HEALTHY_WITHIN_S = 60.0


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    workers: list[int] = field(default_factory=list)  # pids of the worker processes, if known

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        # The server runs in its own session: whatever it left behind (a retraining child of a
        # worker outlives its parent) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(database_url: str, *, workers: int = 1, auth: bool = False,
                 retrain: bool = False, app: str = "service.asgi:app", factory: bool = False,
                 env: Mapping[str, str | None] | None = None,
                 log: Path = SERVER_LOG) -> Server:
    """A healthy server on a free loopback port.

    ``auth``: with it off every request acts as the local owner; with it on, make keys on the
    database (``service.db.key_queries.create_key``) before the requests. ``app`` (with
    ``factory``: a function that builds the app) replaces the production app. ``env``: extra
    variables for the server; None unsets one. With auth off, every worker is warmed (imports,
    connection pool) before this returns, so the first measured requests don't pay for it.
    """
    import httpx

    port = free_port()
    variables = dict(os.environ, DYESP_DATABASE_URL=database_url,
                     DYESP_AUTH="on" if auth else "off", DYESP_HOST="127.0.0.1",
                     DYESP_RETRAIN_ENABLED="true" if retrain else "false",
                     OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    variables.pop("DYESP_REDIS_URL", None)
    for name, value in (env or {}).items():
        if value is None:
            variables.pop(name, None)
        else:
            variables[name] = value
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, *(["--factory"] if factory else []),
         "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
         "--log-level", "warning", "--no-access-log"],
        # A file, not a pipe: nobody reads a pipe during the run, and once its buffer filled
        # the server's logging blocked and uvicorn restarted the stuck worker (reset connections).
        cwd=ROOT, env=variables, stdout=subprocess.DEVNULL, stderr=log.open("ab"),
        start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        server.stop()
        raise RuntimeError(f"server did not become healthy in {HEALTHY_WITHIN_S:g} s")
    if not auth:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(4 * workers):
                http.get("/v1/studies", params={"name": "-"})
    server.workers = _worker_pids(process.pid, workers)
    return server


def _worker_pids(parent: int, expected: int) -> list[int]:
    try:
        import psutil
    except ImportError:
        return []
    for _ in range(50):
        if expected == 1:
            return [parent]
        children = [c.pid for c in psutil.Process(parent).children()
                    if "resource_tracker" not in " ".join(c.cmdline())]
        if len(children) >= expected:
            return children
        time.sleep(0.1)
    return []
