"""What an intermediate report costs as a study grows (`python -m benchmarks.report_latency`).

A real server (uvicorn, one worker) on a fresh PostgreSQL database. For each history size H (100
and 10,000 by default) a study with an epoch fidelity of 1-50 is prefilled with H finished trials
of 50 reported steps each (H x 50 rows in ``trial_reports``, written with COPY), its stopping
policy calibrated by one real tell, and then ``clients`` training jobs (one process each) run
``--trials`` trials: ask, report steps 1..50 until told to stop, tell. Every report and tell is
timed from the client (a tell may recalibrate the stopping policy); rung steps (1, 3, 9, 27: the
ones that read the values at their step and the policy) are summarised apart from the others. The
small study runs in the same invocation, so the growth is a ratio taken side by side.

Writes benchmarks/results/report_latency.{md,json}.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.load import ADMIN_URL, drop_database, recreate_database
from benchmarks.servers import start_server

RESULTS = Path(__file__).parent / "results"
STEPS = 50
FIDELITY = {"name": "epoch", "min": 1, "max": STEPS}
RUNGS = (1, 3, 9, 27)
SPACE = {"params": [
    {"name": "depth", "type": "int", "low": 1, "high": 8},
    {"name": "width", "type": "int", "low": 16, "high": 1024, "log": True},
    {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    {"name": "cell", "type": "categorical", "choices": ["conv3", "conv1", "skip", "pool"]}]}


def curve(final: float, noise: random.Random) -> list[float]:
    """A learning curve (minimised loss) decaying towards ``final``, with noise that shrinks."""
    return [final + (1.0 - final) * math.exp(-step / 8) + noise.gauss(0, 0.02) / step
            for step in range(1, STEPS + 1)]


def prefill(database_url: str, study_id: str, n: int, seed: int) -> None:
    """``n`` finished trials with 50 reports each, as ask/report/tell would leave them."""
    from sqlalchemy import text, update

    from service.db import study_queries, trial_queries
    from service.db.models import Study, Trial, utcnow
    from service.db.session import make_engine, make_sessionmaker, transaction
    from service.engine.early_stopping import Fidelity

    rng = random.Random(seed)
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            # a bulk load, not a request: the service's statement timeout does not apply
            session.execute(text("SET LOCAL statement_timeout = 0"))
            owner = session.get(Study, study_id).owner_id
            lock = study_queries.lock_study(session, owner, study_id)
            numbers = study_queries.take_numbers(session, study_id, lock, n)
            now = utcnow()
            curves = {}
            for number in numbers:
                params = {"depth": rng.randint(1, 8), "width": rng.randint(16, 1024),
                          "lr": 10 ** rng.uniform(-4, -1), "cell": rng.choice(["conv3", "skip"])}
                points = curve(rng.uniform(0.05, 0.6), rng)
                trial = trial_queries.add_trial(
                    session, study_id, number, state="complete", params=params,
                    value=points[-1], proposal={"strategy": "user", "exploration": 0.0,
                                                "predicted": None},
                    revision=lock.revision, static_metrics={}, created_at=now, started_at=now,
                    heartbeat_at=now, completed_at=now)
                curves[number] = (trial, points)
            session.flush()
            session.execute(update(Trial).where(Trial.study_id == study_id)
                            .values(last_step=STEPS))
            buffer = io.StringIO()
            fidelity = Fidelity(**FIDELITY)
            for trial, points in curves.values():
                reported = list(enumerate(points, 1))
                rungs = {step: rung for rung, step, _ in fidelity.rung_points(reported)}
                for step, value in reported:
                    rung = rungs.get(step, "\\N")  # NULL in COPY's text format
                    buffer.write(f"{study_id}\t{trial.id}\t{step}\t{value!r}\t"
                                 f"{now.isoformat()}\t{rung}\n")
            raw = session.connection().connection.driver_connection
            with raw.cursor().copy("COPY trial_reports (study_id, trial_id, step, value, "
                                   "created_at, rung) FROM STDIN") as copy:
                copy.write(buffer.getvalue())
        # Planner statistics and the visibility map, as autovacuum keeps them on a table that grew
        # over time: right after a bulk load the planner guesses (a 12-row estimate for 10,000
        # values at a rung: a sort of all of them, 21 ms, instead of a 1.3 ms index scan) and
        # autovacuum would run during the measurement.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE trials, trial_reports"))
    finally:
        engine.dispose()


def job(url: str, study_id: str, trials: int, seed: int, out: Any) -> None:
    """One training job (its own process): ``trials`` rounds of ask, reports, tell."""
    rng = random.Random(seed)
    samples: list[tuple[int, float]] = []
    tells: list[float] = []
    stopped = 0
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(trials):
            trial = http.post(f"/v1/studies/{study_id}/ask", json={}).json()["trials"][0]
            base = f"/v1/studies/{study_id}/trials/{trial['id']}"
            points = curve(rng.uniform(0.05, 0.6), rng)
            for step, value in enumerate(points, 1):
                start = time.perf_counter()
                answer = http.post(f"{base}/report", json={"step": step, "value": value})
                samples.append((step, time.perf_counter() - start))
                answer.raise_for_status()
                if answer.json()["should_stop"]:
                    stopped += 1
                    result = {"state": "stopped"}
                    break
            else:
                result = {"value": points[-1]}
            start = time.perf_counter()
            http.post(f"{base}/tell", json=result).raise_for_status()
            tells.append(time.perf_counter() - start)
    out.put({"samples": samples, "tells": tells, "stopped": stopped})


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank, milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def measure(url: str, study_id: str, clients: int, trials: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=job, args=(url, study_id, trials, 1000 + c, queue))
             for c in range(clients)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    samples = [s for r in results for s in r["samples"]]
    rung = [t for step, t in samples if step in RUNGS]
    other = [t for step, t in samples if step not in RUNGS]
    every = [t for _, t in samples]
    tells = [t for r in results for t in r["tells"]]
    return {"clients": clients, "trials": trials * clients, "reports": len(samples),
            "stopped": sum(r["stopped"] for r in results),
            "p50_ms": percentile(every, 0.5), "p99_ms": percentile(every, 0.99),
            "max_ms": 1000 * max(every), "rung_p50_ms": percentile(rung, 0.5),
            "rung_p99_ms": percentile(rung, 0.99), "other_p99_ms": percentile(other, 0.99),
            "tell_p50_ms": percentile(tells, 0.5), "tell_p99_ms": percentile(tells, 0.99)}


def run(admin_url: str, histories: list[int], clients: list[int], trials: int) -> dict:
    database = "dyesp_bench_reports"
    url = recreate_database(admin_url, database)
    server = start_server(url)
    rows = []
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            for history in histories:
                study = http.post("/v1/studies", json={
                    "name": f"reports-{history}", "space": SPACE, "fidelity": FIDELITY,
                    "seed": 0}).json()
                t0 = time.perf_counter()
                prefill(url, study["id"], history, seed=history)
                prefill_s = time.perf_counter() - t0
                # one real trial: warms the server's caches and calibrates the stored policy
                warm = http.post(f"/v1/studies/{study['id']}/ask", json={}).json()["trials"][0]
                base = f"/v1/studies/{study['id']}/trials/{warm['id']}"
                http.post(f"{base}/report", json={"step": 1, "value": 0.5}).raise_for_status()
                http.post(f"{base}/tell", json={"value": 0.4}).raise_for_status()
                for n in clients:
                    row = {"history": history, "prefill_s": prefill_s,
                           **measure(server.url, study["id"], n, trials)}
                    rows.append(row)
                    print(_line(row), flush=True)
    finally:
        server.stop()
        drop_database(admin_url, database)
    return {"rows": rows, "ratios": _ratios(rows), "steps": STEPS, "rungs": list(RUNGS),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _ratios(rows: list[dict]) -> list[dict]:
    """p99 at the largest history over p99 at the smallest, per client count."""
    out = []
    for n in sorted({r["clients"] for r in rows}):
        mine = sorted((r for r in rows if r["clients"] == n), key=lambda r: r["history"])
        if len(mine) >= 2 and mine[0]["p99_ms"]:
            out.append({"clients": n, "from": mine[0]["history"], "to": mine[-1]["history"],
                        "p99_ratio": mine[-1]["p99_ms"] / mine[0]["p99_ms"],
                        "rung_p99_ratio": mine[-1]["rung_p99_ms"] / mine[0]["rung_p99_ms"]})
    return out


def _line(row: dict) -> str:
    return (f"| {row['history']:,} x {STEPS} | {row['clients']} | {row['reports']:,} | "
            f"{row['stopped']}/{row['trials']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['rung_p50_ms']:.1f} | {row['rung_p99_ms']:.1f} | {row['other_p99_ms']:.1f} | "
            f"{row['max_ms']:.0f} | {row['tell_p50_ms']:.1f} | {row['tell_p99_ms']:.1f} |")


def render(report: dict, command: str) -> str:
    lines = ["# Report latency (`python -m benchmarks.report_latency`)", "",
             f"Command: `{command}`; {report['created']}. One uvicorn worker on PostgreSQL; each "
             "client is a process running ask -> report steps 1..50 (until told to stop) -> tell; "
             "latency as the client sees it. Rung steps (1, 3, 9, 27) read the newest values at "
             "their step and the study's stored stopping policy; other steps write only. A tell "
             "(the trial's result, after its reports) may recalibrate that policy.", "",
             "| study history (trials x steps) | clients | reports | stopped | p50 ms | p99 ms | "
             "rung p50 ms | rung p99 ms | other p99 ms | max ms | tell p50 ms | tell p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             *(_line(r) for r in report["rows"]), ""]
    for r in report["ratios"]:
        lines.append(f"- {r['clients']} client(s): p99 at {r['to']:,} trials is "
                     f"{r['p99_ratio']:.2f}x that at {r['from']:,} (rung steps "
                     f"{r['rung_p99_ratio']:.2f}x).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report_latency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--histories", default="100,10000", help="trials prefilled (comma list)")
    ap.add_argument("--clients", default="1,4", help="concurrent jobs (comma list)")
    ap.add_argument("--trials", type=int, default=30, help="trials each job runs")
    ap.add_argument("--admin-url", default=ADMIN_URL)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    command = "python -m benchmarks.report_latency " + " ".join(argv or [])
    report = run(args.admin_url, [int(h) for h in args.histories.split(",")],
                 [int(c) for c in args.clients.split(",")], args.trials)
    report["command"] = command.strip()
    text = render(report, command.strip())
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report_latency.md").write_text(text)
    (args.out / "report_latency.json").write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
