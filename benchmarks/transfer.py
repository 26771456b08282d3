"""`python -m benchmarks.transfer`: does a study get faster by learning from past studies?

Leave one dataset out within each family of the development suite (HPOLib, HPOBench,
NAS-Bench-201, LCBench). The prior studies are what a user actually has: finished 200-trial runs
of our own engine (`dyesp`, full default, one prior seed) on every *sibling* dataset of the family,
never the full tables and never the left-out dataset itself. On each left-out (DEV) task, for
seeds 0..N-1, trials-to-target (top 0.5%) of:

- `dyesp-cold`: our engine, no prior;
- `dyesp-transfer`: our engine with `prior=build_prior(space, sibling studies)`;
- `dyesp-negative`: our engine with the sibling studies' values negated (their best are reported
  as their worst): negative transfer, the prior points the wrong way;
- `tpe-warm`: Optuna's TPE (`TPESampler(seed=seed)`) warm-started the way its users do it:
  `study.enqueue_trial` of the top-3 configurations of each prior study (best of every study
  first, duplicates dropped), then the ordinary ask/tell loop;
- `tpe-cold`: plain Optuna TPE, for reference;
- `random`: uniform random search.

Runs stop once the target is reached (trials-to-target is all we score; `None` = not within
`--budget`). Runs with a prior go on to at least 20 trials so the prior's trust (the rank
correlation between its predictions and the study's results, weighted toward the study's better
half: `transfer.prior_trust`) is recorded after 5, 10 and 20 trials; that does not change their
trials-to-target.

Everything is cached as JSON under `<out>/runs/<task>/transfer-<method>/` (gitignored; the prior
runs under `transfer-prior/`), so a rerun computes only what is missing; the report
(`transfer.md`, `transfer.json`) is built from the cache. Same worker discipline as
`benchmarks.quality`: `--jobs` spawned processes, BLAS pinned to one thread each.

Examples:
    python -m benchmarks.transfer                                  # all DEV tasks, 10 seeds
    python -m benchmarks.transfer --tasks 'hpobench/car' --seeds 3
    python -m benchmarks.transfer --report-only
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import scores  # noqa: E402
from benchmarks import space as sp  # noqa: E402
from benchmarks.optimizers.optuna_tpe import OptunaTPE  # noqa: E402
from benchmarks.runner import (  # noqa: E402
    add_cache_options,
    finish,
    read_records,
    run_pool,
    select_methods,
    tasks_or_exit,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
METHODS: tuple[str, ...] = ("dyesp-cold", "dyesp-transfer", "dyesp-negative", "tpe-warm",
                            "tpe-cold", "random")
PRIOR_METHODS = ("dyesp-transfer", "dyesp-negative", "tpe-warm")  # results depend on the priors
TRUSTED = ("dyesp-transfer", "dyesp-negative")  # runs whose trust is recorded
PRIOR_ENGINE_METHOD = "dyesp"  # what produced the prior studies: our engine, full default
PRIOR_SEED = 1000  # one prior run per dataset; distinct from the evaluation seeds 0..N-1
TRUST_AT = (5, 10, 20)
WARM_TOP_K = 3  # tpe-warm enqueues this many best configurations of each prior study
# The bar of the issue.
BAR_TRIALS = 5  # median trials-to-target of dyesp-transfer on every left-out task
BAR_NEGATIVE = 1.2  # dyesp-negative at most 20% worse than dyesp-cold (medians)
BAR_AHEAD = 0.5  # "clearly ahead of tpe-warm": geometric mean ratio of medians at most this
# The negative/cold verdict's noise: a bootstrap interval of the ratio of medians (seeds resampled
# within each method), so "over the bar" can be told from "within noise of it".
BOOTSTRAP = 2000
BOOTSTRAP_LEVEL = 0.9


# --------------------------------------------------------------------------------- the families

def family(task_name: str) -> str:
    return task_name.split("/", 1)[0]


def siblings(task_name: str) -> list[str]:
    """Every other registered dataset of the task's family, in registry order."""
    from benchmarks.tasks.registry import FACTORIES

    return [n for n in FACTORIES if family(n) == family(task_name) and n != task_name]


