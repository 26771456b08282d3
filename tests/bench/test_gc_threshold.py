"""The collector benchmark (benchmarks/gc_threshold.py) on a small history: a row per threshold,
and the young threshold it sets really changes what the collector does."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import gc_threshold


def test_a_higher_young_threshold_makes_fewer_collector_passes(tmp_path: Path) -> None:
    gc_threshold.main(["--trials", "200", "--asks", "10", "--rounds", "1",
                       "--thresholds", "700,50000", "--out", str(tmp_path)])
    rows = {r["threshold"]: r for r in json.loads((tmp_path / "gc_threshold.json").read_text())}
    assert set(rows) == {700, 50_000}
    default, tuned = rows[700]["passes_per_100_asks"], rows[50_000]["passes_per_100_asks"]
    assert default["0"] > 100  # CPython's 700 collects the young several times per ask
    assert tuned["0"] < default["0"] / 10
    for row in rows.values():
        assert 0 < row["ask_p50_ms"] <= row["ask_p99_ms"] <= row["ask_max_ms"]
    table = (tmp_path / "gc_threshold.md").read_text()
    assert "| 700 |" in table and "| 50,000 |" in table
