"""`python -m benchmarks.compare BASE CANDIDATE`: does an engine change help, pooled?

Pairs the cached runs of two result folders (each filled by `benchmarks.quality --out DIR`, e.g.
the engine before and after a change, on fresh seeds: `--first-seed 100 --seeds 20`) by task and
seed, and prints per task and pooled over all pairs the ratio of trials-to-target, candidate over
base (failures count as budget + 1): its geometric mean and median, and on how many pairs the
candidate was faster or slower. The team's rule reads off the pooled row: accept an engine change
only when it helps pooled over many fresh seeds and tasks, and hurts no task beyond noise.

Example:
    python -m benchmarks.compare /tmp/base /tmp/with --tasks 'nb201/*,hpobench/car'
    python -m benchmarks.compare /tmp/fresh /tmp/fresh --method dyesp --candidate-method flaml-cfo
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from benchmarks import scores
from benchmarks.runner import load_runs
from benchmarks.tasks import get_task, task_names


def paired_ttt(base: Path, candidate: Path, task: str, method: str, candidate_method: str,
               budget: int) -> list[tuple[int, float, float]]:
    """(seed, base trials-to-target, candidate trials-to-target) for the seeds both folders
    hold, failures at budget + 1."""
    reached = get_task(task).reached

    def by_seed(root: Path, m: str) -> dict[int, float]:
        return {r["seed"]: float(scores.censored(
            [scores.trials_to_target(r["best"], reached)], budget)[0])
            for r in load_runs(root, [task], [m], budget)}

    a, b = by_seed(base, method), by_seed(candidate, candidate_method)
    return [(s, a[s], b[s]) for s in sorted(set(a) & set(b))]


def summary_row(name: str, pairs: list[tuple[int, float, float]]) -> str:
    ratios = np.array([c / b for _, b, c in pairs])
    base = np.median([b for _, b, _ in pairs])
    cand = np.median([c for _, _, c in pairs])
    better = int(np.sum(ratios < 1))
    worse = int(np.sum(ratios > 1))
    gm = math.exp(float(np.mean(np.log(ratios))))
    return (f"| {name} | {len(pairs)} | {base:.1f} | {cand:.1f} | {gm:.3f} | "
            f"{float(np.median(ratios)):.3f} | {better} / {worse} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path, help="results folder of the baseline")
    ap.add_argument("candidate", type=Path, help="results folder of the candidate")
    ap.add_argument("--tasks", help="comma list of task names or globs (default: dev suite)")
    ap.add_argument("--method", default="dyesp", help="method in the base folder (default dyesp)")
    ap.add_argument("--candidate-method", help="method in the candidate folder (default: same)")
    ap.add_argument("--budget", type=int, default=200)
    args = ap.parse_args(argv)
    candidate_method = args.candidate_method or args.method
    lines = ["| task | pairs | base median | candidate median | geo-mean ratio | median ratio "
             "| faster / slower |", "| --- | --- | --- | --- | --- | --- | --- |"]
    pooled: list[tuple[int, float, float]] = []
    for task in task_names(args.tasks):
        pairs = paired_ttt(args.base, args.candidate, task, args.method, candidate_method,
                           args.budget)
        if pairs:
            lines.append(summary_row(task, pairs))
            pooled += pairs
    if not pooled:
        print("no paired runs (same task and seed in both folders)", file=sys.stderr)
        return 1
    lines.append(summary_row("**pooled**", pooled))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
