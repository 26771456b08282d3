"""The most expensive asks we could build inside the documented limits
(`python -m benchmarks.worst_case`, `dyesp bench worst-case`).

A real server (uvicorn, one worker, retraining on in its spawned child) on a fresh PostgreSQL
database. For each space: create it, then ``--trials`` rounds of ask -> tell (a random value), as a
training job would, timing every ask from the client. The server's memory is read from /proc:
resident now and the peak (VmHWM) of the server process and of its retraining child. A small mixed
HAS space runs first as the reference, so the slowdowns are ratios taken in the same run. The
spaces that the issue reported (40 conditional parents; 150 categoricals x 1,024 choices; bounds of
+-1e308 or 2**63) are included: the first is now cheap, the others are refused at creation.

Writes benchmarks/results/worst_case.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.load import ADMIN_URL, drop_database, recreate_database
from benchmarks.servers import start_server

RESULTS = Path(__file__).parent / "results"


def _parents(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append({"name": f"p{i}", "type": "categorical", "choices": ["a", "b"]})
        out.append({"name": f"c{i}", "type": "int", "low": 0, "high": 3,
                    "condition": {"parent": f"p{i}", "values": ["a"]}})
    return out


def _deep_chain() -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [{"name": "r0", "type": "categorical",
                                     "choices": list(range(8))}]
    for depth in range(1, 7):
        params.append({"name": f"r{depth}", "type": "categorical", "choices": list(range(8)),
                       "condition": {"parent": f"r{depth - 1}", "values": list(range(8))}})
    params += [{"name": f"x{i}", "type": "float", "low": 0, "high": 1,
                "condition": {"parent": "r6", "values": [i % 8]}} for i in range(200)]
    return params


SPACES: dict[str, list[dict[str, Any]]] = {
    "reference: mixed HAS space (5 params)": [
        {"name": "depth", "type": "int", "low": 1, "high": 4},
        {"name": "width_3", "type": "int", "low": 16, "high": 256, "log": True,
         "condition": {"parent": "depth", "values": [3, 4]}},
        {"name": "cell", "type": "categorical", "choices": ["conv3", "conv1", "skip"]},
        {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5, "step": 0.1}],
    "reported: 40 conditional parents": _parents(40),
    "128 conditional parents (width 512)": _parents(128),
    "2 x 1,000 choices + 46 floats (width 2,046)": [
        {"name": f"c{i}", "type": "categorical", "choices": list(range(1000))} for i in range(2)
    ] + [{"name": f"f{i}", "type": "float", "low": 0, "high": 1} for i in range(46)],
    "256 categoricals x 7 (width 1,792)": [
        {"name": f"c{i}", "type": "categorical", "choices": list(range(7))} for i in range(256)],
    "256 log floats at +-1e15": [
        {"name": f"f{i}", "type": "float", "low": 1e-9, "high": 1e15, "log": True}
        for i in range(256)],
    "conditions 7 deep + 200 leaves": _deep_chain(),
    "reported: 150 x 1,024 choices": [
        {"name": f"c{i}", "type": "categorical", "choices": list(range(1024))} for i in range(150)],
    "reported: float bounds +-1e308": [
        {"name": "x", "type": "float", "low": -1e308, "high": 1e308}],
    "reported: int 0..2**63": [{"name": "n", "type": "int", "low": 0, "high": 2**63}],
}


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process and of its children, in kB (Linux /proc)."""
    out = {"rss": 0, "peak": 0, "child_peak": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                out["peak"] = int(line.split()[1])
        for task in Path(f"/proc/{pid}/task").iterdir():  # the retrainer thread spawns it
            for child in (task / "children").read_text().split():
                out["child_peak"] = max(out["child_peak"], memory_kb(int(child))["peak"])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def run_space(http: httpx.Client, pid: int, name: str, params: list[dict[str, Any]],
              trials: int, rng: random.Random) -> dict[str, Any]:
    body = {"name": name[:200], "seed": 0, "space": {"params": params}}
    start = time.perf_counter()
    created = http.post("/v1/studies", json=body)
    create_ms = (time.perf_counter() - start) * 1e3
    row: dict[str, Any] = {"space": name, "body_kb": len(json.dumps(body)) / 1024,
                           "create_status": created.status_code, "create_ms": create_ms}
    if created.status_code != 201:
        row["refusal"] = created.json()["detail"][:120]
        return row
    study = created.json()["id"]
    asks: list[float] = []
    for _ in range(trials):
        start = time.perf_counter()
        response = http.post(f"/v1/studies/{study}/ask", json={"client_id": "bench"})
        asks.append((time.perf_counter() - start) * 1e3)
        response.raise_for_status()
        (trial,) = response.json()["trials"]
        http.post(f"/v1/studies/{study}/trials/{trial['id']}/tell",
                  json={"value": rng.random()}).raise_for_status()
    memory = memory_kb(pid)
    row.update(asks=len(asks), ask_p50_ms=statistics.median(asks), ask_max_ms=max(asks),
               server_rss_mb=memory["rss"] / 1024, server_peak_mb=memory["peak"] / 1024,
               child_peak_mb=memory["child_peak"] / 1024)
    return row


def render(rows: list[dict[str, Any]], trials: int) -> str:
    reference = rows[0]["ask_p50_ms"]
    lines = [f"# Worst-case asks inside the limits ({trials} ask -> tell rounds per space)", "",
             "| space | body KB | create | ask p50 ms | ask max ms | p50 / reference | "
             "server RSS MB (peak) | retraining child peak MB |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        if row["create_status"] != 201:
            lines.append(f"| {row['space']} | {row['body_kb']:.0f} | {row['create_status']} in "
                         f"{row['create_ms']:.0f} ms: {row['refusal']} | | | | | |")
            continue
        lines.append(
            f"| {row['space']} | {row['body_kb']:.0f} | 201 in {row['create_ms']:.0f} ms | "
            f"{row['ask_p50_ms']:.0f} | {row['ask_max_ms']:.0f} | "
            f"{row['ask_p50_ms'] / reference:.1f}x | {row['server_rss_mb']:.0f} "
            f"({row['server_peak_mb']:.0f}) | {row['child_peak_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="ask -> tell rounds per space")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    database = f"dyesp_worst_case_{int(time.time())}"
    url = recreate_database(ADMIN_URL, database)
    server = start_server(url, workers=1, retrain=True)
    rng = random.Random(0)
    rows = []
    try:
        with httpx.Client(base_url=server.url, timeout=300) as http:
            for name, params in SPACES.items():
                rows.append(run_space(http, server.process.pid, name, params, args.trials, rng))
                print(render(rows, args.trials).splitlines()[-1], flush=True)
    finally:
        server.stop()
        drop_database(ADMIN_URL, database)
    report = render(rows, args.trials)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "worst_case.md").write_text(report)
    (args.out / "worst_case.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
