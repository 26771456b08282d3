"""`quality --import-runs`: an earlier report's runs fill the cache; its table rebuilds exactly."""

from __future__ import annotations

import json
import math

from benchmarks import quality
from benchmarks.report import build_report
from benchmarks.runner import import_runs, load_runs, run_path, write_record
from benchmarks.tasks import registry
from benchmarks.tasks.base import Task

TASK = "toy/quality-import"
BUDGET = 12
registry.register(TASK, lambda: Task(
    name=TASK, space={"params": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]},
    direction="minimize", objective=lambda p: p["x"], optimum=0.0, target=0.1, worst=1.0,
    median=0.5, n_configs=0))


def _store(root, method: str, seed: int, best: list[float], ask_s: float) -> None:
    write_record(run_path(root, TASK, method, seed, BUDGET), {
        "task": TASK, "method": method, "seed": seed, "budget": BUDGET,
        "direction": "minimize", "best": best, "ask_s": [ask_s] * BUDGET,
        "tell_s": [0.0] * BUDGET})


def _curve(*drops: tuple[int, float]) -> list[float]:
    """Best-so-far over the budget, 1.0 until each (trial, value) drop."""
    best = [1.0] * BUDGET
    for trial, value in drops:
        best[trial - 1:] = [value] * (BUDGET - trial + 1)
    return best


def _results(root) -> dict:
    return json.loads((root / "quality.json").read_text())["results"][TASK]


def test_imported_runs_rebuild_the_same_table_and_are_named(tmp_path) -> None:
    earlier, fresh = tmp_path / "earlier", tmp_path / "fresh"
    _store(earlier, "slow", 0, _curve((3, 0.4), (7, 0.05)), 0.5)
    _store(earlier, "slow", 1, _curve((2, 0.3)), 0.3)
    _store(earlier, "fast", 0, _curve((5, 0.09)), 0.001)
    build_report(earlier, [TASK], ["slow", "fast"], BUDGET, plots=False)

    _store(fresh, "fast", 0, _curve((4, 0.08)), 0.002)  # rerun here: the cache wins
    imported = import_runs(fresh, earlier / "quality.json", [TASK], ["slow", "fast"], BUDGET)
    assert imported == [f"{TASK} slow seed 0", f"{TASK} slow seed 1"]
    runs = {(r["method"], r["seed"]): r for r in load_runs(fresh, [TASK], ["slow", "fast"],
                                                            BUDGET)}
    assert runs[("slow", 0)]["best"] == _curve((3, 0.4), (7, 0.05))
    assert runs[("fast", 0)]["best"] == _curve((4, 0.08))
    assert "imported_from" not in runs[("fast", 0)]

    md = build_report(fresh, [TASK], ["slow", "fast"], BUDGET, plots=False)
    before, after = _results(earlier), _results(fresh)
    for key in ("trials_to_target", "regret_median", "ttt_median"):
        assert after["slow"][key] == before["slow"][key]
    assert math.isclose(after["slow"]["ask_ms_mean"], before["slow"]["ask_ms_mean"])
    assert after["fast"]["trials_to_target"] == [4]
    assert "- slow: runs imported from an earlier report (quality.json" in md
    assert "- fast: runs imported" not in md


def test_nothing_is_imported_at_another_budget_or_twice(tmp_path) -> None:
    earlier, fresh = tmp_path / "earlier", tmp_path / "fresh"
    _store(earlier, "slow", 0, _curve((3, 0.05)), 0.5)
    build_report(earlier, [TASK], ["slow"], BUDGET, plots=False)
    assert import_runs(fresh, earlier / "quality.json", [TASK], ["slow"], BUDGET + 1) == []
    assert len(import_runs(fresh, earlier / "quality.json", [TASK], ["slow"], BUDGET)) == 1
    assert import_runs(fresh, earlier / "quality.json", [TASK], ["slow"], BUDGET) == []


def test_the_command_imports_before_it_reports(tmp_path, capsys) -> None:
    earlier, fresh = tmp_path / "earlier", tmp_path / "fresh"
    _store(earlier, "random", 0, _curve((2, 0.05)), 0.0)
    build_report(earlier, [TASK], ["random"], BUDGET, plots=False)
    assert quality.main(["--tasks", TASK, "--methods", "random", "--budget", str(BUDGET),
                         "--seeds", "1", "--out", str(fresh), "--no-plots",
                         "--import-runs", str(earlier / "quality.json")]) == 0
    assert "1 run(s) imported" in capsys.readouterr().out
    assert _results(fresh)["random"]["trials_to_target"] == [2]


THIRD = "toy/quality-import-two-thirds"
registry.register(THIRD, lambda: Task(
    name=THIRD, space={"params": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]},
    direction="minimize", objective=lambda p: p["x"], optimum=0.0, target=2 / 3, worst=1.0,
    median=0.5, n_configs=0))


def test_a_value_on_the_target_still_reaches_it_after_rounding(tmp_path) -> None:
    """The report keeps 7 significant digits: 2/3 is stored as 0.6666667, above a target of 2/3."""
    earlier, fresh = tmp_path / "earlier", tmp_path / "fresh"
    best = [1.0, 1.0, 2 / 3, *([2 / 3] * (BUDGET - 3))]
    write_record(run_path(earlier, THIRD, "slow", 0, BUDGET), {
        "task": THIRD, "method": "slow", "seed": 0, "budget": BUDGET, "direction": "minimize",
        "best": best, "ask_s": [0.1] * BUDGET, "tell_s": [0.0] * BUDGET})
    build_report(earlier, [THIRD], ["slow"], BUDGET, plots=False)
    import_runs(fresh, earlier / "quality.json", [THIRD], ["slow"], BUDGET)
    build_report(fresh, [THIRD], ["slow"], BUDGET, plots=False)
    results = json.loads((fresh / "quality.json").read_text())["results"][THIRD]
    assert results["slow"]["trials_to_target"] == [3]