# ------------------------------------------------------------------------------------ the cache

def prior_path(root: Path, task_name: str, prior_budget: int, prior_seed: int = PRIOR_SEED) -> Path:
    return (Path(root) / "runs" / task_name.replace("/", "__") / "transfer-prior"
            / f"seed{prior_seed}_b{prior_budget}.json")


def run_file(root: Path, task_name: str, method: str, seed: int, budget: int,
             prior_budget: int, prior_seed: int = PRIOR_SEED) -> Path:
    """Runs that use priors carry the priors' budget and seed in their name."""
    tail = f"_p{prior_budget}s{prior_seed}" if method in PRIOR_METHODS else ""
    return (Path(root) / "runs" / task_name.replace("/", "__") / f"transfer-{method}"
            / f"seed{seed}_b{budget}{tail}.json")


def _write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(record, fh, separators=(",", ":"))
    os.replace(tmp, path)


def compute_prior(root: str, task_name: str, prior_budget: int,
                  prior_seed: int = PRIOR_SEED) -> tuple[str, float]:
    """Worker: one `dyesp` run of `prior_budget` trials on `task_name`; keeps params and values."""
    from benchmarks.runner import execute

    rec = execute(task_name, PRIOR_ENGINE_METHOD, prior_seed, prior_budget)
    keep = ("task", "method", "seed", "budget", "direction", "wall_s", "created", "versions",
            "params", "values")
    path = prior_path(Path(root), task_name, prior_budget, prior_seed)
    _write_json(path, {k: rec[k] for k in keep})
    return str(path), rec["wall_s"]


Study = tuple[str, str, list[dict[str, Any]], list[float]]  # build_prior's (name, dir, cfgs, vals)


def load_studies(root: Path, task_name: str, prior_budget: int, flip: bool = False,
                 prior_seed: int = PRIOR_SEED) -> list[Study]:
    """The sibling datasets' prior runs as `build_prior` studies; `flip` negates the values
    (same direction: the prior's best are the sibling's worst). Never includes `task_name`."""
    studies: list[Study] = []
    for sib in siblings(task_name):
        with open(prior_path(root, sib, prior_budget, prior_seed)) as fh:
            rec = json.load(fh)
        assert rec["task"] == sib != task_name
        values = [-float(v) for v in rec["values"]] if flip else [float(v) for v in
                                                                   rec["values"]]
        studies.append((f"flipped:{sib}" if flip else sib, rec["direction"],
                        [dict(p) for p in rec["params"]], values))
    return studies


def warm_configs(task: Any, studies: Sequence[Study], k: int = WARM_TOP_K) -> list[dict]:
    """tpe-warm's enqueued configurations: the top `k` of each prior study in the target space
    (rank 1 of every study, then rank 2, ...), duplicates and unmappable ones dropped."""
    params = sp.parse(task.space)
    tops: list[list[dict]] = []
    for _, direction, configs, values in studies:
        sign = 1.0 if direction == "minimize" else -1.0
        order = sorted(range(len(values)), key=lambda i: (sign * values[i], i))
        ranked: list[dict] = []
        for i in order:
            mapped = _map_to(params, configs[i])
            if mapped is not None and mapped not in ranked:
                ranked.append(mapped)
            if len(ranked) >= k:
                break
        tops.append(ranked)
    out: list[dict] = []
    for rank in range(k):
        for ranked in tops:
            if rank < len(ranked) and ranked[rank] not in out:
                out.append(ranked[rank])
    return out


def _map_to(params: list[sp.Param], config: dict[str, Any]) -> dict[str, Any] | None:
    """A prior configuration in the target space, or None when an active param is missing or a
    categorical value is not a choice (within a family the spaces agree, so this is identity)."""
    out: dict[str, Any] = {}
    for p in params:
        if not sp.is_active(p, out):
            continue
        if p.name not in config:
            return None
        value = config[p.name]
        if p.type == "categorical":
            hits = [c for c in p.choices if sp.same_value(c, value)]
            if not hits:
                return None
            out[p.name] = hits[0]
        else:
            out[p.name] = p.snap(value)
    return out


