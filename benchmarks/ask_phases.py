"""Where one client's ask spends its time, phase by phase (`python -m benchmarks.ask_phases`).

The load benchmark times asks from outside the server; this one opens them up. It runs the real
app in process (FastAPI's TestClient: routing, validation, the use cases, the database; auth and
rate limits off, retraining off) on a SQLite file or a fresh PostgreSQL database, with one study
of the load benchmark's HAS-like space prefilled with ``--trials`` finished random trials
(`benchmarks.load.prefill_dyesp`) and a pruner trained on them and stored as the study's active
version (`service.pruner_training.retrain`, as the worker would). Then one sequential client runs
``--asks`` ask -> tell pairs, the first ``--warmup`` of them unrecorded. Timers wrap, for the
run only, the service's own functions:

- *draft*: `proposals.draft`, the engine's decision outside the study lock, which holds
  *draft/history load* (`HistoryCache.load`), *draft/pruner lookup* (`PrunerStore.for_ask`)
  and *draft/engine* (`propose`);
- under the lock: *lock* (taking it, `ask_tell._lock`), its own *history load*, a *pruner
  lookup* and *engine* call when the draft did not hold, and *recording* the trial
  (`FreshTrials._record`);
- *other*: the rest of the use case (`ask_tell.ask`): the commit, the quota and state checks;
- *HTTP*: the request as the client saw it, less the use case (here the TestClient's in-process
  transport, FastAPI's routing, validation and serialisation; uvicorn's socket work is not in
  it); *tell*: the tell request.

Each ask is labelled with the strategy its trial was proposed by and whether the pruner was
consulted (its prediction was recorded), so the slow kind of ask shows apart. In-process timings
on a shared machine drift from run to run: compare phases within one run, as shares.
Writes benchmarks/results/ask_phases.md and .json (see ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402

from benchmarks.load import (  # noqa: E402
    ADMIN_URL,
    drop_database,
    prefill_configs,
    prefill_dyesp,
    recreate_database,
)
from benchmarks.retraining import HAS_SPACE, synthetic_loss  # noqa: E402

RESULTS = Path(__file__).parent / "results"
# The locked part's phases (the draft's are ``draft/...``), and the order the table lists all.
LOCKED = ("lock", "history load", "pruner lookup", "engine", "recording")
PHASES = ("draft", "draft/history load", "draft/pruner lookup", "draft/engine", *LOCKED,
          "other", "use case", "HTTP")


class PhaseClock:
    """Seconds spent in each named phase during the current request, summed over its calls. A
    phase called inside the draft is named ``draft/<phase>``, so the draft's history load and
    engine call stay apart from the locked part's."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.inside: list[str] = []

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            key = f"draft/{name}" if "draft" in clock.inside else name
            clock.inside.append(name)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                clock.current[key] += time.perf_counter() - start
                clock.inside.pop()

        return timed

    def take(self) -> dict[str, float]:
        """This request's phases, with *other*: the use case less its timed parts (the
        transaction's commit, the quota and state checks)."""
        out, self.current = dict(self.current), defaultdict(float)
        timed = sum(out.get(p, 0.0) for p in ("draft", *LOCKED))
        if "use case" in out:
            out["other"] = out["use case"] - timed
        return out


