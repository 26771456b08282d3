"""Tenant isolation benchmark (`python -m benchmarks.isolation`): how much does one tenant flooding
asks slow another tenant's asks, with admission control (service/admission.py) off and on?

A real server (uvicorn, ``--workers`` processes, auth on, no Redis: in-process rate limits) on a
fresh PostgreSQL database; each scenario gets a fresh server and fresh studies, both prefilled to
``--history`` finished trials so every ask runs the model-based engine. Tenant B (the victim) is
one client doing ``--pairs`` sequential ask -> tell pairs on its own study; tenant A (the flooder)
is ``--flooders`` client processes looping ask -> tell on A's study, started (and given
``--ramp-s``) before B's clock starts, stopped when B is done. Scenarios:

* alone-off / alone-on: B alone, admission off / on (the baselines of the ratios);
* flood-off: A flooding, admission off (rate limits empty, the ask gate disabled);
* flood-on: A flooding, admission on (the defaults); A's clients honour 429's Retry-After, as the
  SDK does;
* flood-on-hostile: the same, but A's clients retry a 429 at once (an attacker ignoring it).

B is a well-behaved client: a 429 is retried after its Retry-After, and B's ask latency includes
such waits (what a user sees). Clients are httpx with one keep-alive connection each, spawned
processes sharing the machine's cores with the server and PostgreSQL. Writes
benchmarks/results/isolation.md and isolation.json (see ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import servers
from benchmarks.load import (
    ADMIN_URL,
    RESULTS,
    _git_state,
    _postgres_version,
    drop_database,
    objective,
    percentile,
    prefill_configs,
    prefill_dyesp,
    recreate_database,
)
from benchmarks.retraining import HAS_SPACE
from benchmarks.servers import Server

SERVER_LOG = Path(tempfile.gettempdir()) / "dyesp-isolation-server.log"


@dataclass(frozen=True)
class Scenario:
    name: str
    flooding: bool
    admission: bool
    hostile: bool = False  # flooders retry a 429 at once instead of after its Retry-After


SCENARIOS = {s.name: s for s in (
    Scenario("alone-off", False, False), Scenario("alone-on", False, True),
    Scenario("flood-off", True, False), Scenario("flood-on", True, True),
    Scenario("flood-on-hostile", True, True, hostile=True))}


def app_without_admission():  # type: ignore[no-untyped-def]
    """``uvicorn --factory`` target of the admission-off scenarios: the rate limits come empty
    from the environment, and the ask gate is switched off."""
    from service.admission import FairGate
    from service.app import create_app

    app = create_app()
    app.state.context.engine_gate = FairGate(capacity=None)
    return app


def start_server(database_url: str, admission: bool, workers: int) -> Server:
    """``benchmarks.servers.start_server`` with auth on and admission control chosen: the
    default rate limits and ask gate, or none."""
    limits = {name: None if admission else "" for name in ("DYESP_RATE_LIMIT",
                                                           "DYESP_ASK_RATE_LIMIT")}
    app = "service.asgi:app" if admission else "benchmarks.isolation:app_without_admission"
    return servers.start_server(database_url, workers=workers, auth=True, app=app,
                                factory=not admission, env=limits, log=SERVER_LOG)


def new_tenant(database_url: str, url: str, label: str, history: int,
               seed: int) -> tuple[str, str]:
    """A fresh owner with a key and a study prefilled to ``history`` finished trials."""
    import httpx

    from service.db import key_queries
    from service.db.session import make_engine, make_sessionmaker, transaction

    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            key = key_queries.create_key(session, label, "bench").secret
    finally:
        engine.dispose()
    response = httpx.post(f"{url}/v1/studies", headers={"Authorization": f"Bearer {key}"},
                          json={"name": label, "space": HAS_SPACE, "seed": 0}, timeout=30)
    response.raise_for_status()
    study = response.json()["id"]
    if history:
        prefill_dyesp(database_url, study, prefill_configs(history, seed=seed))
    return key, study


# --- clients (spawned processes) ---------------------------------------------------------------

def _retry_after(response: Any) -> float:
    try:
        return max(float(response.headers.get("Retry-After", "1")), 0.0)
    except ValueError:
        return 1.0


def _victim(url: str, key: str, study: str, pairs: int, budget_s: float, go: Any,
            results: Any) -> None:
    """Sequential ask -> tell; a 429 is waited out (Retry-After) and counted in the latency."""
    import httpx

    asks: list[float] = []
    refused, errors = 0, []
    with httpx.Client(base_url=url, timeout=120,
                      headers={"Authorization": f"Bearer {key}"}) as http:
        for _ in range(3):  # warm-up: connection, caches (not recorded)
            trial = http.post(f"/v1/studies/{study}/ask", json={}).json()["trials"][0]
            http.post(f"/v1/studies/{study}/trials/{trial['id']}/tell",
                      json={"value": objective(trial["params"])})
        results.put(("ready", None))
        go.wait()
        deadline = time.monotonic() + budget_s
        while len(asks) < pairs and time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                while True:
                    response = http.post(f"/v1/studies/{study}/ask", json={})
                    if response.status_code != 429:
                        break
                    refused += 1
                    time.sleep(_retry_after(response))
                response.raise_for_status()
                asks.append(time.monotonic() - t0)
                trial = response.json()["trials"][0]
                http.post(f"/v1/studies/{study}/trials/{trial['id']}/tell",
                          json={"value": objective(trial["params"])}).raise_for_status()
            except Exception as error:
                errors.append(repr(error)[:300])
    results.put(("victim", {"asks": asks, "refused": refused, "errors": errors}))


def _flooder(url: str, key: str, study: str, hostile: bool, go: Any, stop: Any,
             results: Any) -> None:
    """ask -> tell as fast as the server answers until ``stop``."""
    import httpx

    served, refused, errors = 0, 0, []
    with httpx.Client(base_url=url, timeout=120,
                      headers={"Authorization": f"Bearer {key}"}) as http:
        results.put(("ready", None))
        go.wait()
        start = time.monotonic()
        while not stop.is_set():
            try:
                response = http.post(f"/v1/studies/{study}/ask", json={})
                if response.status_code == 429:
                    refused += 1
                    if not hostile:
                        stop.wait(_retry_after(response))
                    continue
                response.raise_for_status()
                served += 1
                trial = response.json()["trials"][0]
                http.post(f"/v1/studies/{study}/trials/{trial['id']}/tell",
                          json={"value": objective(trial["params"])}).raise_for_status()
            except Exception as error:
                errors.append(repr(error)[:300])
        took = time.monotonic() - start
    results.put(("flooder", {"served": served, "refused": refused, "errors": errors,
                             "seconds": took}))


def run_scenario(scenario: Scenario, args: argparse.Namespace, database_url: str) -> dict:
    context = multiprocessing.get_context("spawn")
    n_flooders = args.flooders if scenario.flooding else 0
    server = start_server(database_url, scenario.admission, args.workers)
    try:
        victim_key, victim_study = new_tenant(database_url, server.url,
                                              f"victim-{scenario.name}", args.history, seed=1)
        if n_flooders:
            flood_key, flood_study = new_tenant(database_url, server.url,
                                                f"flooder-{scenario.name}", args.history, seed=2)
        flood_go, victim_go, stop = context.Event(), context.Event(), context.Event()
        results = context.Queue()
        procs = [context.Process(target=_victim, daemon=True, args=(
            server.url, victim_key, victim_study, args.pairs, args.budget_s, victim_go, results))]
        procs += [context.Process(target=_flooder, daemon=True, args=(
            server.url, flood_key, flood_study, scenario.hostile, flood_go, stop, results))
            for _ in range(n_flooders)]
        for proc in procs:
            proc.start()
        for _ in procs:
            kind, _ = results.get(timeout=300)
            assert kind == "ready", kind
        flood_go.set()
        if n_flooders:
            time.sleep(args.ramp_s)
        victim_go.set()
        t0 = time.monotonic()
        kind, victim = results.get(timeout=args.budget_s + 300)
        assert kind == "victim", kind
        victim_s = time.monotonic() - t0
        stop.set()
        flooders = [results.get(timeout=300)[1] for _ in range(n_flooders)]
        for proc in procs:
            proc.join(timeout=30)
    finally:
        server.stop()
    return summarise(scenario, victim, flooders, victim_s, args)


def summarise(scenario: Scenario, victim: dict, flooders: list[dict], victim_s: float,
              args: argparse.Namespace) -> dict:
    asks = victim["asks"]
    out: dict[str, Any] = {
        **asdict(scenario), "flooders": args.flooders if scenario.flooding else 0,
        "victim": {"pairs": len(asks), "seconds": round(victim_s, 1),
                   "ask_p50_ms": round(percentile(asks, 0.5), 1) if asks else None,
                   "ask_p99_ms": round(percentile(asks, 0.99), 1) if asks else None,
                   "refused_429": victim["refused"], "errors": victim["errors"][:5],
                   "n_errors": len(victim["errors"])}}
    if flooders:
        seconds = max(f["seconds"] for f in flooders)
        out["flooder"] = {
            "served_per_s": round(sum(f["served"] for f in flooders) / seconds, 1),
            "refused_per_s": round(sum(f["refused"] for f in flooders) / seconds, 1),
            "errors": [e for f in flooders for e in f["errors"]][:5],
            "n_errors": sum(len(f["errors"]) for f in flooders)}
    return out


# --- report ------------------------------------------------------------------------------------

def ratios(results: list[dict]) -> dict[str, float | None]:
    """B's ask p50 flooded / B's ask p50 alone, with admission off and on."""
    p50 = {r["name"]: r["victim"]["ask_p50_ms"] for r in results}
    out: dict[str, float | None] = {}
    for flooded, alone in (("flood-off", "alone-off"), ("flood-on", "alone-on"),
                           ("flood-on-hostile", "alone-on")):
        if p50.get(flooded) and p50.get(alone):
            out[flooded] = round(p50[flooded] / p50[alone], 2)
    return out


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:,.{digits}f}"


def render(report: dict) -> str:
    meta, rows = report["meta"], report["results"]
    lines = [
        "# Tenant isolation: one tenant flooding asks, another tenant's ask latency", "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['cpus']} CPU cores, {meta['platform']}, Python {meta['python']}, "
        f"PostgreSQL {meta['postgres']}. Code: {meta['git']}.  ",
        f"Server: uvicorn with {meta['workers']} worker process(es), auth on, retraining off, no "
        "Redis (rate limits counted per process), one BLAS thread; a fresh server and fresh "
        f"studies per scenario, each study prefilled to {meta['history']} finished trials.  ",
        f"Victim B: 1 client, {meta['pairs']} sequential ask -> tell pairs (at most "
        f"{meta['budget_s']:.0f} s), a 429 waited out per its Retry-After and counted in the "
        f"latency. Flooder A: {meta['flooders']} client processes looping ask -> tell, started "
        f"{meta['ramp_s']:.0f} s before B's clock. Admission on = the defaults "
        f"(DYESP_RATE_LIMIT={meta['rate_limit']!r}, DYESP_ASK_RATE_LIMIT="
        f"{meta['ask_rate_limit']!r}, ask gate capacity {meta['ask_concurrency']}, "
        f"{meta['max_waiters']} waiters per owner, {meta['max_wait_s']:g} s wait bound); "
        "off = empty limits and no gate. Clients share the machine's cores with the server and "
        "PostgreSQL.  ",
        f"Started {meta['started']}, took {meta['took_s'] / 60:.1f} min; load average "
        f"(1, 5, 15 min) {meta['loadavg_start']} at the start, {meta['loadavg_end']} at the end.",
        "",
        "| scenario | admission | A clients | A on 429 | B pairs | B ask p50 ms | B ask p99 ms | "
        "B p50 / alone | B 429s | A asks served/s | A 429s/s |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratio = report["ratios"]
    for r in rows:
        v, f = r["victim"], r.get("flooder", {})
        on_429 = "" if not (r["flooders"] and r["admission"]) else (
            "retry at once" if r["hostile"] else "wait Retry-After")
        lines.append(
            f"| {r['name']} | {'on' if r['admission'] else 'off'} | {r['flooders']} | {on_429} | "
            f"{v['pairs']} | {_fmt(v['ask_p50_ms'])} | {_fmt(v['ask_p99_ms'])} | "
            f"{_fmt(ratio.get(r['name']), 2) + 'x' if r['name'] in ratio else ''} | "
            f"{v['refused_429']} | {_fmt(f.get('served_per_s'))} | "
            f"{_fmt(f.get('refused_per_s'))} |")
    errors = [(r["name"], r["victim"]["n_errors"], r.get("flooder", {}).get("n_errors", 0))
              for r in rows]
    lines += ["", "Errors (non-2xx other than 429, transport): " + ", ".join(
        f"{name}: B {b}, A {a}" for name, b, a in errors) + "."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.isolation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--flooders", type=int, default=16, help="flooder client processes")
    parser.add_argument("--pairs", type=int, default=100, help="victim's measured pairs")
    parser.add_argument("--budget-s", type=float, default=40.0,
                        help="victim's wall-time limit per scenario")
    parser.add_argument("--ramp-s", type=float, default=3.0,
                        help="flooding before the victim's clock starts")
    parser.add_argument("--history", type=int, default=200,
                        help="finished trials prefilled into each study")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--admin-url", default=os.environ.get("DYESP_TEST_POSTGRES_URL",
                                                              ADMIN_URL))
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> dict:
    from service.admission import ASK_CONCURRENCY, MAX_WAIT_S, MAX_WAITERS_PER_OWNER
    from service.config import Settings
    from service.db import migrate
    from service.db.session import make_engine

    args = parse_args(argv)
    command = "python -m benchmarks.isolation " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S"), time.monotonic()
    load_start = [round(x, 2) for x in os.getloadavg()]
    git = _git_state()
    name = f"dyesp_isolation_{os.getpid()}"
    database_url = recreate_database(args.admin_url, name)
    try:
        engine = make_engine(database_url)
        migrate.upgrade(engine)
        engine.dispose()
        results = []
        for scenario_name in args.scenarios.split(","):
            print(f"isolation: {scenario_name} ...", flush=True)
            results.append(run_scenario(SCENARIOS[scenario_name], args, database_url))
            print(f"  {json.dumps(results[-1])}", flush=True)
    finally:
        if not args.keep_database:
            drop_database(args.admin_url, name)
    defaults = Settings.model_fields
    report = {
        "meta": {"command": command, "cpus": os.cpu_count(),
                 "platform": platform.platform(terse=True), "python": platform.python_version(),
                 "postgres": _postgres_version(args.admin_url), "git": git,
                 "workers": args.workers, "history": args.history, "pairs": args.pairs,
                 "budget_s": args.budget_s, "flooders": args.flooders, "ramp_s": args.ramp_s,
                 "rate_limit": defaults["rate_limit"].default,
                 "ask_rate_limit": defaults["ask_rate_limit"].default,
                 "ask_concurrency": ASK_CONCURRENCY, "max_waiters": MAX_WAITERS_PER_OWNER,
                 "max_wait_s": MAX_WAIT_S, "started": started,
                 "took_s": round(time.monotonic() - t0, 1), "loadavg_start": load_start,
                 "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "results": results, "ratios": ratios(results)}
    text = render(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "isolation.md").write_text(text)
    (args.out / "isolation.json").write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
