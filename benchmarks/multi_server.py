"""Several API servers on one PostgreSQL and one Redis, with an RQ worker beside them
(`python -m benchmarks.multi_server`).

What ``docs/scaling.md`` says, shown with the processes one machine can start: ``--servers`` servers
(each ``--workers`` uvicorn processes, retraining on through Redis) and one ``dyesp worker``. Client
processes drive ``--studies`` seeded, non-deterministic studies, each request going to the next
server in turn (an ask on one server, its tell on another). Afterwards the database is checked:
every acknowledged tell is stored with its value, trial numbers are unique and dense per study,
no trial is left running, and the pruner was retrained by the RQ worker for every study. The same
run with one server is done first, side by side, as the throughput reference (on a 2-core machine
more servers add no cores: the point here is correctness, not speed).

Writes benchmarks/results/multi_server.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.load import ADMIN_URL, drop_database, recreate_database
from benchmarks.retraining import HAS_SPACE
from benchmarks.servers import ROOT, start_server

RESULTS = Path(__file__).parent / "results"
REDIS_URL = "redis://127.0.0.1:6379/14"  # a database of its own, flushed before each setup


def objective(params: dict[str, Any]) -> float:
    """Deterministic and instant: the servers' work is what is measured."""
    return sum((float(v) - 0.3) ** 2 if isinstance(v, (int, float)) else len(str(v)) * 0.01
               for v in params.values())


def client(urls: list[str], study_id: str, trials: int, index: int, out: Any) -> None:
    """Ask on one server, tell on the next: a trial crosses processes on purpose."""
    told: list[tuple[int, float]] = []
    turn = index
    with httpx.Client(timeout=60) as http:
        for _ in range(trials):
            asked = http.post(f"{urls[turn % len(urls)]}/v1/studies/{study_id}/ask",
                              json={"client_id": f"client-{index}"})
            asked.raise_for_status()
            trial = asked.json()["trials"][0]
            turn += 1
            value = objective(trial["params"])
            answer = http.post(f"{urls[turn % len(urls)]}/v1/studies/{study_id}/trials/"
                               f"{trial['id']}/tell", json={"value": value})
            answer.raise_for_status()
            turn += 1
            told.append((trial["id"], value))
    out.put(told)


def run_setup(servers: int, workers: int, studies: int, clients: int, trials: int) -> dict:
    """One deployment on a fresh database and Redis database: drive it, then check it."""
    import redis

    database = "dyesp_bench_multi"
    url = recreate_database(ADMIN_URL, database)
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {"DYESP_REDIS_URL": REDIS_URL}
    started = [start_server(url, workers=workers, retrain=True, env=env) for _ in range(servers)]
    worker = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"], cwd=ROOT,
        env=dict(os.environ, DYESP_DATABASE_URL=url, DYESP_REDIS_URL=REDIS_URL),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    urls = [s.url for s in started]
    try:
        with httpx.Client(timeout=60) as http:
            ids = [http.post(f"{urls[0]}/v1/studies", json={
                "name": f"multi-{i}", "space": HAS_SPACE, "seed": i,
                "deterministic": False}).raise_for_status().json()["id"]
                for i in range(studies)]
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        procs = [ctx.Process(target=client, args=(urls, ids[c % studies], trials, c, queue))
                 for c in range(clients)]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        told = [pair for _ in procs for pair in queue.get(timeout=1800)]
        elapsed = time.perf_counter() - t0
        for p in procs:
            p.join()
        time.sleep(5)  # the worker finishes the retrainings the last tells made due
        checks = check(url, ids, told)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        for s in started:
            s.stop()
        drop_database(ADMIN_URL, database)
    return {"servers": servers, "workers_per_server": workers, "studies": studies,
            "clients": clients, "pairs": len(told), "pairs_per_s": len(told) / elapsed, **checks}


def check(url: str, study_ids: list[str], told: list[tuple[int, float]]) -> dict:
    """What the database holds against what the clients were told was stored."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT id, study_id, number, state, value FROM trials WHERE study_id = ANY(:ids)"),
            {"ids": study_ids}).all()
        versions = dict(connection.execute(text(
            "SELECT study_id, count(*) FROM pruner_models WHERE study_id = ANY(:ids) "
            "GROUP BY study_id"), {"ids": study_ids}).all())
    engine.dispose()
    stored = {r.id: r for r in rows}
    lost = sum(1 for trial_id, value in told
               if trial_id not in stored or stored[trial_id].state != "complete"
               or stored[trial_id].value != value)
    dense = all(sorted(r.number for r in rows if r.study_id == s)
                == list(range(sum(1 for r in rows if r.study_id == s))) for s in study_ids)
    return {"acknowledged_tells": len(told), "lost_or_changed": lost,
            "trials_stored": len(rows), "numbers_unique_and_dense": dense,
            "left_running": sum(1 for r in rows if r.state == "running"),
            "studies_retrained": sum(1 for s in study_ids if versions.get(s, 0) > 0),
            "pruner_versions": sum(versions.values())}


def render(rows: list[dict], command: str) -> str:
    head = ("| servers x workers | clients | pairs | pairs/s | tells lost or changed | numbers "
            "unique and dense | left running | studies retrained (RQ) | pruner versions |")
    lines = ["# Several servers on one PostgreSQL and Redis (`python -m benchmarks.multi_server`)",
             "", f"Command: `{command}`; {time.strftime('%Y-%m-%dT%H:%M:%S')}. Each client asks on "
             "one server and tells on the next; one `dyesp worker` retrains through Redis. "
             "Pairs/s on this 2-core machine are a reference, not a scaling claim.", "",
             head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['servers']} x {r['workers_per_server']} | {r['clients']} | {r['pairs']} | "
            f"{r['pairs_per_s']:.1f} | {r['lost_or_changed']} | "
            f"{'yes' if r['numbers_unique_and_dense'] else 'NO'} | {r['left_running']} | "
            f"{r['studies_retrained']}/{r['studies']} | {r['pruner_versions']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.multi_server", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers per server")
    ap.add_argument("--studies", type=int, default=4)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--trials", type=int, default=40, help="trials per client")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rows = []
    for servers in sorted({1, args.servers}):
        row = run_setup(servers, args.workers, args.studies, args.clients, args.trials)
        print(json.dumps(row), flush=True)
        rows.append(row)
    command = "python -m benchmarks.multi_server " + " ".join(argv or sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "multi_server.md").write_text(render(rows, command.strip()))
    (args.out / "multi_server.json").write_text(json.dumps({"rows": rows}, indent=1))
    print(render(rows, command.strip()))
    return rows


if __name__ == "__main__":
    main()