@contextlib.contextmanager
def timed_service(clock: PhaseClock) -> Iterator[None]:
    """The service's functions wrapped by ``clock`` for the duration (module attributes, which
    the callers look up on every call), restored after."""
    from service.caches.history import HistoryCache
    from service.caches.pruners import PrunerStore
    from service.usecases import ask_tell, proposals

    targets = [(proposals, "draft", "draft"), (proposals, "propose", "engine"),
               (HistoryCache, "load", "history load"), (PrunerStore, "for_ask", "pruner lookup"),
               (ask_tell, "_lock", "lock"), (proposals.FreshTrials, "_record", "recording"),
               (ask_tell, "ask", "use case")]
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in targets]
    try:
        for owner, attr, name in targets:
            setattr(owner, attr, clock.wrap(name, getattr(owner, attr)))
        yield
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh database URL: a SQLite file in a temporary folder, or a new PostgreSQL database
    (dropped after) on the server ``DYESP_TEST_POSTGRES_URL`` names (default: the load
    benchmark's, local)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'dyesp.db'}"
        return
    admin = os.environ.get("DYESP_TEST_POSTGRES_URL", ADMIN_URL)
    name = f"dyesp_ask_phases_{uuid.uuid4().hex[:8]}"
    url = recreate_database(admin, name)
    try:
        yield url
    finally:
        drop_database(admin, name)


def run(database_url: str, trials: int, asks: int, warmup: int) -> list[dict[str, Any]]:
    """One record per measured ask: its phases (ms), the tell (ms), its strategy and whether
    the pruner was consulted."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.config import Settings
    from service.pruner_training import retrain

    settings = Settings(database_url=database_url, auth="off", retrain_enabled=False,
                        reaper_interval_s=3600, rate_limit="", ask_rate_limit="")
    app = create_app(settings)
    clock = PhaseClock()
    records = []
    with TestClient(app) as http:
        response = http.post("/v1/studies", json={
            "name": "ask-phases", "direction": "minimize", "space": HAS_SPACE, "seed": 0,
            "deterministic": False})
        response.raise_for_status()
        study = response.json()["id"]
        prefill_dyesp(database_url, study, prefill_configs(trials, seed=trials))
        retrain(app.state.context.sessions, study, settings.retrain_policy, device="cpu")
        with timed_service(clock):
            for i in range(warmup + asks):
                clock.take()
                start = time.perf_counter()
                response = http.post(f"/v1/studies/{study}/ask", json={})
                ask_s = time.perf_counter() - start
                response.raise_for_status()
                phases = clock.take()
                (trial,) = response.json()["trials"]
                start = time.perf_counter()
                http.post(f"/v1/studies/{study}/trials/{trial['id']}/tell",
                          json={"value": synthetic_loss(trial["params"])}).raise_for_status()
                tell_s = time.perf_counter() - start
                if i < warmup:
                    continue
                proposal = trial.get("proposal") or {}
                phases["HTTP"] = ask_s - phases.get("use case", 0.0)
                records.append({
                    "number": trial["number"], "ask_ms": 1000 * ask_s, "tell_ms": 1000 * tell_s,
                    "phases_ms": {k: 1000 * v for k, v in phases.items()},
                    "strategy": proposal.get("strategy"),
                    "pruner_consulted": proposal.get("predicted") is not None})
    return records


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A row per kind of ask (strategy, pruner's say) and one for all: count, ask p50/p99, and
    each phase's median ms and mean share of the ask."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        say = "pruner" if r["pruner_consulted"] else "no pruner"
        groups[f"{r['strategy']}, {say}"].append(r)
    rows = []
    for label, group in [("all", records), *sorted(groups.items())]:
        asks = np.array([r["ask_ms"] for r in group])
        row: dict[str, Any] = {"asks": label, "n": len(group),
                               "ask_p50_ms": float(np.percentile(asks, 50)),
                               "ask_p99_ms": float(np.percentile(asks, 99)),
                               "tell_p50_ms": statistics.median(r["tell_ms"] for r in group),
                               "phases": {}}
        for phase in PHASES:
            values = [r["phases_ms"].get(phase, 0.0) for r in group]
            share = float(np.mean([v / r["ask_ms"] for v, r in zip(values, group, strict=True)]))
            row["phases"][phase] = {"median_ms": statistics.median(values), "share": share}
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    phases = PHASES
    lines = ["# Where one client's ask spends its time", "",
             f"Command: `{meta['command']}`  ",
             f"Database: {meta['database']}; {meta['trials']:,} prefilled trials, a pruner "
             f"trained on them, then {meta['asks']} measured ask -> tell pairs after "
             f"{meta['warmup']} unrecorded. {meta['machine']}.", "",
             "Median ms per ask of each phase (and its mean share of the ask). *draft*: the "
             "engine's decision outside the study lock, holding the three `draft/` phases. "
             "Then, under the lock: taking it, the history load, a pruner lookup and an engine "
             "call when the draft did not hold, recording the trial, and *other* (the rest of "
             "the use case: the commit, the quota and state checks). *HTTP*: the request as "
             "the client saw it, less the use case. Medians do not add up; shares do, "
             "about.", "",
             "| asks | n | ask p50 | ask p99 | tell p50 | " + " | ".join(phases) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(phases)]
    for row in rows:
        cells = [f"{row['phases'][p]['median_ms']:.1f} ({100 * row['phases'][p]['share']:.0f} %)"
                 for p in phases]
        lines.append(f"| {row['asks']} | {row['n']} | {row['ask_p50_ms']:.1f} | "
                     f"{row['ask_p99_ms']:.1f} | {row['tell_p50_ms']:.1f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10_000, help="prefilled finished trials")
    parser.add_argument("--asks", type=int, default=200, help="measured ask -> tell pairs")
    parser.add_argument("--warmup", type=int, default=20, help="unrecorded pairs first")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with database(args.database) as url:
        records = run(url, args.trials, args.asks, args.warmup)
    rows = summarise(records)
    given = sys.argv[1:] if argv is None else argv
    meta = {"command": " ".join(["python -m benchmarks.ask_phases", *given]),
            "database": args.database, "trials": args.trials, "asks": args.asks,
            "warmup": args.warmup,
            "machine": f"{os.cpu_count()} CPU cores, Python {platform.python_version()}"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ask_phases.json").write_text(json.dumps(
        {"meta": meta, "rows": rows, "records": records}, separators=(",", ":")))
    table = markdown(rows, meta)
    (args.out / "ask_phases.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
