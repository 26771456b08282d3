"""Aggregate the cached runs into the table, `multifidelity.md` and `multifidelity.json`.

Per task and method: the median epochs-to-target over seeds with its IQR; a censored run (target
not reached within the budget) counts as the budget for the median and quartiles, and is shown as
"> budget" when the median itself is censored. Then per task the ratio of dyesp-es's median to the
best peer's (the best non-DyESP method) and to random-full's; a ratio computed from a censored
median is a bound, marked with ">" or "<". Stop quality: over all seeds, of the trials stopped
early (never trained to the maximum fidelity), how many would have ended in the task's top 5 %,
with the totals of trials and stopped trials. Headroom: the median of each run's hindsight bound
(`Ledger.hindsight_epochs_to_target`: its own configurations with perfect stop decisions) and the
method's median over it. Wall time: median seconds per run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.multifidelity.methods import ENGINE
from benchmarks.multifidelity.run import load_runs
from benchmarks.runner import versions


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float(q25), float(q50), float(q75)


def summarise(runs: list[dict], budget: int) -> dict[str, Any]:
    vals = [r["epochs_to_target"] if r["reached"] else budget for r in runs]
    q25, q50, q75 = _quantiles(vals) if vals else (float("nan"),) * 3
    return {"n_seeds": len(runs), "n_reached": sum(r["reached"] for r in runs),
            "median": q50, "q25": q25, "q75": q75,
            "median_censored": bool(vals) and q50 >= budget,
            "per_seed": {str(r["seed"]): (r["epochs_to_target"] if r["reached"] else None)
                         for r in runs},
            "n_trials": sum(r["n_trials"] for r in runs),
            "n_stopped": sum(r["n_stopped"] for r in runs),
            "n_stopped_top5": sum(r["n_stopped_top5"] for r in runs),
            "n_full": sum(r["n_full"] for r in runs),
            "wall_s_median": (float(np.median([round(r["wall_s"], 2) for r in runs]))
                              if runs else None),
            "wall_s_per_seed": {str(r["seed"]): round(r["wall_s"], 2) for r in runs},
            "hindsight_median": _hindsight_median(runs, budget),
            "notes": _sum_notes(runs)}


def _hindsight_median(runs: list[dict], budget: int) -> float | None:
    """The median of the runs' ``hindsight_epochs_to_target`` (censored at the budget); None
    when a run was recorded before the ledger measured it."""
    if not runs or any("hindsight_epochs_to_target" not in r for r in runs):
        return None
    vals = [min(budget, r["hindsight_epochs_to_target"])
            if r["hindsight_epochs_to_target"] is not None else budget for r in runs]
    return float(np.median(vals))


def _sum_notes(runs: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in runs:
        for k, v in r.get("notes", {}).items():
            out[k] = out.get(k, 0) + int(v)
    return dict(sorted(out.items()))


def _fmt(n: float) -> str:
    return f"{n:,.0f}"


def _cell(s: dict[str, Any], budget: int) -> str:
    if not s["n_seeds"]:
        return ""
    med = f"> {_fmt(budget)}" if s["median_censored"] else _fmt(s["median"])
    hi = f"> {_fmt(budget)}" if s["q75"] >= budget else _fmt(s["q75"])
    return f"{med} ({_fmt(s['q25'])}-{hi}) {s['n_reached']}/{s['n_seeds']}"


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> str:
    if not a["n_seeds"] or not b["n_seeds"] or b["median"] <= 0:
        return ""
    r = a["median"] / b["median"]
    if a["median_censored"] and b["median_censored"]:
        return "n/a (both censored)"
    prefix = ">" if a["median_censored"] else "<" if b["median_censored"] else ""
    return f"{prefix}{r:.2f}"


def build(root: Path, tasks: list[str], methods: list[str], budgets: dict[str, int],
          seeds: int, command: str, failures: list[str], notes: list[str],
          dehb_versions: str | None = None, first_seed: int = 0) -> tuple[str, dict]:
    data: dict[str, Any] = {"command": command, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "python": sys.version.split()[0], "versions": versions(),
                            "dehb_versions": dehb_versions,
                            "seeds": seeds, "first_seed": first_seed, "tasks": {},
                            "failures": failures, "notes": notes}
    peers = [m for m in methods if m not in ENGINE]
    head = ["task", "target", "budget", *methods, "dyesp-es / best peer",
            "dyesp-es / random-full"]
    rows = []
    for task in tasks:
        budget = budgets[task]
        runs = {m: load_runs(root, task, m, budget, seeds, first_seed) for m in methods}
        per = {m: summarise(runs[m], budget) for m in methods}
        target = next((r["target"] for m in methods for r in runs[m][:1]), None)
        peer_stats = [per[m] for m in peers if per[m]["n_seeds"]]
        best_peer = min(peer_stats, key=lambda s: s["median"]) if peer_stats else None
        best_name = next((m for m in peers if per[m] is best_peer), None)
        es = per.get("dyesp-es")
        vs_best = _ratio(es, best_peer) if es and best_peer else ""
        vs_random = _ratio(es, per["random-full"]) if es and "random-full" in per else ""
        rows.append([task, f"{target:.6g}" if target is not None else "", _fmt(budget),
                     *(_cell(per[m], budget) for m in methods),
                     f"{vs_best} ({best_name})" if vs_best else "", vs_random])
        data["tasks"][task] = {"budget": budget, "target": target, "best_peer": best_name,
                               "dyesp_es_vs_best_peer": vs_best,
                               "dyesp_es_vs_random_full": vs_random, "methods": per}
    table = _md(head, rows)
    quality = _md(["task", *methods], [
        [t, *(_stop_cell(data["tasks"][t]["methods"][m]) for m in methods)] for t in tasks])
    walls = _md(["task", *methods], [
        [t, *(_wall_cell(data["tasks"][t]["methods"][m]) for m in methods)] for t in tasks])
    hindsight = _md(["task", *methods], [
        [t, *(_hindsight_cell(data["tasks"][t]["methods"][m]) for m in methods)]
        for t in tasks])
    reasons = _md(["task", "dyesp-es stop decisions by rung (all seeds)"], [
        [t, ", ".join(f"{k.removeprefix('stop@')}: {v}" for k, v in
                      data["tasks"][t]["methods"].get("dyesp-es", {}).get("notes", {}).items())]
        for t in tasks]) if "dyesp-es" in methods else ""
    md = _document(table, quality, walls, reasons, hindsight, data)
    return table, {"markdown": md, "json": data}


def _stop_cell(s: dict[str, Any]) -> str:
    if not s["n_seeds"]:
        return ""
    return f"{s['n_stopped_top5']}/{s['n_stopped']} of {s['n_trials']}"


def _hindsight_cell(s: dict[str, Any]) -> str:
    if not s["n_seeds"] or s.get("hindsight_median") is None:
        return ""
    h = s["hindsight_median"]
    return f"{_fmt(h)} ({s['median'] / h:.2f}x)" if h > 0 else _fmt(h)


def _wall_cell(s: dict[str, Any]) -> str:
    if not s["n_seeds"]:
        return ""
    walls = list(s["wall_s_per_seed"].values())
    return f"{s['wall_s_median']:.1f} ({min(walls):.1f}-{max(walls):.1f})"


def _md(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _document(table: str, quality: str, walls: str, reasons: str, hindsight: str,
              data: dict) -> str:
    ver = ", ".join(f"{k} {v}" for k, v in sorted(data["versions"].items()))
    dehb_ver = data.get("dehb_versions")
    parts = [
        "# Early stopping: epochs to target",
        "",
        f"Command: `{data['command']}` ({data['created']}, Python {data['python']}; {ver}"
        + (f"; DEHB venv: {dehb_ver}" if dehb_ver else "") + ").",
        "",
        "Epochs consumed by all trials (one worker, sequential) until a trial trained to the "
        "maximum fidelity reaches the target (top 0.5 % at full fidelity, the quality "
        "benchmark's `Task.target`). Stopped trials pay the epochs they ran; restarts "
        "(SMAC/DEHB/Hyperband-style re-evaluations at a higher budget) pay the whole budget "
        "again. Budget: 100 full trainings' worth of epochs; a run that never reaches the "
        "target is censored and counts as the budget in the median and IQR "
        "(`> budget` when the median itself is censored). Cells: median (IQR) reached/seeds.",
        "",
        table,
        "",
        "## Stop quality",
        "",
        "Over all seeds: `top5/stopped of trials` = stopped trials (never trained to the maximum "
        "fidelity; for SMAC/DEHB a configuration only ever evaluated below it) that would have "
        "ended in the top 5 % of the task at full fidelity / stopped trials / all trials.",
        "",
        quality,
        "",
        reasons,
        "",
        "## Headroom: the same proposals with perfect stop decisions",
        "",
        "Median over seeds of the epochs each run's own configurations, in its own order, would "
        "have cost had every one that does not beat all earlier ones at full fidelity been "
        "stopped after the first step (the ledger's `hindsight_epochs_to_target`), and in "
        "brackets the method's median over it. The bracket is what the method's stop decisions "
        "cost (1.00x: perfect; a full-fidelity method's shows what early stopping could save on "
        "its proposals); the median itself is what its proposals cost even so. "
        "Censored at the budget.",
        "",
        hindsight,
        "",
        "## Wall time per run (s)",
        "",
        "Median (min-max) over seeds, one single-threaded worker process per run.",
        "",
        walls,
    ]
    if data["notes"]:
        parts += ["", "## Notes", "", *(f"- {n}" for n in data["notes"])]
    if data["failures"]:
        parts += ["", "## Failed runs", "", *(f"- {f}" for f in data["failures"])]
    return "\n".join(parts) + "\n"


def write(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "multifidelity.md").write_text(result["markdown"])
    with open(out / "multifidelity.json", "w") as fh:
        json.dump(result["json"], fh, indent=1, sort_keys=True)
        fh.write("\n")
