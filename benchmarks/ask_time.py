"""The engine's own time per ask as the history grows (`python -m benchmarks.ask_time`).

Times `engine.propose` for one configuration on a HAS-like space with histories of 100, 1,000
and 10,000 finished trials (plus a few running ones), in one run so the sizes compare as ratios:
the same History asked again (without and with a trained pruner, and with one whose forecasts on
the newest trials earned it trust, so the surrogate ranks with it), and a new result before every
ask, as a one-client study sees it (a new History per revision, from the ``HistoryLedger`` where
the checkout has one), also with 5 % of the trials stopped at a rung. Single-threaded BLAS, as
the service runs it.
``--baseline DIR`` also times another checkout of the engine (e.g. a worktree of the commit
before a change) in the same run: each round measures both, alternating, in fresh processes, and
the table gains the ratio this / baseline.
Writes benchmarks/results/ask_time.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")


RESULTS = Path(__file__).parent / "results"

# The measurement, as a script run against a checkout's own engine in a fresh process (this one,
# and the ``--baseline``, which may predate this file: it only uses what every version has).
CHILD = """
import dataclasses, json, os, statistics, sys, time
os.environ["OPENBLAS_NUM_THREADS"] = "1"
import numpy as np
from benchmarks.retraining import HAS_SPACE, history_of
from service.engine.encoding import Encoder
from service.engine.history import History, Observation, ProposalInfo, TrialState
from service.engine.propose import propose
from service.engine.pruner import featurize, make_training_set
from service.engine.space import SearchSpace
from service.training import train_pruner
try:  # the service's per-study view (newer checkouts); without it, a History per revision
    from service.engine.history_ledger import HistoryLedger
except ImportError:
    HistoryLedger = None

def revisions(trials, extra):
    # One new result per ask, as a one-client study sees it: a new History every time.
    if HistoryLedger is not None:
        ledger = HistoryLedger("minimize")
        for t in trials:
            ledger.put(t)
        for t in extra:
            ledger.put(t)
            yield ledger.history()
    else:
        trials = list(trials)
        for t in extra:
            trials.append(t)
            yield History("minimize", tuple(trials))

def stopped_at_rungs(trials, rng):
    # Every trial reported at rungs 1, 3 and 9; 5 % were stopped at rung 1 or 3.
    out = []
    for t in trials:
        curve = ((1, t.value * 1.3), (3, t.value * 1.1), (9, t.value * 1.02))
        if rng.random() < 0.05:
            cut = curve[: 1 + int(rng.integers(2))]
            out.append(dataclasses.replace(t, state=TrialState.STOPPED, value=cut[-1][1],
                                           curve=cut))
        else:
            out.append(dataclasses.replace(t, curve=curve))
    return out

space, rows = SearchSpace.from_dict(HAS_SPACE), []
repeats = int(sys.argv[2])
for n in [int(s) for s in sys.argv[1].split(",")]:
    done = history_of(space, n)
    running = tuple(Observation(n + i, space.sample(np.random.default_rng(i)),
                                TrialState.RUNNING) for i in range(4))
    history = History("minimize", done.trials + running)
    model = train_pruner(make_training_set(Encoder(space), done, ()), device="cpu")
    # The pruner trusted: the newest 200 trials carry its own forecasts, as trials proposed
    # while it had a say do (by the four strategies in turn), so the scheduler plans the
    # surrogate and it ranks its pool with the pruner: the slow asks' path.
    forecasts, _ = model.predict(featurize(Encoder(space), [t.params for t in done.trials[-200:]],
                                           None, ()))
    kinds = ("surrogate", "local", "parzen", "random")
    trusted = History("minimize", done.trials[:-200] + tuple(
        dataclasses.replace(t, proposal=ProposalInfo(kinds[i % 4], 0.3, float(f)))
        for i, (t, f) in enumerate(zip(done.trials[-200:], forecasts))) + running)
    extra = [dataclasses.replace(done.trials[i % n], number=n + 4 + i)
             for i in range(repeats + 1)]
    cases = [("no pruner", None, [history] * (repeats + 1)),
             ("with pruner", model, [history] * (repeats + 1)),
             ("trusted pruner", model, [trusted] * (repeats + 1)),
             ("new result per ask", None, list(revisions(done.trials + running, extra))),
             ("5 % stopped, new result per ask", None, list(revisions(
                 stopped_at_rungs(done.trials, np.random.default_rng(n)) + list(running),
                 stopped_at_rungs(extra, np.random.default_rng(0)))))]
    for label, pruner, histories in cases:
        propose(space, histories[0], 1, seed=0, pruner=pruner)
        samples = []
        for i in range(repeats):
            start = time.perf_counter()
            propose(space, histories[i + 1], 1, seed=i, pruner=pruner)
            samples.append(time.perf_counter() - start)
        rows.append({"trials": n, "mode": label, "median_ms": 1000 * statistics.median(samples),
                     "max_ms": 1000 * max(samples)})
