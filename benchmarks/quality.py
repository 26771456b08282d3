"""`python -m benchmarks.quality`: fill the run cache, then write the quality report.

Every (task, method, seed) is one sequential run of `--budget` trials on the same deterministic
objective; the engine runs in-process like the peers. Missing runs are computed in a process pool
(`--jobs`, default 2), each worker single-threaded (BLAS/OpenMP/onnxruntime pinned to 1 thread) so
timings are comparable and the shared cores are not oversubscribed. Then ALL cached runs of the
requested tasks and methods at this budget are aggregated (see `report.py`) into quality.md,
quality.json and plots/ under `--out`, and the table is printed.

Examples:
    python -m benchmarks.quality                                  # everything, 10 seeds
    python -m benchmarks.quality --methods 'random,optuna-tpe' --tasks 'hpobench/*'
    python -m benchmarks.quality --report-only                    # re-aggregate the cache
    python -m benchmarks.quality --methods dyesp --first-seed 100 --seeds 20 --out /tmp/fresh
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.optimizers import ENGINE, METHODS, PEERS  # noqa: E402
from benchmarks.runner import (  # noqa: E402
    add_cache_options,
    finish,
    import_runs,
    run_and_store,
    run_path,
    run_pool,
    select_methods,
    tasks_or_exit,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
# Cheap methods first, so a partial cache is useful early; SMAC (~0.5 s per ask) last.
COST_ORDER = {"random": 0, "regularized-evolution": 0, "local-search": 0, "optuna-tpe": 1,
              "flaml-cfo": 1, "flaml-blendsearch": 1, "optuna-gp": 3,
              "hyperopt-tpe": 2, "smac-hpo": 9}


def method_names(spec: str | None) -> list[str]:
    if not spec or spec == "all":
        return [*PEERS, *ENGINE]
    if spec == "peers":
        return list(PEERS)
    return select_methods(spec, sorted(METHODS))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", help="comma list of task names or globs (default: dev suite)")
    ap.add_argument("--methods", help="comma list, 'peers' or 'all' (default: all)")
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="start the seeds here: fresh seeds (e.g. 100) measure an engine change "
                         "on runs it was not tuned on; use a separate --out, as the report "
                         "aggregates every cached seed")
    ap.add_argument("--budget", type=int, default=200, help="trials per run (default 200)")
    add_cache_options(ap, DEFAULT_OUT)
    ap.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    ap.add_argument("--import-runs", type=Path, metavar="QUALITY_JSON",
                    help="first cache the selected methods' runs that this earlier report holds "
                         "and the cache lacks (for SMAC, too slow to rerun here; see "
                         "runner.import_runs)")
    return ap.parse_args(argv)


def fill_cache(tasks: list[str], methods: list[str], seeds: range, budget: int, jobs: int,
               out: Path, force: bool) -> list[str]:
    """Compute the missing runs; returns one line per failed run (they are not cached)."""
    todo = [(t, m, s) for m in methods for t in tasks for s in seeds
            if force or not run_path(out, t, m, s, budget).exists()]
    todo.sort(key=lambda x: (COST_ORDER.get(x[1], 5), x[1], x[0], x[2]))
    if not todo:
        return []
    print(f"{len(todo)} runs to compute with {jobs} worker(s)", flush=True)
    return run_pool([(run_and_store, (str(out), t, m, s, budget), f"{t} {m} seed {s}")
                     for t, m, s in todo], jobs, time.time())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tasks = tasks_or_exit(args.tasks)
    methods = method_names(args.methods)
    failures: list[str] = []
    if args.import_runs:
        imported = import_runs(args.out, args.import_runs, tasks, methods, args.budget)
        print(f"{len(imported)} run(s) imported from {args.import_runs}", flush=True)
    if not args.report_only:
        failures = fill_cache(tasks, methods,
                              range(args.first_seed, args.first_seed + args.seeds), args.budget,
                              args.jobs, args.out,
                              args.force)
    from benchmarks.report import build_report

    table = build_report(args.out, tasks, methods, args.budget, plots=not args.no_plots,
                         failures=failures)
    return finish(table, failures)


if __name__ == "__main__":
    sys.exit(main())
