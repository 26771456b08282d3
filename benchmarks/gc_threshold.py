"""The cyclic collector's young threshold in a server process (`python -m benchmarks.gc_threshold`).

Times `engine.propose` as a one-client study sees it (a new result before every ask, the
``HistoryLedger`` view the service hands the engine) on a history of N finished trials of the
HAS-like space, with the collector set up as a server process sets it at startup
(``app.tune_collector``: ``gc.freeze``, then the young threshold under test), before the study's
history is built, as a server loads a study after it started. Each threshold runs in a fresh
process per round, each round starting one threshold later, and a ``gc.callbacks`` hook counts
the collector's passes and their time, so the table says where the asks' time went. One BLAS
thread.
Writes benchmarks/results/gc_threshold.md and .json.

The server-level check is the load benchmark with the setting changed for its server processes
(``DYESP_GC_YOUNG_THRESHOLD=700 python -m benchmarks.load ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.load import percentile  # nearest rank, as the load table reports

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import gc, json, os, sys, time
os.environ["OPENBLAS_NUM_THREADS"] = "1"
import numpy as np
from benchmarks.retraining import HAS_SPACE, history_of, synthetic_loss
from service.app import tune_collector
from service.engine.history import Observation, TrialState
from service.engine.history_ledger import HistoryLedger
from service.engine.propose import propose
from service.engine.space import SearchSpace

n, asks, threshold = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
tune_collector(threshold)  # at startup, as the server: the study's history arrives later
space = SearchSpace.from_dict(HAS_SPACE)
ledger = HistoryLedger("minimize")
for trial in history_of(space, n).trials:
    ledger.put(trial)
passes = {0: 0, 1: 0, 2: 0}
paused = [0.0]
started = [0.0]

def watch(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        passes[info["generation"]] += 1
        paused[0] += time.perf_counter() - started[0]

number, times = n, []
for i in range(asks + 5):
    if i == 5:  # after a warm-up, as a server that has served the study before
        gc.callbacks.append(watch)
    history = ledger.history()
    start = time.perf_counter()
    decision = propose(space, history, 1, seed=i)
    if i >= 5:
        times.append(time.perf_counter() - start)
    params = dict(decision.proposals[0].params)
    ledger.put(Observation(number, params, TrialState.COMPLETE, synthetic_loss(params)))
    number += 1
gc.callbacks.remove(watch)
print(json.dumps({"times_ms": [1000 * t for t in times], "passes": passes,
                  "gc_ms": 1000 * paused[0]}))
"""


def measure(n: int, asks: int, threshold: int) -> dict:
    """One fresh process: the asks' times and what the collector did meanwhile."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(n), str(asks), str(threshold)],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10_000, help="finished trials in the history")
    parser.add_argument("--asks", type=int, default=300, help="measured asks per process")
    parser.add_argument("--thresholds", default="700,10000,50000",
                        help="young thresholds to compare (700: CPython's default)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds (each starts one threshold later)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    thresholds = [int(t) for t in args.thresholds.split(",")]
    runs: dict[int, list[dict]] = {t: [] for t in thresholds}
    for r in range(args.rounds):
        # Each round starts one threshold later: a process's place in a round moved its times
        # by up to 10 % on this machine, so every threshold takes every place in turn.
        for t in thresholds[r % len(thresholds):] + thresholds[:r % len(thresholds)]:
            runs[t].append(measure(args.trials, args.asks, t))
            print(f"round {r + 1}/{args.rounds}: threshold {t:,} done", flush=True)
    rows = []
    for t in thresholds:
        p50 = [statistics.median(run["times_ms"]) for run in runs[t]]
        p99 = [percentile([ms / 1000 for ms in run["times_ms"]], 0.99) for run in runs[t]]
        rows.append({
            "threshold": t, "ask_p50_ms": statistics.median(p50),
            "ask_p99_ms": statistics.median(p99),
            "ask_max_ms": statistics.median(max(run["times_ms"]) for run in runs[t]),
            "gc_ms_per_ask": statistics.median(run["gc_ms"] / args.asks for run in runs[t]),
            "passes_per_100_asks": {g: statistics.median(100 * run["passes"][g] / args.asks
                                                         for run in runs[t])
                                    for g in ("0", "1", "2")},
            "rounds": [{"p50": a, "p99": b} for a, b in zip(p50, p99, strict=True)],
        })
    base = rows[0]
    lines = ["# The cyclic collector's young threshold", "",
             f"`engine.propose` for one configuration, a new result before every ask, on a history "
             f"of {args.trials:,} finished trials (the HAS-like space of `benchmarks.retraining`), "
             f"the collector set up as a server process sets it at startup (`app.tune_collector`: "
             f"`gc.freeze`, then the threshold), before the history is built; {args.asks} asks per "
             f"process after 5 warm-up asks, median over {args.rounds} rounds in fresh processes "
             f"(each round starts one threshold later), one BLAS thread. "
             f"Command: `python -m benchmarks.gc_threshold "
             f"--trials {args.trials} --asks {args.asks} --thresholds {args.thresholds} "
             f"--rounds {args.rounds}`.", "",
             "| young threshold | ask p50 (ms) | ask p99 (ms) | ask max (ms) "
             "| collector ms per ask | passes per 100 asks (gen 0 / 1 / 2) "
             "| p50 / first row | p99 / first row |",
             "|---:|---:|---:|---:|---:|---|---:|---:|"]
    for row in rows:
        passes = row["passes_per_100_asks"]
        lines.append(
            f"| {row['threshold']:,} | {row['ask_p50_ms']:.1f} | {row['ask_p99_ms']:.1f} | "
            f"{row['ask_max_ms']:.1f} | {row['gc_ms_per_ask']:.2f} | "
            f"{passes['0']:.0f} / {passes['1']:.0f} / {passes['2']:.1f} | "
            f"{row['ask_p50_ms'] / base['ask_p50_ms']:.2f}x | "
            f"{row['ask_p99_ms'] / base['ask_p99_ms']:.2f}x |")
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gc_threshold.md").write_text(table)
    (args.out / "gc_threshold.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