# ----------------------------------------------------------------------------------- the methods

class TPEWarm(OptunaTPE):
    """Optuna TPE with the prior studies' best configurations enqueued before the first ask."""

    def __init__(self, task: Any, seed: int, configs: Sequence[dict[str, Any]]) -> None:
        super().__init__(task, seed)
        self.enqueued = [dict(c) for c in configs]
        for config in self.enqueued:
            self.study.enqueue_trial(config)


def make_method(method: str, task: Any, seed: int, root: Path, prior_budget: int,
                prior_seed: int = PRIOR_SEED) -> tuple[Any, Callable[[], float | None] | None,
                                                       dict[str, Any]]:
    """(optimizer, trust probe or None, facts for the record) for one evaluation run."""
    facts: dict[str, Any] = {}
    if method in ("dyesp-cold", "dyesp-transfer", "dyesp-negative"):
        from benchmarks.optimizers.dyesp import DyESP

        prior = None
        if method != "dyesp-cold":
            from service.engine.space import SearchSpace
            from service.engine.transfer import build_prior

            studies = load_studies(root, task.name, prior_budget, method == "dyesp-negative",
                                   prior_seed)
            facts["prior_studies"] = [s[0] for s in studies]
            prior = build_prior(SearchSpace.from_dict(task.space), studies)
            if prior is None:
                raise RuntimeError(f"build_prior returned None for {task.name}")
        opt = DyESP(task, seed, prior=prior)
        if prior is None:
            return opt, None, facts
        from service.engine.transfer import prior_trust

        return opt, (lambda: prior_trust(prior, opt.opt.space, opt.opt.history)), facts
    if method == "tpe-warm":
        studies = load_studies(root, task.name, prior_budget, prior_seed=prior_seed)
        facts["prior_studies"] = [s[0] for s in studies]
        opt = TPEWarm(task, seed, warm_configs(task, studies))
        facts["enqueued"] = opt.enqueued
        return opt, None, facts
    if method == "tpe-cold":
        return OptunaTPE(task, seed), None, facts
    if method == "random":
        from benchmarks.optimizers.random_search import RandomSearch

        return RandomSearch(task, seed), None, facts
    raise KeyError(f"unknown method {method!r}; known: {list(METHODS)}")


def run_to_target(optimizer: Any, task: Any, budget: int, min_trials: int = 0,
                  trust: Callable[[], float | None] | None = None,
                  trust_at: Sequence[int] = TRUST_AT) -> dict[str, Any]:
    """The `run_trials` loop (same snapping and active-param filtering), stopped once the target
    is reached and at least `min_trials` ran; `trust()` is read after each of `trust_at`."""
    params_list = sp.parse(task.space)
    values: list[float] = []
    configs: list[dict[str, Any]] = []
    strategies: list[Any] = []
    ask_s: list[float] = []
    trusts: dict[str, float | None] = {}
    best = None
    ttt = None
    for i in range(budget):
        t0 = time.perf_counter()
        raw = optimizer.ask()
        ask_s.append(time.perf_counter() - t0)
        params = sp.clean(params_list, raw)
        value = float(task.objective(params))
        optimizer.tell(raw, value)
        info = getattr(optimizer, "last_info", None)
        strategies.append(info.get("strategy") if isinstance(info, dict) else None)
        values.append(value)
        configs.append(params)
        best = value if best is None or task.better(value, best) else best
        if ttt is None and task.reached(best):
            ttt = i + 1
        if trust is not None and i + 1 in trust_at:
            trusts[str(i + 1)] = trust()
        if ttt is not None and i + 1 >= min_trials:
            break
    out: dict[str, Any] = {"trials_to_target": ttt, "n_trials": len(values), "values": values,
                           "params": configs, "ask_ms_mean": 1000 * float(np.mean(ask_s))}
    if any(s is not None for s in strategies):
        out["strategies"] = strategies
    if trust is not None:
        out["trust"] = trusts
    return out


