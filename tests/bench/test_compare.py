"""`benchmarks.compare` pairs runs by task and seed and pools the trials-to-target ratios."""

from __future__ import annotations

import math

from benchmarks import compare
from benchmarks.tasks import registry
from benchmarks.tasks.base import Task
from tests.bench.runs import store_run

TASK = "toy/compare"
registry.register(TASK, lambda: Task(
    name=TASK, space={"params": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]},
    direction="minimize", objective=lambda p: p["x"], optimum=0.0, target=0.1, worst=1.0,
    median=0.5, n_configs=0))


def _store(root, method: str, seed: int, reached_at: int | None, budget: int = 20) -> None:
    store_run(root, TASK, method, seed, reached_at, budget)


def test_pairs_only_common_seeds_and_counts_failures_at_budget_plus_one(tmp_path) -> None:
    base, cand = tmp_path / "base", tmp_path / "cand"
    _store(base, "dyesp", 0, 10)
    _store(base, "dyesp", 1, None)
    _store(base, "dyesp", 2, 4)  # no candidate run for seed 2: not paired
    _store(cand, "dyesp", 0, 5)
    _store(cand, "dyesp", 1, 7)
    _store(cand, "dyesp", 3, 1)  # no base run for seed 3
    pairs = compare.paired_ttt(base, cand, TASK, "dyesp", "dyesp", 20)
    assert pairs == [(0, 10.0, 5.0), (1, 21.0, 7.0)]
    row = compare.summary_row("t", pairs)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "2" and cells[6] == "2 / 0"
    assert float(cells[4]) == round(math.sqrt(0.5 * 7 / 21), 3)  # geometric mean of the ratios


def test_main_prints_a_pooled_row_and_fails_without_pairs(tmp_path, capsys) -> None:
    base, cand = tmp_path / "base", tmp_path / "cand"
    _store(base, "dyesp", 0, 10)
    _store(cand, "other", 0, 20)
    assert compare.main([str(base), str(cand), "--tasks", TASK, "--budget", "20"]) == 1
    assert compare.main([str(base), str(cand), "--tasks", TASK, "--budget", "20",
                         "--candidate-method", "other"]) == 0
    out = capsys.readouterr().out
    assert "**pooled**" in out and "| 2.000 | 2.000 | 0 / 1 |" in out
