"""Does the pruner learn from static metrics? NAS-Bench-201 cells with zero-cost proxies.

``python -m benchmarks.static_metrics`` trains the pruner on ``n`` random cells of the
NAS-Bench-Suite-Zero subset (725 cells per dataset, ``../shared/data/naslib_zc``, read at run time,
never copied here) and reports the Spearman correlation between its predictions and the 200-epoch
validation accuracy of all remaining cells, for three feature sets: the proxies alone, the encoded
cell alone and both. It writes ``benchmarks/results/static_metrics.{md,json}``.

``--search`` adds the search gain: trials the engine's Optimizer needs to reach the top 1% of the
725 cells with and without the proxies as static metrics (needs ``service.engine.optimizer``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.runner import write_results
from service.engine.encoding import Encoder
from service.engine.pruner import (
    TrainingSet,
    feature_fingerprint,
    featurize,
)
from service.engine.space import SearchSpace
from service.engine.stats import rank_goodness, spearman

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("DYESP_DATA_DIR", REPO.parent / "shared" / "data"))
DATA_FILE = DATA_DIR / "naslib_zc" / "zc_nasbench201.json"
RESULTS = REPO / "benchmarks" / "results"

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
EDGES = ("1_2", "1_3", "1_4", "2_3", "2_4", "3_4")  # NASLib's order of the 6 op indices
PROXIES = ("flops", "params", "synflow", "grasp", "fisher", "grad_norm", "l2_norm", "plain",
           "nwot", "epe_nas", "jacov", "snip")
FEATURE_SETS = ("proxies", "encoding", "both")
N_OBSERVED = (10, 20, 50, 100, 200)

SPACE = SearchSpace.from_dict({"params": [
    {"name": f"edge_{edge}", "type": "categorical", "choices": list(OPS)} for edge in EDGES]})


@dataclass(frozen=True)
class Cells:
    """One dataset's cells: configurations, their proxies and their validation accuracy."""

    dataset: str
    configs: tuple[dict[str, str], ...]
    metrics: tuple[dict[str, float], ...]
    accuracy: np.ndarray


def load(dataset: str, path: Path = DATA_FILE) -> Cells:
    if not path.exists():
        raise SystemExit(f"{path} is missing: the NAS-Bench-Suite-Zero subset is read from "
                         f"../shared/data/naslib_zc (or $DYESP_DATA_DIR)")
    raw = json.loads(path.read_text())[dataset]
    configs, metrics, accuracy = [], [], []
    for key in sorted(raw):
        entry = raw[key]
        ops = [int(i) for i in key.strip("()").split(",")]
        configs.append({f"edge_{edge}": OPS[op] for edge, op in zip(EDGES, ops, strict=True)})
        metrics.append({name: float(entry[name]["score"]) for name in PROXIES if name in entry})
        accuracy.append(float(entry["val_accuracy"]))
    return Cells(dataset, tuple(configs), tuple(metrics), np.array(accuracy))


def features(cells: Cells, which: str) -> tuple[np.ndarray, str, tuple[str, ...]]:
    """Feature rows for one feature set, with the fingerprint and static-metric names they carry.
    ``proxies`` drops the encoded cell from the combined rows (the encoder's columns come first)."""
    encoder = Encoder(SPACE)
    if which == "encoding":
        return featurize(encoder, cells.configs, None, ()), feature_fingerprint(encoder, ()), ()
    X = featurize(encoder, cells.configs, cells.metrics, PROXIES)
    if which == "both":
        return X, feature_fingerprint(encoder, PROXIES), PROXIES
    return X[:, encoder.dim + encoder.structure_dim:], "proxies-only", PROXIES


def rank_correlation(cells: Cells, which: str, n: int, seed: int,
                     train: Any = None) -> float:
    """Train on ``n`` random cells, return Spearman(prediction, accuracy) on all the others."""
    if train is None:
        from service.training import train_pruner as train
    X, fingerprint, names = features(cells, which)
    order = np.random.default_rng(seed).permutation(len(cells.accuracy))
    seen, unseen = order[:n], order[n:]
    ts = TrainingSet(X[seen], rank_goodness(-cells.accuracy[seen]), fingerprint, names, n)
    model = train(ts, device="cpu", seed=seed)
    mean, _ = model.predict(X[unseen])
    return spearman(mean, cells.accuracy[unseen])


