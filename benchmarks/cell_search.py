"""Does the `cell` annotation make the engine SEARCH faster on NAS-Bench-201 (trials-to-target)?

``benchmarks.cell_features`` shows the structure features rank cells better; this asks whether
that shortens the search. It reads two result folders filled by ``benchmarks.quality`` on the same
fresh seeds: ``BASE`` with ``nb201/<dataset>`` runs of the engine and the peers (peers do not read
the annotation, so one run of theirs serves both), ``CELL`` with ``nb201-cell/<dataset>`` runs of
the engine (same objective and target, edges annotated); ``--reference quality.json`` fills the
seeds BASE lacks from an earlier report (runs are deterministic). Per dataset and pooled it
reports:

- the median trials-to-target of every method with a bootstrap 95 % interval (failures at
  budget + 1);
- the engine with the annotation over without, paired by seed: the geometric mean of the ratio
  with a bootstrap 95 % interval (pooled: resampled within each dataset), and faster / slower;
- each engine variant's median over the best peer's (the peer with the lowest median on that
  dataset), bootstrap 95 % interval resampling both independently; pooled: the geometric mean
  over datasets.

Example:
    python -m benchmarks.cell_search /tmp/c13/base /tmp/c13/cell --datasets cifar10,cifar100
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import scores
from benchmarks.runner import load_runs
from benchmarks.tasks import get_task

PEERS = ("optuna-tpe", "optuna-gp", "flaml-cfo", "regularized-evolution", "local-search")
ENGINE = "dyesp"
N_BOOT = 4000


def ttt_by_seed(root: Path, task: str, method: str, budget: int,
                reference: dict[str, Any] | None = None) -> dict[int, float]:
    """Trials-to-target per seed (failures at budget + 1) of the cached runs under ``root``;
    seeds it lacks come from ``reference`` (a ``quality.json`` at this budget), if given."""
    reached = get_task(task).reached
    out: dict[int, float] = {}
    if reference and reference.get("budget") == budget:
        ref = reference.get("results", {}).get(task, {}).get(method)
        if ref:
            out = {int(s): float(budget + 1 if t is None else t)
                   for s, t in zip(ref["seeds"], ref["trials_to_target"], strict=True)}
    out.update({r["seed"]: float(scores.censored(
        [scores.trials_to_target(r["best"], reached)], budget)[0])
        for r in load_runs(root, [task], [method], budget)})
    return out


def _ci(samples: np.ndarray) -> list[float]:
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]


def analyse(base: Path, cell: Path, datasets: Sequence[str], budget: int,
            reference: dict[str, Any] | None = None, plain: str = "nb201/{}",
            cell_task: str = "nb201-cell/{}") -> dict[str, Any]:
    """Per dataset (``plain`` and ``cell_task`` format its task names) and pooled; see the
    module's docstring. Datasets without runs of both engine variants are left out."""
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"budget": budget, "datasets": {}}
    pooled_logs: list[np.ndarray] = []
    pooled_peer: dict[str, list[np.ndarray]] = {"plain": [], "cell": []}
    peer_points: dict[str, list[float]] = {"plain": [], "cell": []}
    for d in datasets:
        runs = {m: ttt_by_seed(base, plain.format(d), m, budget, reference)
                for m in (*PEERS, ENGINE)}
        runs["dyesp-cell"] = ttt_by_seed(cell, cell_task.format(d), ENGINE, budget)
        runs = {m: r for m, r in runs.items() if r}
        if ENGINE not in runs or "dyesp-cell" not in runs:
            continue
        row: dict[str, Any] = {"methods": {}}
        boots: dict[str, np.ndarray] = {}
        for m, r in runs.items():
            x = np.array(list(r.values()))
            boots[m] = scores.bootstrap_medians(x, rng, N_BOOT)
            row["methods"][m] = {"n": len(x), "median": float(np.median(x)),
                                 "ci": _ci(boots[m]), "reached": int(np.sum(x <= budget))}
        seeds = sorted(set(runs[ENGINE]) & set(runs["dyesp-cell"]))
        logs = np.log([runs["dyesp-cell"][s] / runs[ENGINE][s] for s in seeds])
        pooled_logs.append(logs)
        gm = np.exp(np.mean(logs[rng.integers(0, len(logs), (N_BOOT, len(logs)))], axis=1))
        row["paired"] = {"pairs": len(seeds), "geo_mean": float(np.exp(logs.mean())),
                         "ci": _ci(gm), "faster": int(np.sum(logs < 0)),
                         "slower": int(np.sum(logs > 0))}
        peers = [m for m in PEERS if m in runs]
        if peers:
            best = min(peers, key=lambda m: row["methods"][m]["median"])
            row["best_peer"] = best
            for key, m in (("plain", ENGINE), ("cell", "dyesp-cell")):
                ratio = boots[m] / boots[best]
                pooled_peer[key].append(np.log(ratio))
                peer_points[key].append(
                    math.log(row["methods"][m]["median"] / row["methods"][best]["median"]))
                row[f"{key}_vs_best_peer"] = {
                    "ratio": row["methods"][m]["median"] / row["methods"][best]["median"],
                    "ci": _ci(ratio)}
        out["datasets"][d] = row
    if pooled_logs:
        idx = [rng.integers(0, len(x), (N_BOOT, len(x))) for x in pooled_logs]
        allx = np.concatenate(pooled_logs)
        resampled = [x[i] for x, i in zip(pooled_logs, idx, strict=True)]
        gm = np.exp(np.mean(np.concatenate(resampled, axis=1), axis=1))
        out["pooled"] = {"pairs": len(allx), "geo_mean": float(np.exp(allx.mean())),
                         "ci": _ci(gm), "faster": int(np.sum(allx < 0)),
                         "slower": int(np.sum(allx > 0))}
        for key, logs in pooled_peer.items():
            if logs:
                g = np.exp(np.mean(logs, axis=0))
                out["pooled"][f"{key}_vs_best_peer"] = {
                    "geo_mean": math.exp(float(np.mean(peer_points[key]))), "ci": _ci(g)}
    return out


