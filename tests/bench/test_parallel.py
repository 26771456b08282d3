"""The parallel benchmark's simulation (benchmarks/parallel.py), on a tiny synthetic task.

One worker must be the sequential runner's loop exactly; eight workers must overlap (eight
running at once, never more), tell results in finish-time order, keep every asked trial known to
the engine as running until it is told, and the report must come out of the cache. The pruner's
trainer is off (torch-free and fast): the event loop under test does not depend on it.
"""

from __future__ import annotations

import itertools
import json

import pytest

from benchmarks import parallel as par
from benchmarks.optimizers.base import run_trials
from benchmarks.optimizers.dyesp import DyESP
from benchmarks.tasks import registry
from benchmarks.tasks.base import Task

NAME = "synthpar/bowl"
SPACE = {"params": [
    {"name": "x", "type": "int", "low": 0, "high": 30},
    {"name": "k", "type": "categorical", "choices": ["p", "q", "r", "s"]},
]}


def _objective(params: dict) -> float:
    return (params["x"] - 17) ** 2 + {"p": 5, "q": 0, "r": 9, "s": 30}[params["k"]]


TASK = Task(name=NAME, space=SPACE, direction="minimize", objective=_objective, optimum=0.0,
            target=1.0, worst=319.0, median=80.0, n_configs=124)


@pytest.fixture(autouse=True)
def no_trainer(monkeypatch):
    monkeypatch.setattr(DyESP, "use_trainer", False)
    monkeypatch.setitem(registry.FACTORIES, NAME, lambda: TASK)


def test_one_worker_is_the_sequential_run():
    trace = par.simulate(DyESP(TASK, 3), TASK, 30, 1, par.durations(3), stop_at_target=False)
    sequential = run_trials(DyESP(TASK, 3), TASK, 30)
    assert [v for _, _, _, v in trace["told"]] == sequential["values"]
    assert [int(i) for i, _, _, _ in trace["told"]] == list(range(30))  # told as asked
    assert trace["peak_running"] == 1
    # Back to back: each trial starts when the one before it finished.
    assert all(nxt[1] == prev[2] for prev, nxt in itertools.pairwise(trace["told"]))


def test_eight_workers_overlap_and_are_told_in_finish_order():
    optimizer = DyESP(TASK, 5)
    trace = par.simulate(optimizer, TASK, 40, 8, par.durations(5), stop_at_target=False)
    told = trace["told"]
    assert trace["n_told"] == trace["n_asked"] == 40 and trace["peak_running"] == 8
    finishes = [f for _, _, f, _ in told]
    assert finishes == sorted(finishes)
    assert [int(i) for i, _, _, _ in told] != list(range(40))  # out of ask order
    # Each trial lasted the duration drawn for its ask index; the first eight started at once.
    drawn = list(itertools.islice(par.durations(5), 40))
    by_index = sorted(told)
    assert all(abs(f - s - drawn[int(i)]) < 1e-9 for i, s, f, _ in by_index)
    assert [s for _, s, _, _ in by_index[:8]] == [0.0] * 8
    # Never more than eight at once: a start at t sees the trials begun before it still running.
    for _, start, _, _ in told:
        busy = sum(1 for _, s, f, _ in told if s <= start < f)
        assert busy <= 8
    # Every later ask came when a result arrived, and the engine held the others as running.
    assert {s for _, s, _, _ in by_index[8:]} <= set(finishes)
    assert len(optimizer.opt.history.running) == 0 and len(optimizer.opt.history.complete) == 40
    keys = [json.dumps(p, sort_keys=True) for p in (t.params for t in optimizer.opt.history.trials)]
    assert len(set(keys)) == len(keys)  # pending-aware: no configuration handed out twice


def test_runs_stop_at_the_target_and_the_report_compares_the_methods(tmp_path):
    pytest.importorskip("optuna")
    methods = ["dyesp-seq", "dyesp-par8", "optuna-tpe-par8", "optuna-tpe-seq"]
    seeds = range(100, 102)
    root = par.cache_root(tmp_path, 0.5)
    for method in methods:
        for seed in seeds:
            par.run_and_store(str(root), NAME, method, seed, 60, 0.5)
            with open(par.run_path(root, NAME, method, seed, 60)) as fh:
                rec = json.load(fh)
            ttt = rec["trials_to_target"]
            if ttt is not None:  # the run ended with the result that reached the target
                assert rec["n_told"] == ttt and TASK.reached(rec["told"][-1][3])
                assert rec["wall_to_target"] == rec["told"][-1][2]
            assert rec["peak_running"] == (8 if method.endswith("par8") else 1)
    md = par.build_report(tmp_path, [NAME], methods, seeds, 60, 0.5, 8)
    data = json.loads((tmp_path / "parallel.json").read_text())
    assert set(data["results"][NAME]) == set(methods)
    assert set(data["ratios"][NAME]) == {"trials_par_vs_seq", "wall_vs_tpe_par",
                                         "speedup_vs_seq"}
    assert "## Wall-clock to target" in md and "| synthpar/bowl |" in md


def test_method_names_carry_the_worker_count():
    assert par.parse_method("dyesp-par8") == ("dyesp", 8)
    assert par.parse_method("optuna-tpe-seq") == ("optuna-tpe", 1)
    with pytest.raises(SystemExit):
        par.parse_method("smac-par8")