def execute(root: str, task_name: str, method: str, seed: int, budget: int, prior_budget: int,
            prior_seed: int = PRIOR_SEED) -> dict[str, Any]:
    from benchmarks.runner import versions
    from benchmarks.tasks import get_task

    task = get_task(task_name)
    t0 = time.perf_counter()
    opt, trust, facts = make_method(method, task, seed, Path(root), prior_budget, prior_seed)
    min_trials = max(TRUST_AT) if trust is not None else 0
    trace = run_to_target(opt, task, budget, min_trials=min_trials, trust=trust)
    return {"task": task_name, "method": method, "seed": seed, "budget": budget,
            "prior_budget": prior_budget if method in PRIOR_METHODS else None,
            "prior_seed": prior_seed if method in PRIOR_METHODS else None,
            "direction": task.direction, "target": task.target,
            "wall_s": time.perf_counter() - t0, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "versions": versions(), **facts, **trace}


def run_and_store(root: str, task_name: str, method: str, seed: int, budget: int,
                  prior_budget: int, prior_seed: int = PRIOR_SEED) -> tuple[str, float]:
    rec = execute(root, task_name, method, seed, budget, prior_budget, prior_seed)
    path = run_file(Path(root), task_name, method, seed, budget, prior_budget, prior_seed)
    _write_json(path, rec)
    return str(path), rec["wall_s"]


def fill_cache(tasks: list[str], methods: list[str], seeds: int, budget: int, prior_budget: int,
               jobs: int, out: Path, force: bool = False,
               prior_seed: int = PRIOR_SEED) -> list[str]:
    """Prior runs first (every sibling of every requested task), then the evaluation runs."""
    t_start = time.time()
    needs_prior = any(m in PRIOR_METHODS for m in methods)
    prior_tasks: list[str] = []
    for t in tasks:
        for s in siblings(t) if needs_prior else []:
            if s not in prior_tasks:
                prior_tasks.append(s)
    todo_p = [(compute_prior, (str(out), s, prior_budget, prior_seed),
               f"prior {s} ({PRIOR_ENGINE_METHOD} seed {prior_seed}, {prior_budget} trials)")
              for s in prior_tasks if force or not prior_path(out, s, prior_budget,
                                                              prior_seed).exists()]
    if todo_p:
        print(f"{len(todo_p)} prior runs to compute with {jobs} worker(s)", flush=True)
    failures = run_pool(todo_p, jobs, t_start)
    missing = {s for s in prior_tasks if not prior_path(out, s, prior_budget, prior_seed).exists()}
    todo = []
    for t in tasks:  # task by task, so a partial cache already holds complete rows
        for m in methods:
            if m in PRIOR_METHODS and missing & set(siblings(t)):
                failures.append(f"{t} {m}: prior runs missing ({sorted(missing)})")
                continue
            for seed in range(seeds):
                if force or not run_file(out, t, m, seed, budget, prior_budget,
                                         prior_seed).exists():
                    todo.append((run_and_store,
                                 (str(out), t, m, seed, budget, prior_budget, prior_seed),
                                 f"{t} {m} seed {seed}"))
    if todo:
        print(f"{len(todo)} evaluation runs to compute with {jobs} worker(s)", flush=True)
    failures += run_pool(todo, jobs, t_start)
    return failures


# ----------------------------------------------------------------------------------- the report

def _median(xs: Sequence[float | None]) -> float | None:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.median(xs)) if xs else None


