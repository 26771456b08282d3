"""Search gain from zero-cost proxies, end to end through the service and the SDK.

`python -m benchmarks.zc_service` runs a real server (its own process, SQLite, retraining beside
it) and drives it with the SDK: one study per (dataset, seed) declaring the NAS-Bench-Suite-Zero
proxies as static metrics, whose `static_metrics=` function looks them up, against one study per
(dataset, seed) without them. The objective is benchmarks.static_metrics.NearestCell (the 725
cells of ../shared/data/naslib_zc over the full 5^6 space). Retraining is asynchronous, as in
production, so runs are not bit-reproducible. Writes benchmarks/results/zc_service.md/.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.servers import start_server
from benchmarks.static_metrics import PROXIES, SPACE, NearestCell, load

RESULTS = Path(__file__).parent / "results"
MODES = ("no proxies", "proxies as static metrics")


def run(datasets: list[str], seeds: int, budget: int, top_fraction: float) -> dict:
    from dyesp_client import Client

    out: dict = {"budget": budget, "seeds": seeds, "top_fraction": top_fraction, "datasets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DYESP_RETRAIN_MIN_TRIALS"] = "10"
        server = start_server(f"sqlite:///{tmp}/zc.db", retrain=True)
        try:
            with Client(server.url, timeout=60) as client:
                for dataset in datasets:
                    table = NearestCell(load(dataset))
                    target = float(np.quantile(table.cells.accuracy, 1.0 - top_fraction))
                    rows: dict[str, list[int]] = {}
                    for mode in MODES:
                        hits = []
                        start = time.perf_counter()
                        for seed in range(seeds):
                            hits.append(_one(client, table, dataset, mode, seed, budget, target))
                        rows[mode] = hits
                        print(f"{dataset:15s} {mode:26s} trials to top {top_fraction:.0%}: "
                              f"median {np.median(hits):5.1f} {hits} "
                              f"({time.perf_counter() - start:.0f}s)", flush=True)
                    out["datasets"][dataset] = rows
        finally:
            server.stop()
    return out


def _one(client, table: NearestCell, dataset: str, mode: str, seed: int, budget: int,  # type: ignore[no-untyped-def]
         target: float) -> int:
    with_proxies = mode == MODES[1]
    study = client.create_study(f"zc-{dataset}-{seed}-{mode}", SPACE.to_dict(), "maximize",
                                seed=seed, static_metrics=PROXIES if with_proxies else ())
    metrics = (lambda params: table.metrics([params])[0]) if with_proxies else None
    for number in range(1, budget + 1):
        trial = study.ask(static_metrics=metrics)
        value = table.accuracy(trial.params)
        trial.tell(value)
        if value >= target:
            return number
        time.sleep(0.005)  # a real job takes time: lets the background retraining keep up
    return budget + 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="cifar10,cifar100,ImageNet16-120")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=150)
    parser.add_argument("--top", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.datasets.split(","), args.seeds, args.budget, args.top)
    lines = ["# Zero-cost proxies through the service and the SDK", "",
             f"Median (IQR) trials until the best found reaches the top {args.top:.0%} of the "
             f"725 cells; {args.seeds} seeds, budget {args.budget} (> budget: not reached). "
             f"Command: `python -m benchmarks.zc_service`.", "",
             "| dataset | " + " | ".join(MODES) + " | ratio |", "|---|---:|---:|---:|"]
    for dataset, rows in result["datasets"].items():
        cells = []
        for mode in MODES:
            q1, q2, q3 = np.percentile(rows[mode], [25, 50, 75])
            cells.append(f"{q2:.0f} ({q1:.0f}-{q3:.0f})")
        ratio = np.median(rows[MODES[1]]) / np.median(rows[MODES[0]])
        lines.append(f"| {dataset} | {cells[0]} | {cells[1]} | {ratio:.2f}x |")
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "zc_service.md").write_text(table)
    (args.out / "zc_service.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
