"""The load benchmark's harness counts what its table claims (structure, not timing).

A tiny configuration against a real server: 2 client processes share 10 trials on one study
(PostgreSQL, as the benchmark runs); a window scenario exercises the prefill and the warm-up pairs;
2 clients on 2 studies on SQLite. Optuna runs (on SQLite) only where the [bench] extra is
installed.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from benchmarks import load

pytestmark = pytest.mark.slow


def _run(tmp_path, database_url: str, systems: str, extra: list[str]) -> dict:
    argv = ["--systems", systems, "--dyesp-url", database_url,
            "--optuna-url", f"sqlite:///{tmp_path / 'optuna.db'}",
            "--clients", "2", "--headline-clients", "2", "--trials", "10",
            "--retrain", "off", "--workers", "2", "--max-procs", "2", "--out", str(tmp_path),
            *extra]
    return load.main(argv)


def _check_counts(result: dict) -> None:
    assert result["errors"] == 0, result["error_samples"]
    assert result["pairs"] == result["quota_per_study"] * result["studies"]
    assert sum(result["told_per_study"]) == result["pairs"]
    assert sum(band["pairs"] for band in result["bands"].values()) == result["pairs"]
    for study, told in zip(result["study_ids"], result["told_per_study"], strict=True):
        # every pair told, nothing left running; prefilled and warm-up trials are complete too
        expected = told + result["warmup_pairs"] + result["prefill"]
        assert result["states"][study] == {"complete": expected}, (study, result["states"])


def test_one_study_and_window(tmp_path, postgres_url: str) -> None:
    database_url = postgres_url
    systems = "dyesp,optuna" if importlib.util.find_spec("optuna") else "dyesp"
    report = _run(tmp_path, database_url, systems,
                  ["--scenarios", "one-study,window", "--window-at", "30", "--window", "8",
                   "--window-clients", "2"])
    results = {(r["scenario"], r["system"]): r for r in report["results"]}
    assert set(results) == {(s, sy) for s in ("one-study", "window@30")
                            for sy in systems.split(",")}
    for result in results.values():
        _check_counts(result)
    grown = results["one-study", "dyesp"]
    assert grown["pairs"] == 10 and grown["prefill"] == 0
    assert list(grown["bands"]) == ["0-100"]
    assert grown["bands"]["0-100"]["history"] == [0, 10]  # numbers 0..9, gapless
    window = results["window@30", "dyesp"]
    # 30 - 8 measured - 2 warm-up pairs prefilled; the measured asks saw histories 22..29
    assert window["prefill"] == 20 and window["pairs"] == 8
    assert window["bands"]["0-100"]["history"] == [22, 30]
    for band in grown["bands"].values():
        assert band["ask_p50_ms"] <= band["ask_p99_ms"]
        assert band["pairs_per_s"] > 0
    if "optuna" in systems:
        assert any(r["scenario"] == "one-study" for r in report["ratios"])
    written = json.loads((tmp_path / "load.json").read_text())
    assert len(written["results"]) == len(report["results"])
    assert "| one-study | 2 | 1 | dyesp | 10 |" in (tmp_path / "load.md").read_text()


def test_many_studies(tmp_path, sqlite_url: str) -> None:
    report = _run(tmp_path, sqlite_url, "dyesp",
                  ["--scenarios", "many-studies", "--studies", "2", "--trials-per-study", "4"])
    (result,) = report["results"]
    _check_counts(result)
    assert result["studies"] == 2 and result["told_per_study"] == [4, 4]


def test_bands_and_percentiles() -> None:
    assert [load.band_of(n) for n in (0, 99, 100, 999, 1000, 9999, 10000)] == [
        "0-100", "0-100", "100-1k", "100-1k", "1k-10k", "1k-10k", "10k+"]
    samples = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert load.percentile(samples, 0.5) == pytest.approx(50)
    assert load.percentile(samples, 0.99) == pytest.approx(99)