def single_proxy_correlations(cells: Cells) -> dict[str, float]:
    """Each proxy's own Spearman with accuracy over all cells (missing values rank lowest)."""
    out = {}
    for name in PROXIES:
        values = np.array([m.get(name, -np.inf) for m in cells.metrics])
        values = np.where(np.isnan(values), -np.inf, values)
        finite_min = values[np.isfinite(values)].min()
        out[name] = spearman(np.where(np.isfinite(values), values, finite_min - 1), cells.accuracy)
    return out


def correlation_table(datasets: Sequence[str], n_observed: Sequence[int],
                      seeds: int) -> dict[str, Any]:
    rows = []
    for dataset in datasets:
        cells = load(dataset)
        for n in n_observed:
            row: dict[str, Any] = {"dataset": dataset, "n_observed": n}
            for which in FEATURE_SETS:
                start = time.perf_counter()
                values = [rank_correlation(cells, which, n, seed) for seed in range(seeds)]
                row[which] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                              "seconds_per_fit": (time.perf_counter() - start) / seeds}
            rows.append(row)
            print(_format_row(row), flush=True)
    references = {d: single_proxy_correlations(load(d)) for d in datasets}
    return {"seeds": seeds, "rows": rows, "single_proxy_spearman": references}


# --- search gain -----------------------------------------------------------------------------

SEARCH_MODES = ("no pruner", "pruner, encoding", "pruner, encoding + proxies")


class NearestCell:
    """The 725-cell subset as an objective over the whole 5^6 space: a configuration scores (and
    has the proxies of) the known cell with the fewest differing edges, ties to the first. The
    engine searches the real space; the landscape is the subset's, piecewise constant."""

    def __init__(self, cells: Cells) -> None:
        self.cells = cells
        self.ops = np.array([[OPS.index(c[f"edge_{edge}"]) for edge in EDGES]
                             for c in cells.configs])
        self._cache: dict[tuple[int, ...], int] = {}

    def index(self, config: dict[str, Any]) -> int:
        key = tuple(OPS.index(config[f"edge_{edge}"]) for edge in EDGES)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = int(np.argmin((self.ops != key).sum(axis=1)))
        return found

    def accuracy(self, config: dict[str, Any]) -> float:
        return float(self.cells.accuracy[self.index(config)])

    def metrics(self, configs: list[dict[str, Any]]) -> list[dict[str, float]]:
        return [dict(self.cells.metrics[self.index(c)]) for c in configs]


def search_gain(datasets: Sequence[str], seeds: int, budget: int = 300,
                top_fraction: float = 0.01) -> dict[str, Any]:
    """Trials until the best-so-far reaches the top ``top_fraction`` of the 725 cells, and the
    best cell (``budget + 1`` when never), for the engine without a pruner, with a pruner on the
    encoding alone, and with a pruner that also gets the proxies as static metrics (same seeds
    and budget)."""
    try:
        from service.engine.optimizer import Optimizer
    except ImportError as error:  # the engine's Optimizer is written in parallel with this
        raise SystemExit(f"--search needs service.engine.optimizer ({error})") from None
    from service.training import train_pruner

    def trainer(ts: TrainingSet, previous: Any) -> Any:
        return train_pruner(ts, previous, device="cpu")

    results: dict[str, Any] = {"budget": budget, "top_fraction": top_fraction, "seeds": seeds,
                               "modes": list(SEARCH_MODES), "datasets": {}}
    for dataset in datasets:
        table = NearestCell(load(dataset))
        targets = (float(np.quantile(table.cells.accuracy, 1.0 - top_fraction)),
                   float(table.cells.accuracy.max()))
        per_mode: dict[str, dict[str, list[int]]] = {}
        for mode in SEARCH_MODES:
            top, best = [], []
            start = time.perf_counter()
            for seed in range(seeds):
                with_proxies = mode == SEARCH_MODES[2]
                optimizer = Optimizer(
                    SPACE, "maximize", seed=seed,
                    trainer=None if mode == SEARCH_MODES[0] else trainer,
                    metrics_fn=table.metrics if with_proxies else None,
                    metric_names=PROXIES if with_proxies else ())
                hits = _trials_to_targets(optimizer, table, targets, budget)
                top.append(hits[0])
                best.append(hits[1])
            per_mode[mode] = {"top": top, "best": best}
            print(f"{dataset:15s} {mode:28s} trials to top {top_fraction:.0%}: median "
                  f"{np.median(top):5.1f} {top}; to the best: median {np.median(best):5.1f} "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)
        results["datasets"][dataset] = per_mode
    return results


