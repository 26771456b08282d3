"""One (task, method, seed) run, cached as JSON under `benchmarks/results/runs_mf/`.

Like `benchmarks/runner.py`: a file per run named by its key (the budget in epochs included), so a
rerun only computes what is missing and several invocations may fill the cache at once; files are
written atomically. A record is small: the ledger's summary (epochs-to-target or censored, trials,
stopped trials and how many of those would have ended in the top 5 %), the wall time and the
library versions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks.runner import versions, write_record

RUNS_DIR = "runs_mf"


def run_path(root: Path, task: str, method: str, seed: int, budget: int) -> Path:
    return (Path(root) / RUNS_DIR / task.replace("/", "__") / method
            / f"seed{seed}_b{budget}.json")


def execute(task_name: str, method: str, seed: int, budget: int | None = None) -> dict[str, Any]:
    """Run one method until the target or the budget; the record. Raises what the method raises."""
    from benchmarks.multifidelity.ledger import Ledger, RunOver
    from benchmarks.multifidelity.methods import METHODS
    from benchmarks.multifidelity.tasks import get_mf_task

    task = get_mf_task(task_name)
    ledger = Ledger(task, budget)
    t0 = time.perf_counter()
    try:
        METHODS[method](task, ledger, seed)
        raise RuntimeError(f"{method} returned before the run was over")
    except RunOver:
        pass
    return {"task": task_name, "method": method, "seed": seed, "direction": task.direction,
            "target": task.target, "top5": task.top5, "fmin": task.fmin, "fmax": task.fmax,
            "wall_s": time.perf_counter() - t0, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "versions": versions(), **ledger.summary()}


def run_and_store(root: str, task_name: str, method: str, seed: int,
                  budget: int) -> tuple[str, dict[str, Any]]:
    """Worker entry point: run, write the cache file; returns (path, record)."""
    record = execute(task_name, method, seed, budget)
    path = run_path(Path(root), task_name, method, seed, budget)
    write_record(path, record)
    return str(path), record


def load_runs(root: Path, task: str, method: str, budget: int, seeds: int,
              first_seed: int = 0) -> list[dict]:
    """The cached runs of seeds first_seed..first_seed+seeds-1 (those present)."""
    runs = []
    for seed in range(first_seed, first_seed + seeds):
        path = run_path(root, task, method, seed, budget)
        if path.exists():
            with open(path) as fh:
                runs.append(json.load(fh))
    return runs
