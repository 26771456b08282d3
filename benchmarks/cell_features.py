"""Do the cells' structure features help the pruner and the GP rank NAS-Bench-201 cells?

``python -m benchmarks.cell_features`` reads the NAS-Bench-Suite-Zero subset that
``benchmarks.static_metrics`` reads (725 cells per dataset), declares its 6 edges as one cell
(``"cell": {"name": "cell", "edge": [i, j], "zero": "none"}``) and, on the same random splits,
trains each model on ``n`` cells and scores its Spearman with the 200-epoch validation accuracy
of all the other cells:

- the pruner (``service.training``) on the one-hot cell, with and without the structure features,
  each with and without the 12 zero-cost proxies as static metrics;
- the surrogate strategy's GP (``service.engine.gp``) on its features, with and without them.

Features come from the service's own code (``featurize``, ``gp.Features``) on the annotated and
the plain space, so this measures exactly what a study with the annotation gets. It prints and
writes ``benchmarks/results/cell_features.{md,json}``: means with 95 % intervals (normal
approximation, mean ± 1.96 standard errors over the splits) and the paired differences.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.runner import write_results
from benchmarks.static_metrics import DATASETS, EDGES, OPS, PROXIES, RESULTS, SPACE, Cells, load
from service.engine import gp
from service.engine.encoding import Encoder
from service.engine.pruner import TrainingSet, feature_fingerprint, featurize
from service.engine.space import SearchSpace
from service.engine.stats import normal_scores, rank_goodness, spearman

N_OBSERVED = (20, 50, 100, 200)
CELL_SPACE = SearchSpace.from_dict({"params": [
    {"name": f"edge_{edge}", "type": "categorical", "choices": list(OPS),
     "cell": {"name": "cell", "edge": [int(node) for node in edge.split("_")], "zero": "none"}}
    for edge in EDGES]})
# model, whether the cells' structure features are in, which static metrics
VARIANTS: dict[str, tuple[str, bool, tuple[str, ...]]] = {
    "pruner": ("pruner", False, ()),
    "pruner + cells": ("pruner", True, ()),
    "pruner + proxies": ("pruner", False, PROXIES),
    "pruner + cells + proxies": ("pruner", True, PROXIES),
    "GP": ("gp", False, ()),
    "GP + cells": ("gp", True, ()),
}
GAINS = (("pruner + cells", "pruner"), ("pruner + cells + proxies", "pruner + proxies"),
         ("GP + cells", "GP"))


def pruner_features(cells: Cells, structure: bool,
                    metric_names: tuple[str, ...]) -> tuple[np.ndarray, str]:
    encoder = Encoder(CELL_SPACE if structure else SPACE)
    X = featurize(encoder, cells.configs, cells.metrics if metric_names else None, metric_names)
    return X, feature_fingerprint(encoder, metric_names)


def scores(cells: Cells, n: int, seed: int, features: dict[str, Any],
           train: Any) -> dict[str, float]:
    """Every variant's held-out Spearman on one split: ``n`` random cells seen, the rest scored."""
    order = np.random.default_rng(seed).permutation(len(cells.accuracy))
    seen, unseen = order[:n], order[n:]
    out = {}
    for name, (model, _, metric_names) in VARIANTS.items():
        X, extra = features[name]
        if model == "pruner":
            ts = TrainingSet(X[seen], rank_goodness(-cells.accuracy[seen]), extra, metric_names, n)
            prediction = train(ts, device="cpu", seed=seed).predict(X[unseen])[0]
        else:
            fitted = gp.fit(X[seen], normal_scores(-cells.accuracy[seen]), extra)
            prediction = -fitted.predict(X[unseen])[0]  # the GP models normal-scored losses
        out[name] = spearman(prediction, cells.accuracy[unseen])
    return out


def summary(values: Sequence[float]) -> dict[str, float]:
    """Mean and the half-width of its 95 % interval (1.96 standard errors)."""
    v = np.asarray(values, dtype=float)
    half = 1.96 * float(np.std(v, ddof=1)) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return {"mean": float(np.mean(v)), "ci95": half}


