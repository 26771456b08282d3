"""The per-phase ask benchmark (benchmarks/ask_phases.py) on a small study: every measured ask
has its phases, the phases fit inside the request, and the service is left unwrapped after."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import ask_phases
from service.caches.history import HistoryCache
from service.usecases import ask_tell, proposals


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_phases_add_up_inside_each_ask_and_the_timers_are_removed(tmp_path: Path,
                                                                   database: str) -> None:
    originals = (proposals.draft, proposals.propose, ask_tell.ask, HistoryCache.load)
    ask_phases.main(["--trials", "60", "--asks", "6", "--warmup", "2", "--database", database,
                     "--out", str(tmp_path)])
    assert (proposals.draft, proposals.propose, ask_tell.ask, HistoryCache.load) == originals
    data = json.loads((tmp_path / "ask_phases.json").read_text())
    records = data["records"]
    assert len(records) == 6
    assert [r["number"] for r in records] == sorted(r["number"] for r in records)
    assert records[0]["number"] >= 60 + 2  # after the prefill and the warm-up pairs
    for r in records:
        phases = r["phases_ms"]
        assert {"draft", "draft/history load", "draft/engine", "lock", "recording",
                "use case", "other", "HTTP"} <= set(phases)
        assert phases["draft/engine"] + phases["draft/history load"] <= phases["draft"]
        assert phases["use case"] <= r["ask_ms"]
        assert phases["other"] >= -0.01  # the use case holds every timed part
        assert r["pruner_consulted"]  # the pruner trained on the prefill is stored and applies
    rows = {row["asks"]: row for row in data["rows"]}
    assert rows["all"]["n"] == 6
    assert sum(row["n"] for label, row in rows.items() if label != "all") == 6
    table = (tmp_path / "ask_phases.md").read_text()
    assert "| all | 6 |" in table and "draft/engine" in table