def summarise(out: Path, tasks: list[str], methods: list[str], seeds: int, budget: int,
              prior_budget: int, prior_seed: int = PRIOR_SEED) -> dict[str, Any]:
    from service.engine.transfer import TRUST_MIN

    summary: dict[str, Any] = {}
    for t in tasks:
        per: dict[str, Any] = {}
        for m in methods:
            recs = read_records(run_file(out, t, m, seed, budget, prior_budget, prior_seed)
                                for seed in range(seeds))
            if not recs:
                continue
            ttt = [r["trials_to_target"] for r in recs]
            med, q25, q75 = scores.median_iqr(scores.censored(ttt, budget))
            s: dict[str, Any] = {
                "n_seeds": len(recs), "seeds": [r["seed"] for r in recs], "trials_to_target": ttt,
                "reached": sum(x is not None for x in ttt), "ttt_median": med, "ttt_q25": q25,
                "ttt_q75": q75, "wall_s_total": float(sum(r["wall_s"] for r in recs)),
                "ask_ms_mean": float(np.mean([r["ask_ms_mean"] for r in recs]))}
            if "prior_studies" in recs[0]:
                s["prior_studies"] = recs[0]["prior_studies"]
            if m in TRUSTED:
                s["trust"] = {str(c): [r.get("trust", {}).get(str(c)) for r in recs]
                              for c in TRUST_AT}
                s["trust_median"] = {c: _median(v) for c, v in s["trust"].items()}
                s["prior_active_at"] = {
                    c: sum(1 for x in v if x is not None and x >= TRUST_MIN)
                    for c, v in s["trust"].items()}
                # The prior's incumbents: the trials proposed with strategy "transfer".
                inc = [[(i + 1, r["values"][i]) for i, st in enumerate(r.get("strategies", []))
                        if st == "transfer"] for r in recs]
                task = _task(t)
                s["incumbents"] = [[[n, v, task.reached(v)] for n, v in x] for x in inc]
                s["incumbent_hit_seeds"] = sum(any(task.reached(v) for _, v in x) for x in inc)
            if m == "tpe-warm":
                s["n_enqueued"] = len(recs[0].get("enqueued", []))
                task = _task(t)
                hits = [any(task.reached(v) for v in r["values"][:s["n_enqueued"]])
                        for r in recs]
                s["enqueued_hit_seeds"] = sum(hits)
            per[m] = s
        if per:
            task = _task(t)
            summary[t] = {"target": task.target, "direction": task.direction,
                          "siblings": siblings(t), "methods": per}
    return summary


def _task(name: str) -> Any:
    from benchmarks.tasks import get_task

    return get_task(name)


def ratio_interval(a: Sequence[int | None], b: Sequence[int | None], budget: int,
                   level: float = BOOTSTRAP_LEVEL, n: int = BOOTSTRAP) -> tuple[float, float]:
    """Bootstrap interval (percentile, ``level``) of median(a) / median(b) over the seeds,
    each method's seeds resampled on their own (the same seed number does not pair two runs:
    after the prior's first trials their trajectories differ). Seeded: the report is stable."""
    x, y = scores.censored(a, budget), scores.censored(b, budget)
    rng = np.random.default_rng(0)
    ratios = scores.bootstrap_medians(x, rng, n) / scores.bootstrap_medians(y, rng, n)
    lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _fmt(x: float, budget: int) -> str:
    return f">{budget}" if x > budget else f"{x:.0f}"


def _cell(s: dict | None, budget: int) -> str:
    if s is None:
        return ""
    return (f"{_fmt(s['ttt_median'], budget)} ({_fmt(s['ttt_q25'], budget)}-"
            f"{_fmt(s['ttt_q75'], budget)}) {s['reached']}/{s['n_seeds']}")


def _ratio(a: dict | None, b: dict | None, budget: int) -> str:
    if a is None or b is None:
        return ""
    ra, rb = a["ttt_median"], b["ttt_median"]
    if ra > budget and rb > budget:
        return "n/a"
    mark = ">" if ra > budget else "<" if rb > budget else ""
    return f"{mark}{ra / rb:.2f}"


def _trust_cell(s: dict | None) -> str:
    if s is None:
        return ""
    parts = []
    for c in TRUST_AT:
        v = s["trust_median"].get(str(c))
        parts.append("-" if v is None else f"{v:+.2f}")
    return " / ".join(parts)


