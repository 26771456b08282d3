"""The engine's own time per ask as the history grows (`python -m benchmarks.ask_time`).

Times `engine.propose` for one configuration on a HAS-like space with histories of 100, 1,000
and 10,000 finished trials (plus a few running ones), with and without a trained pruner, in one
run so the sizes compare as ratios. Single-threaded BLAS, as the service runs it.
Writes benchmarks/results/ask_time.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from benchmarks.retraining import HAS_SPACE, history_of  # noqa: E402
from service.engine.encoding import Encoder  # noqa: E402
from service.engine.history import History, Observation, TrialState  # noqa: E402
from service.engine.propose import propose  # noqa: E402
from service.engine.pruner import make_training_set  # noqa: E402
from service.engine.space import SearchSpace  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def time_asks(space: SearchSpace, history: History, repeats: int, pruner) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for i in range(repeats):
        start = time.perf_counter()
        propose(space, history, 1, seed=i, pruner=pruner)
        samples.append(time.perf_counter() - start)
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from service.training import train_pruner

    space = SearchSpace.from_dict(HAS_SPACE)
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        done = history_of(space, n)
        running = tuple(Observation(n + i, space.sample(__import__("numpy").random.default_rng(i)),
                                    TrialState.RUNNING) for i in range(4))
        history = History("minimize", done.trials + running)
        model = train_pruner(make_training_set(Encoder(space), done, ()), device="cpu")
        for label, pruner in (("no pruner", None), ("with pruner", model)):
            propose(space, history, 1, seed=0, pruner=pruner)  # warm caches
            samples = time_asks(space, history, args.repeats, pruner)
            rows.append({"trials": n, "mode": label,
                         "median_ms": 1000 * statistics.median(samples),
                         "max_ms": 1000 * max(samples)})
            print(f"{n:>6} trials, {label:11s}: median {rows[-1]['median_ms']:.1f} ms, "
                  f"max {rows[-1]['max_ms']:.1f} ms", flush=True)
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
