"""The `dyesp` command: keys and schema management against a real database file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import make_settings
from tests.system.servers import free_port


def dyesp(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True,
                          text=True, env={"DYESP_DATABASE_URL": database_url, "PATH": "/usr/bin"})


def test_keys_create_prints_a_working_key_and_revoke_disables_it(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    created = dyesp("keys", "create", "alice", database_url=url)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("dyesp_")
    # key_cache_s=0: the server reads the key on every request, so the revoke shows at once
    # (a verified key is otherwise trusted a few seconds more: tests/api/test_studies.py)
    with TestClient(create_app(make_settings(url, key_cache_s=0))) as api:
        headers = {"Authorization": f"Bearer {secret}"}
        assert api.get("/v1/studies", headers=headers).status_code == 200
        listed = dyesp("keys", "list", database_url=url).stdout
        assert "alice" in listed and secret not in listed  # only the prefix is shown
        prefix = secret.split("_")[1]
        assert dyesp("keys", "revoke", prefix, database_url=url).returncode == 0
        assert api.get("/v1/studies", headers=headers).status_code == 401


def test_db_upgrade_reports_head(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    result = dyesp("db", "upgrade", database_url=url)
    assert result.returncode == 0, result.stderr
    from service.db.migrate import head

    assert f"current: {head()}  head: {head()}" in result.stdout


def test_serve_refuses_auth_off_on_a_public_address() -> None:
    result = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--host", "0.0.0.0"],
                            capture_output=True, text=True, timeout=30,
                            env={"DYESP_AUTH": "off", "PATH": "/usr/bin"})
    assert result.returncode == 2
    assert "only allowed when bound to 127.0.0.1" in result.stderr


# Every line any `dyesp serve` process writes: time, [pid], level, logger, message (one format).
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[(?P<pid>\d+)\] "
                      r"(?P<level>[A-Z]+) (?P<logger>\S+) (?P<message>.*)$")


def serve_and_stop(database_url: str, *args: str, workers: int = 1,
                   env: dict[str, str] | None = None, paths: tuple[str, ...] = (),
                   during: Callable[[int, list[str]], None] | None = None) -> list[str]:
    """Run `dyesp serve` until each worker is up, GET each path (each must answer 200), call
    ``during(port, lines so far)``, stop it, and return everything it wrote to stderr: read to the
    end, so a line the server wrote for a request is there whatever the timing."""
    port = free_port()
    server_env = {k: v for k, v in os.environ.items() if k != "DYESP_ACCESS_LOG"}
    server_env.update(DYESP_DATABASE_URL=database_url, DYESP_RETRAIN_ENABLED="false", **(env or {}))
    server = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--workers", str(workers),
         "--port", str(port), *args],
        env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(server.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120  # generous: processes import the app on a busy box
        while sum("dyesp ready" in line for line in lines) < workers:
            assert server.poll() is None, "".join(lines)[-2000:]
            assert time.monotonic() < deadline, "".join(lines)[-2000:]
            time.sleep(0.2)
        for path in paths:
            assert httpx.get(f"http://127.0.0.1:{port}{path}", timeout=30).status_code == 200
        if during is not None:
            during(port, lines)
    finally:
        server.terminate()
        server.wait(timeout=30)
        reader.join(timeout=30)
    return [line.rstrip("\n") for line in lines]


@pytest.mark.slow
def test_serve_with_several_workers_logs_from_each_worker(tmp_path) -> None:
    """Each worker is a spawned process: the app's own log lines must reach stderr from all, in
    the one format, each naming its process."""
    url = f"sqlite:///{tmp_path / 'workers.db'}"
    assert dyesp("db", "upgrade", database_url=url).returncode == 0  # not two racing migrations
    lines = serve_and_stop(url, workers=2, env={"DYESP_AUTH": "on"}, paths=("/healthz",))
    ready = [LOG_LINE.match(line) for line in lines if "dyesp ready" in line]
    assert all(ready) and len(ready) == 2, lines
    assert {(m["level"], m["logger"]) for m in ready} == {("INFO", "dyesp")}
    assert len({m["pid"] for m in ready}) == 2, lines  # one line from each worker


@pytest.mark.slow
def test_metrics_count_every_workers_requests(tmp_path) -> None:
    """With several workers, every scrape of /metrics, whichever worker answers it, counts the
    requests all workers served (prometheus multiprocess mode), not only its own."""
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    assert dyesp("db", "upgrade", database_url=url).returncode == 0
    healthz = re.compile(r'^dyesp_requests_total\{method="GET",route="/healthz",status="200"\} '
                         r"(\S+)$", re.MULTILINE)
    counts: list[float] = []
    serving: set[str] = set()

    def probe(port: int, lines: list[str]) -> None:
        sent = 0
        # New connections until the access log shows both workers served /healthz: a scrape of
        # either one can then only count them all if the counts are shared.
        while len(serving) < 2 and sent < 400:
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
            sent += 1
            serving.update(m["pid"] for m in map(LOG_LINE.match, list(lines))
                           if m and '"GET /healthz HTTP/1.1" 200' in m["message"])
        for _ in range(8):
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
            found = healthz.search(text)
            counts.append(float(found.group(1)) if found else 0.0)
        counts.append(sent)

    serve_and_stop(url, "--access-log", workers=2, env={"DYESP_AUTH": "on"}, during=probe)
    assert len(serving) == 2, "the requests never reached the second worker"
    *scraped, sent = counts
    assert scraped == [sent] * len(scraped), (scraped, sent)


@pytest.mark.slow
@pytest.mark.parametrize(("args", "env", "logged"), [
    (("--access-log",), {"DYESP_ACCESS_LOG": "false"}, True),  # the flag wins over the setting
    ((), {"DYESP_ACCESS_LOG": "true"}, True),
    (("--no-access-log",), {"DYESP_ACCESS_LOG": "true"}, False),
    ((), {}, False),  # off by default
], ids=["flag-on", "setting-on", "flag-off", "default"])
def test_serve_access_log_option(tmp_path, args, env, logged) -> None:
    """With the access log on, a request leaves one line in the application's format; off, none."""
    url = f"sqlite:///{tmp_path / 'access.db'}"
    probe = f"/healthz?probe={uuid.uuid4().hex}"
    lines = serve_and_stop(url, *args, env=env, paths=(probe,))
    assert any(LOG_LINE.match(line) and "dyesp ready" in line for line in lines), lines
    access = [line for line in lines if probe in line]
    if not logged:
        assert access == [], access
        assert not any("uvicorn.access" in line for line in lines), lines
        return
    assert len(access) == 1, lines
    line = LOG_LINE.match(access[0])
    assert line is not None, access
    assert (line["level"], line["logger"]) == ("INFO", "uvicorn.access")
    assert re.fullmatch(rf'127\.0\.0\.1:\d+ - "GET {re.escape(probe)} HTTP/1\.1" 200',
                        line["message"]), access