def verdicts(summary: dict, budget: int) -> list[str]:
    lines = []
    tasks = [t for t in summary if "dyesp-transfer" in summary[t]["methods"]]
    if tasks:
        meds = {t: summary[t]["methods"]["dyesp-transfer"]["ttt_median"] for t in tasks}
        ok = [t for t in tasks if meds[t] <= BAR_TRIALS]
        pooled = float(np.median(np.concatenate([
            scores.censored(summary[t]["methods"]["dyesp-transfer"]["trials_to_target"], budget)
            for t in tasks])))
        lines.append(
            f"- **Median trials-to-target <= {BAR_TRIALS} with transfer**: "
            f"{'PASS' if len(ok) == len(tasks) else 'FAIL'}: met on {len(ok)}/{len(tasks)} "
            f"left-out tasks (pooled median over all task-seeds: {pooled:g})"
            + ("" if len(ok) == len(tasks) else
               "; above the bar: " + ", ".join(f"{t} ({_fmt(meds[t], budget)})"
                                               for t in tasks if t not in ok)) + ".")
    both = [t for t in tasks if "tpe-warm" in summary[t]["methods"]]
    if both:
        ratios, worse, wins = [], [], []
        for t in both:
            a = summary[t]["methods"]["dyesp-transfer"]
            b = summary[t]["methods"]["tpe-warm"]
            ratios.append(a["ttt_median"] / b["ttt_median"])
            if a["ttt_median"] > b["ttt_median"]:
                worse.append(t)
            ca = scores.censored(a["trials_to_target"], budget)
            cb = scores.censored(b["trials_to_target"], budget)
            n = min(len(ca), len(cb))  # same seeds 0..n-1 when complete
            wins += [1.0 if x < y else 0.5 if x == y else 0.0 for x, y in zip(ca[:n], cb[:n],
                                                                              strict=True)]
        gm = float(np.exp(np.mean(np.log(ratios))))
        ok = gm <= BAR_AHEAD and not worse
        lines.append(
            f"- **Clearly ahead of warm-started TPE** (geometric mean over tasks of the median "
            f"ratio transfer/tpe-warm <= {BAR_AHEAD}, and worse on no task): "
            f"{'PASS' if ok else 'FAIL'}: geometric mean {gm:.2f}, worse on {len(worse)}/"
            f"{len(both)}" + (f" ({', '.join(worse)})" if worse else "")
            + f"; per-seed win rate {np.mean(wins):.0%} (ties count half).")
    neg = [t for t in summary if {"dyesp-negative", "dyesp-cold"} <= set(summary[t]["methods"])]
    if neg:
        r = {t: summary[t]["methods"]["dyesp-negative"]["ttt_median"]
             / summary[t]["methods"]["dyesp-cold"]["ttt_median"] for t in neg}
        bad = [t for t in neg if r[t] > BAR_NEGATIVE]
        ci = {t: ratio_interval(summary[t]["methods"]["dyesp-negative"]["trials_to_target"],
                                summary[t]["methods"]["dyesp-cold"]["trials_to_target"], budget)
              for t in bad}
        lines.append(
            f"- **Negative transfer never more than {BAR_NEGATIVE - 1:.0%} worse than cold "
            f"start** (median ratio negative/cold <= {BAR_NEGATIVE} on every task): "
            f"{'PASS' if not bad else 'FAIL'}: within the bar on {len(neg) - len(bad)}/"
            f"{len(neg)} tasks, worst {max(r.values()):.2f}"
            + (f"; over the bar ({BOOTSTRAP_LEVEL:.0%} bootstrap interval over seeds): "
               + ", ".join(f"{t} ({r[t]:.2f}, {ci[t][0]:.2f}-{ci[t][1]:.2f})" for t in bad)
               if bad else "") + ".")
    rnd = [summary[t]["methods"]["random"]["ttt_median"] for t in summary
           if "random" in summary[t]["methods"]]
    if rnd:
        lines.append(f"- Reference: random search's median trials-to-target, median over tasks: "
                     f"{_fmt(float(np.median(rnd)), budget)} (the issue expects about 140).")
    return lines


