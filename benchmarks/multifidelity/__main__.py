"""`python -m benchmarks.multifidelity`: fill the run cache, then print and write the table.

Every (task, method, seed) is one sequential run charged in epochs (`ledger.py`) until a trial
trained to the maximum fidelity reaches the target or the budget (100 full trainings) is spent.
Missing runs are computed in a spawn process pool (`--jobs`, default 2), each worker single-
threaded (BLAS/OpenMP/onnxruntime pinned to 1 thread), like the quality benchmark. Then all cached
runs of the requested tasks, methods and seeds are aggregated (`report.py`) into
`multifidelity.md` / `multifidelity.json` under `--out`; the per-run cache is `--out/runs_mf/`.

Examples:
    python -m benchmarks.multifidelity                           # dev suite, all methods, 10 seeds
    python -m benchmarks.multifidelity --tasks heldout --seeds 5
    python -m benchmarks.multifidelity --methods dyesp-es --first-seed 100 --out /tmp/mf  # fresh
    python -m benchmarks.multifidelity --tasks lcbench/3945,nb201/cifar100 --methods dyesp-es,tpe
    python -m benchmarks.multifidelity --report-only              # re-aggregate the cache
    python -m benchmarks.multifidelity --setup-dehb               # create .venv-dehb for `dehb`
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import Future, ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.multifidelity import mf_dehb  # noqa: E402
from benchmarks.multifidelity.methods import METHODS  # noqa: E402
from benchmarks.multifidelity.run import run_and_store, run_path  # noqa: E402
from benchmarks.multifidelity.tasks import (  # noqa: E402
    BUDGET_FULL_TRAININGS,
    get_mf_task,
    mf_task_names,
)
from benchmarks.runner import collect, finish, select_methods  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results"
# Cheap methods first, so a partial cache is useful early.
COST_ORDER = {"random-full": 0, "tpe": 1, "tpe-median": 1, "tpe-hyperband": 1,
              "random-hyperband": 1, "dyesp-es": 2, "dyesp-es-5": 2, "dyesp-full": 3, "dehb": 3,
              "smac-hyperband": 4}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.multifidelity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", help="comma list: task names (lcbench/<OpenML id>, "
                                    "nb201/<dataset>), 'dev' (default) or 'heldout'")
    ap.add_argument("--methods", help=f"comma list or 'all' (default): {', '.join(METHODS)}")
    ap.add_argument("--seeds", type=int, default=10,
                    help="how many seeds, from --first-seed (default 10)")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="the first seed (default 0: the published table's); fresh seeds check "
                         "a change on runs nothing was tuned on")
    ap.add_argument("--budget-trainings", type=int, default=BUDGET_FULL_TRAININGS,
                    help="a run's budget in full trainings' worth of epochs (default "
                         f"{BUDGET_FULL_TRAININGS}); the cache key holds the budget in epochs")
    ap.add_argument("--jobs", type=int, default=2,
                    help="worker processes (default 2; 1 runs in this process)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    ap.add_argument("--force", action="store_true", help="recompute cached runs")
    ap.add_argument("--report-only", action="store_true", help="only aggregate the cache")
    ap.add_argument("--note", action="append", default=[],
                    help="a line for the report's notes (repeatable): how the cache was filled")
    ap.add_argument("--setup-dehb", action="store_true",
                    help="create .venv-dehb from benchmarks/REQUIREMENTS-dehb.txt and exit")
    return ap.parse_args(argv)


def fill_cache(todo: list[tuple[str, str, int, int]], jobs: int, out: Path) -> list[str]:
    """Compute the runs in `todo`; returns one line per failed run (those are not cached)."""
    failures: list[str] = []
    if not todo:
        return failures
    print(f"{len(todo)} runs to compute with {jobs} worker(s)", flush=True)
    t_start = time.time()
    if jobs <= 1:  # in this process (the tests; debugging)
        futures: dict = {}
        for t, m, s, b in todo:
            fut: Future = Future()
            try:
                fut.set_result(run_and_store(str(out), t, m, s, b))
            except Exception as exc:
                fut.set_exception(exc)
            futures[fut] = f"{t} {m} seed {s}"
        collect(futures, t_start, failures, _describe)
        return failures
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked thread pools
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(run_and_store, str(out), t, m, s, b): f"{t} {m} seed {s}"
                   for t, m, s, b in todo}
        collect(futures, t_start, failures, _describe)
    return failures


def _describe(result: tuple[str, dict]) -> str:
    rec = result[1]
    reached = (f"{rec['epochs_to_target']} epochs" if rec["reached"]
               else f"> {rec['budget']} (censored)")
    return f"{reached}, {rec['wall_s']:.1f}s"


def dehb_versions() -> str | None:
    if not mf_dehb.available():
        return None
    code = ("import importlib.metadata as m;"
            "print(', '.join(f'{p} {m.version(p)}' for p in ('dehb','numpy','ConfigSpace')))")
    try:
        done = subprocess.run([str(mf_dehb.python()), "-c", code], capture_output=True,
                              text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup_dehb:
        print(f"DEHB environment ready: {mf_dehb.setup_venv()}")
        return 0
    tasks = mf_task_names(args.tasks)
    methods = select_methods(args.methods, list(METHODS))
    try:
        budgets = {t: args.budget_trainings * get_mf_task(t).fmax for t in tasks}
    except (KeyError, ValueError) as exc:
        raise SystemExit(str(exc)) from None
    notes: list[str] = list(args.note)
    if "dehb" in methods and not mf_dehb.available():
        notes.append(f"dehb left out: no interpreter at {mf_dehb.python()} (run "
                     "`python -m benchmarks.multifidelity --setup-dehb`)")
        methods.remove("dehb")
    failures: list[str] = []
    if not args.report_only:
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        todo = [(t, m, s, budgets[t]) for m in methods for t in tasks for s in seeds
                if args.force or not run_path(args.out, t, m, s, budgets[t]).exists()]
        todo.sort(key=lambda x: (x[2], COST_ORDER.get(x[1], 5), x[0], x[1]))
        failures = fill_cache(todo, args.jobs, args.out)
    from benchmarks.multifidelity.report import build, write

    command = "python -m benchmarks.multifidelity " + shlex.join(argv if argv is not None
                                                                 else sys.argv[1:])
    table, result = build(args.out, tasks, methods, budgets, args.seeds, command.strip(),
                          failures, notes, dehb_versions=dehb_versions(),
                          first_seed=args.first_seed)
    write(args.out, result)
    return finish(table, failures)


if __name__ == "__main__":
    sys.exit(main())
