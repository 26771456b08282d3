"""Issue 14 end to end: a real uvicorn server retraining in its spawned child, the real SDK, one
sequential client, seed 7, twice: the same trials (the SDK retries a deterministic ask's 503)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import MIXED_SPACE
from tests.system.servers import make_key, start_server
from tests.workers.test_deterministic import MIN_TRIALS, N_TRIALS, objective

pytestmark = pytest.mark.slow


def test_the_sdk_gets_the_same_trials_for_one_seed_from_a_real_server(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dyesp_client import Client

    monkeypatch.delenv("DYESP_REDIS_URL", raising=False)
    monkeypatch.setenv("DYESP_RETRAIN_MIN_TRIALS", str(MIN_TRIALS))
    key = make_key(database_url, "deterministic-test")
    server = start_server(database_url, retrain=True)
    threading.Thread(target=server.process.stderr.read, daemon=True).start()  # never blocks
    try:
        with Client(server.url, api_key=key) as client:
            runs = []
            for name, pause_s in (("eager", 0.0), ("patient", 0.3)):
                study = client.create_study(f"sdk-{name}", MIXED_SPACE, seed=7)
                params = []
                for _ in range(N_TRIALS):
                    with study.ask() as trial:
                        params.append(trial.params)
                        trial.tell(objective(trial.params))
                    time.sleep(pause_s)
                runs.append((study, params))
            (first, a), (second, b) = runs
            assert a == b
            assert [t.proposal for t in first.trials()] == [t.proposal for t in second.trials()]
            assert any(t.proposal["predicted"] is not None for t in first.trials())
    finally:
        server.stop()
