"""Pruner retraining cost and its effect on ask latency (`python -m benchmarks.retraining`).

1. Training time for histories of 1k, 10k and 100k trials on a HAS-like space, from scratch and
   fine-tuned from the previous weights, on every device present (CPU here; CUDA when available).
2. Ask latency of a real server (uvicorn, its own process) with and without a retraining job
   running beside it, measured in one run and reported as a ratio: training must not move asks.
Writes benchmarks/results/retraining.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from service.engine.encoding import Encoder
from service.engine.history import History, Observation, TrialState
from service.engine.pruner import make_training_set
from service.engine.space import SearchSpace

RESULTS = Path(__file__).parent / "results"
HAS_SPACE = {"params": [
    {"name": "cell", "type": "categorical", "choices": ["conv3x3", "conv1x1", "skip", "pool"]},
    {"name": "norm", "type": "categorical", "choices": ["batch", "layer", "none"]},
    {"name": "act", "type": "categorical", "choices": ["relu", "gelu", "silu"]},
    {"name": "depth", "type": "int", "low": 1, "high": 8},
    {"name": "width", "type": "int", "low": 16, "high": 512, "log": True},
    {"name": "lr", "type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    {"name": "weight_decay", "type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5},
    {"name": "width_deep", "type": "int", "low": 16, "high": 512, "log": True,
     "condition": {"parent": "depth", "values": [5, 6, 7, 8]}},
]}


def synthetic_loss(config: dict) -> float:
    """A smooth-plus-categorical objective, so the model has something real to learn."""
    cell = {"conv3x3": 0.0, "conv1x1": 0.3, "skip": 0.8, "pool": 0.6}[config["cell"]]
    return (cell + (np.log10(config["lr"]) + 2.5) ** 2 * 0.2 + abs(config["depth"] - 5) * 0.05
            + config["dropout"] * 0.3 + (0.1 if config["act"] == "relu" else 0.0))


def history_of(space: SearchSpace, n: int, seed: int = 0) -> History:
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n):
        config = space.sample(rng)
        trials.append(Observation(i, config, TrialState.COMPLETE, synthetic_loss(config)))
    return History("minimize", tuple(trials))


def training_times(sizes: list[int], devices: list[str]) -> list[dict]:
    from service.training import train_pruner

    space = SearchSpace.from_dict(HAS_SPACE)
    encoder = Encoder(space)
    rows = []
    for n in sizes:
        full = history_of(space, n)
        half = History("minimize", full.trials[: n // 2])
        ts_half = make_training_set(encoder, half, ())
        ts = make_training_set(encoder, full, ())
        for device in devices:
            train_pruner(ts_half, device=device)  # warm-up (CUDA context, allocator)
            start = time.perf_counter()
            previous = train_pruner(ts_half, device=device)
            scratch_half = time.perf_counter() - start
            start = time.perf_counter()
            train_pruner(ts, device=device)
            scratch = time.perf_counter() - start
            start = time.perf_counter()
            train_pruner(ts, previous, device=device)
            finetune = time.perf_counter() - start
            rows.append({"trials": n, "device": device, "scratch_s": scratch,
                         "finetune_s": finetune, "scratch_half_s": scratch_half})
            print(f"  {n:>7} trials on {device}: scratch {scratch:.3f}s, "
                  f"fine-tune {finetune:.3f}s", flush=True)
    return rows


def ask_latency(history_trials: int, asks: int) -> dict:
    """Ask+tell latency against a real server, idle vs. with a 100k-trial training beside it."""
    import httpx

    from benchmarks.servers import start_server

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        server = start_server(url, auth=True)
        try:
            with httpx.Client(base_url=server.url, timeout=30, headers=_key(url)) as http:
                study = http.post("/v1/studies", json={"name": "lat", "space": HAS_SPACE}).json()
                for _ in range(history_trials):
                    _pair(http, study["id"])
                idle = [_pair(http, study["id"]) for _ in range(asks)]
                trainer = subprocess.Popen(
                    [sys.executable, "-c", "from benchmarks.retraining import _train_big; "
                     "_train_big()"], env=dict(os.environ))
                time.sleep(2.0)  # let it get into the training loop
                busy = []
                while trainer.poll() is None and len(busy) < asks:
                    busy.append(_pair(http, study["id"]))
                trainer.kill()
        finally:
            server.stop()
    return {"history": history_trials, "idle": _percentiles(idle), "busy": _percentiles(busy),
            "n_busy": len(busy)}


_KEYS: dict[str, dict] = {}


def _key(url: str) -> dict:
    if url not in _KEYS:
        from service.db import key_queries, migrate
        from service.db.session import make_engine, make_sessionmaker, transaction

        engine = make_engine(url)
        migrate.upgrade(engine)
        with transaction(make_sessionmaker(engine)) as session:
            _KEYS[url] = {"Authorization":
                          f"Bearer {key_queries.create_key(session, 'bench', 'bench').secret}"}
        engine.dispose()
    return _KEYS[url]


def _pair(http, study_id: str) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    (trial,) = http.post(f"/v1/studies/{study_id}/ask", json={}).json()["trials"]
    ask_s = time.perf_counter() - start
    http.post(f"/v1/studies/{study_id}/trials/{trial['id']}/tell",
              json={"value": synthetic_loss(trial["params"])})
    return ask_s


def _percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]}


def _train_big() -> None:
    """The retraining job the latency run competes with: a 100k-trial history, one thread."""
    from service.training import train_pruner

    space = SearchSpace.from_dict(HAS_SPACE)
    ts = make_training_set(Encoder(space), history_of(space, 100_000), ())
    for _ in range(100):
        train_pruner(ts, device="cpu")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--history", type=int, default=500, help="trials before measuring asks")
    parser.add_argument("--asks", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print("training time:")
    times = training_times([int(s) for s in args.sizes.split(",")], devices)
    print("ask latency, idle vs. beside a retraining job:")
    latency = ask_latency(args.history, args.asks)
    ratio_p50 = latency["busy"]["p50_ms"] / latency["idle"]["p50_ms"]
    ratio_p99 = latency["busy"]["p99_ms"] / latency["idle"]["p99_ms"]
    lines = ["# Pruner retraining", "",
             f"Device(s): {', '.join(devices)}; torch threads capped at 1 per job.", "",
             "| trials | device | from scratch (s) | fine-tune (s) |", "|---:|---|---:|---:|"]
    lines += [f"| {r['trials']:,} | {r['device']} | {r['scratch_s']:.3f} | {r['finetune_s']:.3f} |"
              for r in times]
    lines += ["", f"Ask latency at {latency['history']} trials of history "
              f"({args.asks} asks idle, {latency['n_busy']} while a 100k-trial training runs):", "",
              "| | p50 (ms) | p99 (ms) |", "|---|---:|---:|",
              f"| idle | {latency['idle']['p50_ms']:.1f} | {latency['idle']['p99_ms']:.1f} |",
              f"| during retraining | {latency['busy']['p50_ms']:.1f} | "
              f"{latency['busy']['p99_ms']:.1f} |",
              f"| ratio | {ratio_p50:.2f}x | {ratio_p99:.2f}x |", ""]
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retraining.md").write_text(table)
    (args.out / "retraining.json").write_text(json.dumps(
        {"training": times, "ask_latency": latency}, indent=1))


if __name__ == "__main__":
    main()