def markdown(summary: dict, methods: list[str], budget: int, prior_budget: int,
             prior_seed: int, failures: list[str], wall: dict[str, float]) -> str:
    L = ["# DyESP transfer benchmark", ""]
    n_seeds = sorted({s["n_seeds"] for t in summary for s in summary[t]["methods"].values()})
    if len(n_seeds) > 1:  # say which cells have which: a mixed table is not one experiment
        cells = {n: [f"{t} {m}" for t in summary for m, s in summary[t]["methods"].items()
                     if s["n_seeds"] == n] for n in n_seeds[1:]}
        n_seeds_text = f"{n_seeds[0]}, except " + "; ".join(
            f"{n} for {', '.join(c)}" for n, c in cells.items())
    else:
        n_seeds_text = ", ".join(map(str, n_seeds))
    L.append(
        f"Leave one dataset out within each family; the prior studies are {prior_budget}-trial "
        f"runs of our engine (`{PRIOR_ENGINE_METHOD}`, seed {prior_seed}) on every sibling "
        f"dataset of the left-out one. Budget {budget} trials per run, stopped at the target "
        f"(top 0.5%); seeds per cell: {n_seeds_text}. Generated by "
        "`python -m benchmarks.transfer`.")
    L += ["", "## The bar", "", *verdicts(summary, budget), ""]

    def row(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    L += ["## Trials to target", "",
          "Median (IQR) over seeds; a run that never got there counts as > budget. `k/n` = "
          "seeds that reached the target.", ""]
    ratios = [("transfer/cold", "dyesp-transfer", "dyesp-cold"),
              ("negative/cold", "dyesp-negative", "dyesp-cold"),
              ("transfer/tpe-warm", "dyesp-transfer", "tpe-warm")]
    head = ["left-out task", "priors", *methods, *(r[0] for r in ratios)]
    L += [row(head), row(["---"] * len(head))]
    for t, st in summary.items():
        ms = st["methods"]
        cells = [t, str(len(st["siblings"]))]
        cells += [_cell(ms.get(m), budget) for m in methods]
        cells += [_ratio(ms.get(a), ms.get(b), budget) for _, a, b in ratios]
        L.append(row(cells))
    L.append("")

    if any(m in methods for m in TRUSTED):
        L += ["## What the trust signal did", "",
              "Trust = Spearman correlation between the prior's predictions and the new study's "
              "results, capped by the one over the study's better half once that holds 4 results "
              "(the prior's own incumbents left out of it; `transfer.prior_trust`), median over "
              "seeds after 5 / 10 / 20 trials; "
              "`active` = seeds whose prior was still in use after 20 trials (trust >= "
              "TRUST_MIN; below it the engine behaves as a cold start). `incumbents hit` = seeds "
              "in which one of the prior's incumbents (strategy `transfer`) reached the target; "
              "`enqueued hit` = the same for tpe-warm's enqueued configurations.", ""]
        head = ["left-out task", "transfer trust 5/10/20", "active", "incumbents hit",
                "negative trust 5/10/20", "active", "incumbents hit", "tpe-warm enqueued hit"]
        L += [row(head), row(["---"] * len(head))]
        for t, st in summary.items():
            ms = st["methods"]
            cells = [t]
            for m in TRUSTED:
                s = ms.get(m)
                cells += [_trust_cell(s),
                          f"{s['prior_active_at'][str(max(TRUST_AT))]}/{s['n_seeds']}" if s else "",
                          f"{s['incumbent_hit_seeds']}/{s['n_seeds']}" if s else ""]
            w = ms.get("tpe-warm")
            cells.append(f"{w['enqueued_hit_seeds']}/{w['n_seeds']} (of {w['n_enqueued']})"
                         if w else "")
            L.append(row(cells))
        L.append("")

    L += ["## Notes", "",
          "- Priors per left-out task: " + "; ".join(
              f"{t}: {', '.join(st['siblings'])}" for t, st in summary.items()) + ".",
          "- `dyesp-negative` uses the same sibling runs with every value negated (the prior "
          "ranks each sibling's worst configurations as its best), the adversarial end of "
          "negative transfer; priors from an unrelated family share no parameter names with "
          "these spaces, so `build_prior` would map nothing and the run would be a cold start.",
          f"- `tpe-warm` enqueues the top {WARM_TOP_K} configurations of each prior study "
          "(rank 1 of every study first), as Optuna users warm-start; TPE itself is default.",
          "- Runs stop at the target; runs with a prior continue to 20 trials so the trust is "
          "recorded at 5 / 10 / 20 (their trials-to-target is unaffected).",
          "- The prior's incumbents and tpe-warm's enqueued list do not depend on the run seed "
          "(one prior run per sibling dataset), so the seeds vary only what comes after them.",
          "- Compute (sum of run wall times, shared 2-core machine): "
          + ", ".join(f"{m} {v / 60:.1f} min" for m, v in wall.items()) + "."]
    if failures:
        L.append(f"- {len(failures)} run(s) failed in the last invocation: "
                 + "; ".join(failures[:5]) + (" ..." if len(failures) > 5 else ""))
    L.append("")
    return "\n".join(L)


def build_report(out: Path, tasks: list[str], methods: list[str], seeds: int, budget: int,
                 prior_budget: int, prior_seed: int = PRIOR_SEED,
                 failures: list[str] | None = None) -> str:
    out = Path(out)
    summary = summarise(out, tasks, methods, seeds, budget, prior_budget, prior_seed)
    wall: dict[str, float] = {}
    for st in summary.values():
        for m, s in st["methods"].items():
            wall[m] = wall.get(m, 0.0) + s["wall_s_total"]
    priors = {s for st in summary.values() for s in st["siblings"]}
    for s in sorted(priors):
        path = prior_path(out, s, prior_budget, prior_seed)
        if path.exists():
            with open(path) as fh:
                wall["prior runs"] = wall.get("prior runs", 0.0) + json.load(fh)["wall_s"]
    md = markdown(summary, [m for m in methods if any(m in st["methods"]
                                                      for st in summary.values())],
                  budget, prior_budget, prior_seed, failures or [], wall)
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.md").write_text(md)
    with open(out / "transfer.json", "w") as fh:
        json.dump({"budget": budget, "prior_budget": prior_budget, "prior_seed": prior_seed,
                   "prior_method": PRIOR_ENGINE_METHOD, "trust_at": list(TRUST_AT),
                   "bar": {"trials": BAR_TRIALS, "negative_vs_cold": BAR_NEGATIVE,
                           "transfer_vs_tpe_warm": BAR_AHEAD},
                   "wall_s": wall, "results": summary}, fh, separators=(",", ":"))
    return md


# ------------------------------------------------------------------------------------- the CLI

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.transfer", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", help="left-out tasks: comma list of names or globs "
                                    "(default: the dev suite)")
    ap.add_argument("--methods", help=f"comma list of {', '.join(METHODS)} (default: all)")
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    ap.add_argument("--budget", type=int, default=200, help="max trials per run (default 200)")
    ap.add_argument("--prior-budget", type=int, default=200,
                    help="trials per prior study (default 200)")
    ap.add_argument("--prior-seed", type=int, default=PRIOR_SEED,
                    help=f"seed of the prior runs (default {PRIOR_SEED})")
    add_cache_options(ap, DEFAULT_OUT)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tasks = tasks_or_exit(args.tasks)
    methods = select_methods(args.methods, list(METHODS))
    failures: list[str] = []
    if not args.report_only:
        failures = fill_cache(tasks, methods, args.seeds, args.budget, args.prior_budget,
                              args.jobs, args.out, args.force, args.prior_seed)
    md = build_report(args.out, tasks, methods, args.seeds, args.budget, args.prior_budget,
                      args.prior_seed, failures)
    return finish(md, failures)


if __name__ == "__main__":
    sys.exit(main())