def _trials_to_targets(optimizer: Any, table: NearestCell, targets: Sequence[float],
                       budget: int) -> list[int]:
    """For each target, the trial at which the best-so-far first reached it (budget + 1: never)."""
    hits = [budget + 1] * len(targets)
    for trial in range(1, budget + 1):
        suggestion = optimizer.ask()
        value = table.accuracy(suggestion.params)
        optimizer.tell(suggestion, value)
        for i, target in enumerate(targets):
            if value >= target and hits[i] > budget:
                hits[i] = trial
        if all(h <= budget for h in hits):
            break
    return hits


# --- report ----------------------------------------------------------------------------------

def _format_row(row: dict[str, Any]) -> str:
    cells = "  ".join(f"{which} {row[which]['mean']:+.3f}±{row[which]['std']:.3f}"
                      for which in FEATURE_SETS)
    return f"{row['dataset']:15s} n={row['n_observed']:<4d} {cells}"


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Static metrics: does the pruner learn from zero-cost proxies?",
        "",
        "NAS-Bench-201 cells of the NAS-Bench-Suite-Zero subset (`../shared/data/naslib_zc`, 725",
        "per dataset, 200-epoch validation accuracy). The pruner is trained on `n` random cells",
        f"and scored by Spearman with accuracy on all remaining cells; mean ± std over "
        f"{result['seeds']} seeds.",
        "Features: *proxies* = the 12 proxies alone (signed log1p, robust scaling);",
        "*encoding* = the one-hot cell alone; *both* = the two together, as a study with static",
        "metrics sees it.",
        "",
        "| dataset | n observed | proxies | encoding | both |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        values = " | ".join(f"{row[w]['mean']:.3f} ± {row[w]['std']:.3f}" for w in FEATURE_SETS)
        lines.append(f"| {row['dataset']} | {row['n_observed']} | {values} |")
    lines += ["", "Single proxies over all cells (Spearman with accuracy), for reference:", "",
              "| dataset | " + " | ".join(PROXIES) + " |",
              "|---|" + "---:|" * len(PROXIES)]
    for dataset, values in result["single_proxy_spearman"].items():
        lines.append(f"| {dataset} | " + " | ".join(f"{values[p]:.2f}" for p in PROXIES) + " |")
    search = result.get("search")
    if search:
        lines += ["", f"## Search gain: trials to the top {search['top_fraction']:.0%} of the "
                  f"725 cells / to the best cell", "",
                  f"{search['seeds']} seeds, budget {search['budget']} trials "
                  f"({search['budget'] + 1} = not reached); median (mean) over seeds.",
                  "The engine searches the whole 5^6 cell space; a cell outside the subset scores",
                  "(and has the proxies of) its nearest known cell, fewest differing edges.",
                  "", "| dataset | target | " + " | ".join(search["modes"]) + " |",
                  "|---|---|" + "---:|" * len(search["modes"])]
        for dataset, modes in search["datasets"].items():
            for target, label in (("top", f"top {search['top_fraction']:.0%}"), ("best", "best")):
                lines.append(f"| {dataset} | {label} | " + " | ".join(
                    f"{np.median(modes[m][target]):.0f} ({np.mean(modes[m][target]):.0f})"
                    for m in search["modes"]) + " |")
    else:
        lines += ["", "Search gain: not run (`--search`)."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--n-observed", nargs="+", type=int, default=list(N_OBSERVED))
    parser.add_argument("--search", action="store_true",
                        help="also measure the search gain with the engine's Optimizer")
    parser.add_argument("--search-seeds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "static_metrics")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    result = correlation_table(args.datasets, args.n_observed, args.seeds)
    if args.search:
        result["search"] = search_gain(args.datasets, args.search_seeds)
    write_results(args.out, result, to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
