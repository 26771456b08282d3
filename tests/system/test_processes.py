"""Several server processes on one database behave as one service; a killed server loses no
acknowledged tell. These run real uvicorn processes against SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import MIXED_SPACE
from tests.system.servers import make_key, start_server

pytestmark = pytest.mark.slow


def test_two_servers_hammered_concurrently_act_as_one(database_url: str) -> None:
    key = make_key(database_url)
    servers = [start_server(database_url), start_server(database_url)]
    headers = {"Authorization": f"Bearer {key}"}
    try:
        study = httpx.post(f"{servers[0].url}/v1/studies", headers=headers, timeout=10,
                           json={"name": "hammer", "space": MIXED_SPACE}).json()
        acknowledged: dict[int, float] = {}
        handed: list[int] = []
        lock = threading.Lock()

        def client(worker: int) -> None:
            with httpx.Client(headers=headers, timeout=30) as http:
                for i in range(15):
                    base = servers[(worker + i) % 2].url
                    ask = http.post(f"{base}/v1/studies/{study['id']}/ask", json={})
                    assert ask.status_code == 200, ask.text
                    (trial,) = ask.json()["trials"]
                    value = float(worker * 1000 + i)
                    told = http.post(
                        f"{servers[(worker + i + 1) % 2].url}/v1/studies/{study['id']}"
                        f"/trials/{trial['id']}/tell", json={"value": value})
                    assert told.status_code == 200, told.text
                    with lock:
                        handed.append(trial["id"])
                        acknowledged[trial["id"]] = value

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(client, range(8)))
        assert len(handed) == len(set(handed)) == 120  # no trial handed out twice
        page = httpx.get(f"{servers[1].url}/v1/studies/{study['id']}/trials", headers=headers,
                         params={"limit": 1000}).json()
        assert sorted(t["number"] for t in page["trials"]) == list(range(120))  # gapless
        stored = {t["id"]: t["value"] for t in page["trials"]}
        assert stored == acknowledged
    finally:
        for server in servers:
            server.stop()