def _fmt(m: dict[str, Any]) -> str:
    return f"{m['median']:.1f} [{m['ci'][0]:.0f}-{m['ci'][1]:.0f}] {m['reached']}/{m['n']}"


def to_markdown(result: dict[str, Any]) -> str:
    methods = [*PEERS, ENGINE, "dyesp-cell"]
    lines = ["Median trials-to-target [bootstrap 95 % interval] reached/seeds, budget "
             f"{result['budget']}; `dyesp-cell` = the engine on `nb201-cell/*`.", "",
             "| dataset | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for d, row in result["datasets"].items():
        cells = [_fmt(row["methods"][m]) if m in row["methods"] else "-" for m in methods]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines += ["", "| dataset | pairs | cell / plain (geo-mean of paired ratios) [95 %] "
              "| faster / slower | best peer | plain / best peer [95 %] "
              "| cell / best peer [95 %] |", "|---|---|---|---|---|---|---|"]

    def ratio(r: dict[str, Any], key: str = "ratio") -> str:
        return f"{r[key]:.2f} [{r['ci'][0]:.2f}-{r['ci'][1]:.2f}]" if r else "-"

    for d, row in result["datasets"].items():
        p = row["paired"]
        lines.append(f"| {d} | {p['pairs']} | {ratio(p, 'geo_mean')} | {p['faster']} / "
                     f"{p['slower']} | {row.get('best_peer', '-')} | "
                     f"{ratio(row.get('plain_vs_best_peer', {}))} | "
                     f"{ratio(row.get('cell_vs_best_peer', {}))} |")
    if "pooled" in result:
        p = result["pooled"]
        lines.append(f"| **pooled** | {p['pairs']} | {ratio(p, 'geo_mean')} | {p['faster']} / "
                     f"{p['slower']} | per dataset | "
                     f"{ratio(p.get('plain_vs_best_peer', {}), 'geo_mean')} | "
                     f"{ratio(p.get('cell_vs_best_peer', {}), 'geo_mean')} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cell_search", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path, help="folder with nb201/* runs of dyesp and the peers")
    ap.add_argument("cell", type=Path, help="folder with nb201-cell/* runs of dyesp")
    ap.add_argument("--datasets", default="cifar10,cifar100,imagenet")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--reference", type=Path,
                    help="a quality.json whose per-seed results fill seeds BASE lacks (the runs "
                         "are deterministic: a rerun reproduces them exactly)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args(argv)
    reference = json.loads(args.reference.read_text()) if args.reference else None
    result = analyse(args.base, args.cell, args.datasets.split(","), args.budget, reference)
    if not result["datasets"]:
        print("no paired runs", file=sys.stderr)
        return 1
    print(to_markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
