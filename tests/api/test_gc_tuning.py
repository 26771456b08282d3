"""The server processes' entry point (``service.asgi``) sets the cyclic collector up for a
long-lived server (``app.tune_collector``); apps built in-process (tests) leave it alone.

Each case runs in a fresh interpreter: the collector's settings are the whole process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from service.config import Settings

PROBE = """
import gc, json, sys
before = gc.get_threshold()
from fastapi.testclient import TestClient
if sys.argv[1] == "asgi":
    from service.asgi import app
else:
    from service.app import create_app
    app = create_app()
with TestClient(app):
    print(json.dumps({"before": before, "after": gc.get_threshold(),
                      "frozen": gc.get_freeze_count()}))
"""


def _probe(tmp_path: Path, entry: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, entry], capture_output=True, text=True, timeout=120,
        cwd=tmp_path, env={**os.environ, "DYESP_DATABASE_URL": f"sqlite:///{tmp_path}/gc.db",
                           "DYESP_RETRAIN_ENABLED": "false", **env})


def test_the_server_entry_point_freezes_startup_and_collects_young_objects_rarely(
        tmp_path: Path) -> None:
    done = _probe(tmp_path, "asgi")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    default = Settings.model_fields["gc_young_threshold"].default
    assert seen["after"] == [default, *seen["before"][1:]]
    assert seen["before"][0] < default
    assert seen["frozen"] > 10_000  # the modules and the app: gc.freeze ran after startup


def test_the_threshold_is_a_setting_and_is_validated(tmp_path: Path) -> None:
    done = _probe(tmp_path, "asgi", DYESP_GC_YOUNG_THRESHOLD="2000")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["after"][0] == 2000
    refused = _probe(tmp_path, "asgi", DYESP_GC_YOUNG_THRESHOLD="0")
    assert refused.returncode != 0
    assert "gc_young_threshold" in refused.stderr


def test_an_app_built_in_process_leaves_the_collector_alone(tmp_path: Path) -> None:
    done = _probe(tmp_path, "in-process")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["after"] == seen["before"]
    assert seen["frozen"] == 0
