"""`benchmarks.cell_search` pairs the engine with and without the annotation by seed, and puts
each variant against the best peer."""

from __future__ import annotations

import pytest

from benchmarks import cell_search
from benchmarks.tasks import registry
from benchmarks.tasks.base import Task
from tests.bench.runs import store_run

PLAIN, CELL = "toy-plain/{}", "toy-cell/{}"
for _name in (PLAIN.format("a"), CELL.format("a")):
    registry.register(_name, lambda name=_name: Task(
        name=name, space={"params": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]},
        direction="minimize", objective=lambda p: p["x"], optimum=0.0, target=0.1, worst=1.0,
        median=0.5, n_configs=0))


def test_pairs_by_seed_and_compares_with_the_best_peer(tmp_path) -> None:
    base, cell = tmp_path / "base", tmp_path / "cell"
    for seed, (plain_at, cell_at) in enumerate([(8, 4), (10, 5), (None, 7)]):
        store_run(base, PLAIN.format("a"), "dyesp", seed, plain_at)
        store_run(cell, CELL.format("a"), "dyesp", seed, cell_at)
        store_run(base, PLAIN.format("a"), "local-search", seed, 6)
        store_run(base, PLAIN.format("a"), "optuna-tpe", seed, 12)
    out = cell_search.analyse(base, cell, ["a"], 20, plain=PLAIN, cell_task=CELL)
    row = out["datasets"]["a"]
    assert row["paired"]["pairs"] == 3 and row["paired"]["faster"] == 3
    assert row["paired"]["geo_mean"] == pytest.approx((0.5 * 0.5 * 7 / 21) ** (1 / 3))
    assert row["methods"]["dyesp"]["median"] == 10 and row["methods"]["dyesp"]["reached"] == 2
    assert row["best_peer"] == "local-search"
    assert row["cell_vs_best_peer"]["ratio"] == pytest.approx(5 / 6)
    assert out["pooled"]["cell_vs_best_peer"]["geo_mean"] == pytest.approx(5 / 6)
    lo, hi = row["paired"]["ci"]
    assert lo <= row["paired"]["geo_mean"] <= hi


def test_reference_fills_only_the_seeds_the_folder_lacks(tmp_path) -> None:
    store_run(tmp_path, PLAIN.format("a"), "optuna-gp", 0, 3)
    reference = {"budget": 20, "results": {PLAIN.format("a"): {"optuna-gp": {
        "seeds": [0, 1, 2], "trials_to_target": [9, None, 4]}}}}
    got = cell_search.ttt_by_seed(tmp_path, PLAIN.format("a"), "optuna-gp", 20, reference)
    assert got == {0: 3.0, 1: 21.0, 2: 4.0}
