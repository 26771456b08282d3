"""Every acknowledged report survives a kill -9 of the server (SQLite and PostgreSQL): a real
uvicorn process takes reports from client threads, is killed mid-stream, and a new server on the
same database shows each acknowledged point in the trial's curve."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.conftest import MIXED_SPACE
from tests.system.servers import make_key, start_server

pytestmark = pytest.mark.slow


def test_kill_9_loses_no_acknowledged_report(database_url: str) -> None:
    key = make_key(database_url, "reports-durable")
    headers = {"Authorization": f"Bearer {key}"}
    server = start_server(database_url)
    acknowledged: dict[int, dict[int, float]] = {}
    enough = threading.Event()
    lock = threading.Lock()
    try:
        study = httpx.post(f"{server.url}/v1/studies", headers=headers, timeout=30, json={
            "name": "durable", "space": MIXED_SPACE,
            "fidelity": {"name": "step", "min": 0, "max": 10**6}}).json()
        asked = httpx.post(f"{server.url}/v1/studies/{study['id']}/ask", headers=headers,
                           json={"count": 3}, timeout=30)
        trials = [t["id"] for t in asked.json()["trials"]]

        def send(trial_id: int) -> None:
            url = f"{server.url}/v1/studies/{study['id']}/trials/{trial_id}/report"
            with httpx.Client(headers=headers, timeout=10) as client:
                for step in range(10_000):
                    value = 1.0 / (step + 1) + trial_id
                    try:
                        response = client.post(url, json={"step": step, "value": value})
                    except httpx.HTTPError:
                        return  # the server is gone: this report was never acknowledged
                    if response.status_code != 200:
                        return
                    with lock:
                        acknowledged.setdefault(trial_id, {})[step] = value
                        if sum(map(len, acknowledged.values())) >= 60:
                            enough.set()

        threads = [threading.Thread(target=send, args=(t,), daemon=True) for t in trials]
        for thread in threads:
            thread.start()
        assert enough.wait(120), "the server acknowledged too few reports"
        server.kill()  # SIGKILL while the clients are still reporting
        for thread in threads:
            thread.join(30)
    finally:
        server.stop()
    server = start_server(database_url)
    try:
        for trial_id, points in acknowledged.items():
            curve: dict[int, Any] = {}
            offset = 0
            while True:
                page = httpx.get(
                    f"{server.url}/v1/studies/{study['id']}/trials/{trial_id}/curve",
                    headers=headers, params={"offset": offset, "limit": 1000}, timeout=30).json()
                curve.update({step: value for step, value in page["points"]})
                offset += len(page["points"])
                if not page["points"] or offset >= page["total"]:
                    break
            lost = {s: v for s, v in points.items() if curve.get(s) != v}
            assert not lost, f"trial {trial_id}: acknowledged reports lost: {lost}"
            got = httpx.get(f"{server.url}/v1/studies/{study['id']}/trials/{trial_id}",
                            headers=headers, timeout=30).json()
            assert got["last_step"] >= max(points)
    finally:
        server.stop()
