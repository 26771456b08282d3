"""`python -m benchmarks.coalescing`: does coalescing concurrent asks cost search quality?

The server drafts one engine batch for the asks of a study queued behind the ask that runs the
engine (`service/usecases/coalescing.py`). `benchmarks.parallel` cannot show what that does:
its asks take no time, so they never queue. Here the engine takes time. The simulation is
`benchmarks.parallel`'s (8 asynchronous workers, lognormal trial durations of median 1 drawn in
ask order per seed, results told when they finish), plus one engine that answers asks:

- `serial`: one ask per engine call, each taking `--ask-time` (the server before coalescing);
- `coalesced`: each engine call drafts picks for every ask waiting when it starts (at most
  `MAX_BATCH`), taking `ask_time * (1 + BATCH_EXTRA * (k - 1))` for k picks.

Either way a pick is drafted on the results told before its engine call started, the picks of a
batch (in-process: `Optimizer.ask` k times) are pending for one another, and a result that
arrives while the engine runs is told after the picks it could have changed, as in the server.
A worker's trial starts when its answer comes, so engine queueing shows up in wall-clock.

Per run: trials-to-target (results in arrival order), wall-clock-to-target, and the mean batch
size. Both modes run on the same seeds; the report gives paired geometric means of
coalesced / serial. With `--ask-time 0` both modes are `benchmarks.parallel`'s simulation.

Examples:
    python -m benchmarks.coalescing --first-seed 100 --seeds 20 --jobs 2
    python -m benchmarks.coalescing --tasks lcbench/189906 --seeds 2 --ask-time 0.2
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import scores
from benchmarks import space as sp
from benchmarks.optimizers.base import Optimizer
from benchmarks.parallel import DEFAULT_OUT, SIGMA, WORKERS, durations, tell_finished
from benchmarks.runner import (
    add_cache_options,
    finish,
    read_records,
    run_path,
    run_pool,
    tasks_or_exit,
    versions,
    write_record,
)
from service.usecases.coalescing import MAX_BATCH

MODES = ("serial", "coalesced")
# A batch of k picks costs 1 + BATCH_EXTRA * (k - 1) single asks: 8 picks took about 3.6x one
# pick at 300 trials on the load benchmark's space (service/usecases/coalescing.py).
BATCH_EXTRA = 0.37
BOOTSTRAP = 4000  # resamples of the pairs for the pooled ratios' 95 % intervals


def simulate(optimizer: Optimizer, task: Any, budget: int, workers: int,
             times: Iterator[float], ask_time: float, coalesce: bool,
             stop_at_target: bool = True) -> dict[str, Any]:
    """Drive `optimizer` with `workers` asynchronous workers and an engine that takes time.

    Events in time order (ties: in the order they were scheduled): a trial finishing (its result
    is told, its worker waits for an answer, an idle engine starts) and an engine call ending
    (its picks start on the workers that were answered, the engine starts again if any worker
    waits). At most `budget` asks in all.
    """
    params_list = sp.parse(task.space)
    order, numbers = itertools.count(), itertools.count()
    events: list[tuple[float, int, str, Any]] = []
    open_trials: dict[int, tuple[Any, float]] = {}
    told: list[list[float]] = []
    batches: list[int] = []
    state = {"waiting": workers, "asked": 0, "busy": False}
    best, ttt, wall, now = None, None, None, 0.0

    def start_engine(at: float) -> None:
        k = min(state["waiting"], budget - state["asked"], MAX_BATCH if coalesce else 1)
        if k <= 0:
            state["busy"] = False
            return
        picks = [optimizer.ask() for _ in range(k)]  # on the results told up to `at`
        state["asked"] += k
        state["waiting"] -= k
        state["busy"] = True
        batches.append(k)
        done = at + ask_time * (1 + BATCH_EXTRA * (k - 1))
        heapq.heappush(events, (done, next(order), "answer", picks))

    start_engine(0.0)
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "answer":
            for raw in payload:
                index = next(numbers)
                open_trials[index] = (raw, now)
                heapq.heappush(events, (now + next(times), next(order), "finish", index))
            start_engine(now)
            continue
        best = tell_finished(optimizer, task, params_list, open_trials, payload, now, told,
                             best)
        if ttt is None and task.reached(best):
            ttt, wall = len(told), now
            if stop_at_target:
                break
        state["waiting"] += 1
        if not state["busy"]:
            start_engine(now)
    return {"trials_to_target": ttt, "wall_to_target": wall, "wall_end": now,
            "n_told": len(told), "n_asked": state["asked"], "batches": batches,
            "mean_batch": float(np.mean(batches)) if batches else 0.0, "told": told}


def method_name(mode: str, ask_time: float) -> str:
    return f"dyesp-{mode}-ask{ask_time:g}"


def execute(task_name: str, mode: str, seed: int, budget: int, ask_time: float,
            workers: int, sigma: float) -> dict[str, Any]:
    from benchmarks.optimizers import get_factory
    from benchmarks.tasks import get_task

    task = get_task(task_name)
    t0 = time.perf_counter()
    optimizer = get_factory("dyesp")(task, seed)
    trace = simulate(optimizer, task, budget, workers, durations(seed, sigma), ask_time,
                     coalesce=mode == "coalesced")
    return {"task": task_name, "mode": mode, "ask_time": ask_time, "workers": workers,
            "sigma": sigma, "seed": seed, "budget": budget, "target": task.target,
            "wall_s": time.perf_counter() - t0, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "versions": versions(), **trace}


def run_and_store(root: str, task_name: str, mode: str, seed: int, budget: int,
                  ask_time: float, workers: int, sigma: float) -> tuple[str, float]:
    record = execute(task_name, mode, seed, budget, ask_time, workers, sigma)
    path = run_path(Path(root), task_name, method_name(mode, ask_time), seed, budget)
    write_record(path, record)
    return str(path), record["wall_s"]


def cache_root(out: Path, workers: int, sigma: float) -> Path:
    return Path(out) / f"coalescing_w{workers}_sigma{sigma:g}"


def _geo(xs: list[float]) -> float | None:
    return math.exp(float(np.mean(np.log(xs)))) if xs else None


def summarise(root: Path, tasks: list[str], seeds: range, budget: int,
              ask_time: float) -> dict[str, Any]:
    """Per task and mode: medians; per task and pooled: paired coalesced / serial ratios (a run
    that missed the target counts as budget + 1 trials and its last result's time)."""
    per_task: dict[str, Any] = {}
    pooled: dict[str, list[float]] = {"trials": [], "wall": []}
    for t in tasks:
        runs = {m: {r["seed"]: r for r in read_records(
            run_path(root, t, method_name(m, ask_time), s, budget) for s in seeds)}
            for m in MODES}
        row: dict[str, Any] = {}
        for m in MODES:
            recs = list(runs[m].values())
            if not recs:
                continue
            ttt = scores.censored([r["trials_to_target"] for r in recs], budget)
            wall = [r["wall_to_target"] if r["wall_to_target"] is not None else r["wall_end"]
                    for r in recs]
            row[m] = {"n": len(recs), "ttt_median": float(np.median(ttt)),
                      "wall_median": float(np.median(wall)),
                      "reached": sum(r["trials_to_target"] is not None for r in recs),
                      "mean_batch": float(np.mean([r["mean_batch"] for r in recs]))}
        common = sorted(set(runs["serial"]) & set(runs["coalesced"]))
        ratios: dict[str, list[float]] = {"trials": [], "wall": []}
        for s in common:
            a, b = runs["coalesced"][s], runs["serial"][s]
            ta, tb = (x["trials_to_target"] or budget + 1 for x in (a, b))
            wa, wb = (x["wall_to_target"] or x["wall_end"] for x in (a, b))
            ratios["trials"].append(ta / tb)
            ratios["wall"].append(wa / wb)
        for key in ratios:
            pooled[key] += ratios[key]
        row["paired"] = {k: _geo(v) for k, v in ratios.items()}
        row["pairs"] = len(common)
        per_task[t] = row
    rng = np.random.default_rng(0)
    summary_pooled: dict[str, float | None] = {}
    for key, xs in pooled.items():
        summary_pooled[key] = _geo(xs)
        low = high = None
        if xs:
            logs = np.log(xs)
            boots = np.exp(rng.choice(logs, (BOOTSTRAP, len(logs))).mean(axis=1))
            low, high = (float(q) for q in np.percentile(boots, [2.5, 97.5]))
        summary_pooled[f"{key}_low"], summary_pooled[f"{key}_high"] = low, high
    return {"tasks": per_task, "pooled": summary_pooled, "pairs": len(pooled["trials"])}


def markdown(summaries: dict[float, dict[str, Any]], workers: int, sigma: float, seeds: range,
             budget: int, command: str) -> str:
    def cell(row: dict, mode: str, key: str, digits: int) -> str:
        return f"{row[mode][key]:.{digits}f}" if mode in row else ""

    def ratio(x: float | None) -> str:
        return "" if x is None else f"{x:.2f}"

    lines = [
        "# Coalesced asks and search quality", "",
        f"Command: `{command}`. {workers} asynchronous workers, trial durations lognormal "
        f"(median 1, sigma {sigma:g}); an engine taking the *engine time* per single ask (in "
        f"median trials) and 1 + {BATCH_EXTRA} x (k - 1) times that for a batch of k; seeds "
        f"{seeds.start}..{seeds.stop - 1}, budget {budget} trials. `serial`: one ask per engine "
        "call (the server without coalescing); `coalesced`: one call drafts for every ask "
        f"waiting when it starts (at most {MAX_BATCH}). Ratios are geometric means of the "
        "per-seed ratios coalesced / serial, with a 95 % bootstrap interval over the pairs.", ""]
    for ask_time, summary in summaries.items():
        pooled = summary["pooled"]
        lines += [
            f"## Engine time {ask_time:g} ({ask_time * 100:g} % of a median trial)", "",
            f"Pooled over {summary['pairs']} pairs: trials-to-target {ratio(pooled['trials'])} "
            f"[{ratio(pooled['trials_low'])}-{ratio(pooled['trials_high'])}], "
            f"wall-clock-to-target {ratio(pooled['wall'])} "
            f"[{ratio(pooled['wall_low'])}-{ratio(pooled['wall_high'])}].", "",
            "| task | serial trials | coalesced trials | serial wall | coalesced wall | "
            "mean batch (coalesced) | trials ratio (paired) | wall ratio (paired) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for t, row in summary["tasks"].items():
            lines.append(f"| {t} | {cell(row, 'serial', 'ttt_median', 0)} | "
                         f"{cell(row, 'coalesced', 'ttt_median', 0)} | "
                         f"{cell(row, 'serial', 'wall_median', 1)} | "
                         f"{cell(row, 'coalesced', 'wall_median', 1)} | "
                         f"{cell(row, 'coalesced', 'mean_batch', 2)} | "
                         f"{ratio(row['paired']['trials'])} | {ratio(row['paired']['wall'])} |")
        lines.append("")
    lines += ["Medians over seeds; a run that missed the target counts as budget + 1 trials and "
              "the time of its last result."]
    return "\n".join(lines) + "\n"


def build_report(out: Path, tasks: list[str], seeds: range, budget: int,
                 ask_times: list[float], workers: int, sigma: float, command: str) -> str:
    """coalescing.md and coalescing.json under ``out``, from the cached runs."""
    root = cache_root(out, workers, sigma)
    summaries = {a: summarise(root, tasks, seeds, budget, a) for a in ask_times}
    md = markdown(summaries, workers, sigma, seeds, budget, command)
    out.mkdir(parents=True, exist_ok=True)
    (out / "coalescing.md").write_text(md)
    with open(out / "coalescing.json", "w") as fh:
        json.dump({"workers": workers, "sigma": sigma, "budget": budget,
                   "seeds": [seeds.start, seeds.stop], "batch_extra": BATCH_EXTRA,
                   "ask_times": {f"{a:g}": s for a, s in summaries.items()}}, fh,
                  separators=(",", ":"))
    return md


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.coalescing", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", help="comma list of task names or globs (default: dev suite)")
    ap.add_argument("--ask-time", default="0.05,0.2",
                    help="comma list of simulated engine times of one ask, in median trials "
                         "(default 0.05,0.2)")
    ap.add_argument("--workers", type=int, default=WORKERS)
    ap.add_argument("--sigma", type=float, default=SIGMA)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=100)
    add_cache_options(ap, DEFAULT_OUT, jobs=2)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tasks = tasks_or_exit(args.tasks)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    ask_times = [float(a) for a in args.ask_time.split(",") if a.strip()]
    root = cache_root(args.out, args.workers, args.sigma)
    failures: list[str] = []
    if not args.report_only:
        todo = [(run_and_store, (str(root), t, m, s, args.budget, a, args.workers, args.sigma),
                 f"{t} {m} engine time {a:g} seed {s}")
                for a in ask_times for s in seeds for t in tasks for m in MODES
                if args.force or not run_path(root, t, method_name(m, a), s,
                                              args.budget).exists()]
        if todo:
            print(f"{len(todo)} runs to compute with {args.jobs} worker(s)", flush=True)
        failures = run_pool(todo, args.jobs, time.time())
    command = (f"python -m benchmarks.coalescing --first-seed {args.first_seed} "
               f"--seeds {args.seeds} --ask-time {args.ask_time}")
    md = build_report(args.out, tasks, seeds, args.budget, ask_times, args.workers,
                      args.sigma, command)
    return finish(md, failures)


if __name__ == "__main__":
    raise SystemExit(main())
