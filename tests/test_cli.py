"""The `dyesp` command: keys and schema management against a real database file."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

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
    with TestClient(create_app(make_settings(url))) as api:
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


@pytest.mark.slow
def test_serve_with_several_workers_logs_from_each_worker(tmp_path) -> None:
    """Each worker is a spawned process: the app's own log lines must reach stderr from all."""
    url = f"sqlite:///{tmp_path / 'workers.db'}"
    assert dyesp("db", "upgrade", database_url=url).returncode == 0  # not two racing migrations
    port = free_port()
    env = dict(os.environ, DYESP_DATABASE_URL=url, DYESP_AUTH="on",
               DYESP_RETRAIN_ENABLED="false")
    server = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--workers", "2", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(server.stderr), daemon=True).start()
    try:
        deadline = time.monotonic() + 120  # generous: two processes import the app on a busy box
        while sum("INFO dyesp dyesp ready" in line for line in lines) < 2:
            assert server.poll() is None, "".join(lines)[-2000:]
            assert time.monotonic() < deadline, "".join(lines)[-2000:]
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