def run(datasets: Sequence[str], n_observed: Sequence[int], splits: int) -> dict[str, Any]:
    from service.training import train_pruner

    rows = []
    for dataset in datasets:
        cells = load(dataset)
        features: dict[str, Any] = {}
        for name, (model, structure, metric_names) in VARIANTS.items():
            if model == "pruner":
                features[name] = pruner_features(cells, structure, metric_names)
            else:
                f = gp.Features(Encoder(CELL_SPACE), structure=structure)
                features[name] = (f(list(cells.configs)), f.groups)
        for n in n_observed:
            start = time.perf_counter()
            per_split = [scores(cells, n, seed, features, train_pruner) for seed in range(splits)]
            row: dict[str, Any] = {"dataset": dataset, "n_observed": n, "splits": splits}
            for name in VARIANTS:
                row[name] = summary([s[name] for s in per_split])
            for with_, without in GAINS:
                diff = [s[with_] - s[without] for s in per_split]
                row[f"{with_} - {without}"] = {**summary(diff),
                                               "wins": int(sum(d > 0 for d in diff))}
            row["raw"] = per_split
            row["seconds"] = time.perf_counter() - start
            rows.append(row)
            print(_format_row(row), flush=True)
    return {"splits": splits, "n_observed": list(n_observed), "rows": rows}


def _format_row(row: dict[str, Any]) -> str:
    parts = [f"{name} {row[name]['mean']:.3f}±{row[name]['ci95']:.3f}" for name in VARIANTS]
    return f"{row['dataset']:15s} n={row['n_observed']:<4d} " + "  ".join(parts) + \
        f"  ({row['seconds']:.0f}s)"


def to_markdown(result: dict[str, Any]) -> str:
    splits = result["splits"]
    lines = [
        "# Cell structure features: do they help rank NAS-Bench-201 cells?",
        "",
        "NAS-Bench-Suite-Zero subset (`../shared/data/naslib_zc`, 725 cells per dataset,",
        "200-epoch validation accuracy). The 6 edges are declared as one cell with `none` as its",
        "zero, which adds 16 structure features (per operation: share of edges, share of",
        "input -> output paths made of it alone, mean count on the live paths; and the share of",
        f"live paths). On each of {splits} random splits every model is trained on the same `n`",
        "cells and scored by Spearman with accuracy on all remaining cells; mean ± 95 % interval",
        "(1.96 standard errors). *pruner*: the torch MLP ensemble (`service.training`) on the",
        "one-hot cell; *+ proxies*: the 12 zero-cost proxies as static metrics; *GP*: the",
        "surrogate strategy's GP on its features.",
        "",
        "| dataset | n | " + " | ".join(VARIANTS) + " |",
        "|---|---:|" + "---:|" * len(VARIANTS),
    ]
    for row in result["rows"]:
        lines.append(f"| {row['dataset']} | {row['n_observed']} | " + " | ".join(
            f"{row[name]['mean']:.3f} ± {row[name]['ci95']:.3f}" for name in VARIANTS) + " |")
    lines += ["", "Paired gain of the structure features (same split, with minus without): "
              "mean ± 95 % interval, and on how many splits it was positive.", "",
              "| dataset | n | " + " | ".join(f"{a} vs. {b}" for a, b in GAINS) + " |",
              "|---|---:|" + "---:|" * len(GAINS)]
    for row in result["rows"]:
        cells = []
        for a, b in GAINS:
            gain = row[f"{a} - {b}"]
            cells.append(f"{gain['mean']:+.3f} ± {gain['ci95']:.3f} "
                         f"({gain['wins']}/{splits})")
        lines.append(f"| {row['dataset']} | {row['n_observed']} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=30, help="random splits per (dataset, n)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--n-observed", nargs="+", type=int, default=list(N_OBSERVED))
    parser.add_argument("--out", type=Path, default=RESULTS / "cell_features")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    result = run(args.datasets, args.n_observed, args.splits)
    slim = {**result, "rows": [{k: v for k, v in row.items() if k != "raw"}
                               for row in result["rows"]]}
    write_results(args.out, slim, to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