print(json.dumps(rows))
"""


def measure_in(code: Path, sizes: str, repeats: int) -> list[dict]:
    """The rows of ``CHILD`` run against the engine of checkout ``code``."""
    done = subprocess.run([sys.executable, "-c", CHILD, sizes, str(repeats)], cwd=code,
                          env={**os.environ, "PYTHONPATH": str(code)}, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(baseline: Path, sizes: str, repeats: int, rounds: int, out: Path) -> None:
    """This checkout against ``baseline``, alternating per round; medians over rounds."""
    here = Path(__file__).resolve().parents[1]
    runs: dict[str, list[list[dict]]] = {"baseline": [], "this": []}
    for r in range(rounds):
        for name, code in (("baseline", baseline), ("this", here)):
            runs[name].append(measure_in(code, sizes, repeats))
            print(f"round {r + 1}/{rounds}: {name} done", flush=True)
    rows = []
    for i, row in enumerate(runs["this"][0]):
        base = statistics.median(run[i]["median_ms"] for run in runs["baseline"])
        this = statistics.median(run[i]["median_ms"] for run in runs["this"])
        rows.append({"trials": row["trials"], "mode": row["mode"], "baseline_ms": base,
                     "this_ms": this, "ratio": this / base})
    def commit(code: Path) -> str:
        return subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip() or "?"

    lines = ["# Engine time per ask: this checkout against a baseline", "",
             f"Baseline: `{commit(baseline)}`; this: `{commit(here)}` (plus any uncommitted "
             "changes). "
             f"`engine.propose` for one configuration, {repeats} asks per row and checkout, "
             f"median of {rounds} alternating rounds (fresh processes), one BLAS thread. "
             f"Command: `python -m benchmarks.ask_time --baseline <checkout> --rounds {rounds}`.",
             "", "| trials | mode | baseline p50 (ms) | this p50 (ms) | this / baseline |",
             "|---:|---|---:|---:|---:|"]
    lines += [f"| {r['trials']:,} | {r['mode']} | {r['baseline_ms']:.1f} | {r['this_ms']:.1f} | "
              f"{r['ratio']:.2f}x |" for r in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ask_time_vs_baseline.md").write_text(table)
    (out / "ask_time_vs_baseline.json").write_text(json.dumps(rows, indent=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--baseline", type=Path,
                        help="another checkout to time side by side (writes "
                             "ask_time_vs_baseline.md)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (--baseline)")
    args = parser.parse_args(argv)
    if args.baseline is not None:
        compare(args.baseline.resolve(), args.sizes, args.repeats, args.rounds, args.out)
        return
    rows = measure_in(Path(__file__).resolve().parents[1], args.sizes, args.repeats)
    for row in rows:
        print(f"{row['trials']:>6} trials, {row['mode']:11s}: median {row['median_ms']:.1f} ms, "
              f"max {row['max_ms']:.1f} ms", flush=True)
    base = {r["mode"]: r["median_ms"] for r in rows if r["trials"] == rows[0]["trials"]}
    lines = ["# Engine time per ask", "",
             f"`engine.propose` for one configuration, {args.repeats} asks per row, one BLAS "
             "thread. Command: `python -m benchmarks.ask_time`.", "",
             "| trials | mode | median (ms) | max (ms) | vs smallest |",
             "|---:|---|---:|---:|---:|"]
    lines += [f"| {r['trials']:,} | {r['mode']} | {r['median_ms']:.1f} | {r['max_ms']:.1f} | "
              f"{r['median_ms'] / base[r['mode']]:.2f}x |" for r in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ask_time.md").write_text(table)
    (args.out / "ask_time.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
