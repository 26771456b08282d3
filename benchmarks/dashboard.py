"""The dashboard at scale (`python -m benchmarks.dashboard`): every page of a 100,000-trial study.

Issue 15's bar: a study of 100,000 trials answers every page in under 2 s on this machine, the
browser never receives 100k raw rows, and the API's memory stays bounded. For each study size
(``--trials``, and ``--small`` for the ratio) this makes a fresh PostgreSQL database, starts a real
server on it (``benchmarks.servers``, auth off), creates one study through the API and seeds it
in bulk through the data layer (core INSERTs of ``trials``, ``trial_reports``,
``pruned_candidates`` and ``pruner_models`` rows under the study lock, numbers and revision taken
as asks and tells would take them): a mixed HAS space, a synthetic objective, mostly complete
trials with some stopped, failed and infeasible, proposals of several strategies, curves.

Then each page is loaded as its script loads it: the HTML shell, then the API requests in the
script's order, those the script sends together (``Promise.all``) sent together here from threads
(``wall``); each request is also timed alone, one after another on one connection (``alone``).
The first round (cold: nothing cached by the server) is reported apart from the ``--repeats``
warm rounds (median and max). Response bytes and the points each response carries show that no
response grows with the study. The server's RSS is read before the first page, after the first
round and after ``--soak`` more rounds (peak sampled throughout). With ``--browser``, headless
Chromium (Playwright) loads each page until the script marks ``body[data-ready]``: the time a
person waits. Writes benchmarks/results/dashboard.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.load import ADMIN_URL, drop_database, recreate_database
from benchmarks.servers import start_server

RESULTS = Path(__file__).parent / "results"
BAR_S = 2.0  # the bar for a page at 100,000 trials
OPS = ["conv3x3", "conv1x1", "sep3x3", "skip", "pool", "none"]
EDGES = 5
DASH_SPACE = {"params": [
    *({"name": f"edge{i}", "type": "categorical", "choices": OPS} for i in range(EDGES)),
    {"name": "depth", "type": "int", "low": 1, "high": 8},
    {"name": "width", "type": "int", "low": 16, "high": 512, "log": True},
    {"name": "lr", "type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    {"name": "weight_decay", "type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5},
]}
FIDELITY = {"name": "epoch", "min": 1, "max": 20}
STRATEGIES = ["random", "parzen", "local", "surrogate"]
CHUNK = 5000  # rows per INSERT batch while seeding
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


# --- seeding ---------------------------------------------------------------------------------

def synthetic(n: int, rng: np.random.Generator) -> tuple[list[dict], np.ndarray]:
    """``n`` configurations of DASH_SPACE and their loss (smooth in lr and depth, an op per edge
    worth more or less, noise): drawn in bulk, so 100,000 take a second."""
    ops = rng.integers(0, len(OPS), size=(n, EDGES))
    depth = rng.integers(1, 9, size=n)
    width = np.exp(rng.uniform(np.log(16), np.log(512), size=n)).round().astype(int)
    lr = 10 ** rng.uniform(-5, -1, size=n)
    wd = 10 ** rng.uniform(-6, -2, size=n)
    dropout = rng.uniform(0, 0.5, size=n)
    op_cost = np.array([0.0, 0.15, 0.05, 0.3, 0.25, 0.5])
    loss = (op_cost[ops].sum(axis=1) + 0.2 * (np.log10(lr) + 2.5) ** 2
            + 0.05 * np.abs(depth - 5) + 0.3 * dropout + 0.02 * np.abs(np.log2(width) - 7)
            + rng.normal(0, 0.05, size=n))
    configs = [{**{f"edge{e}": OPS[ops[i, e]] for e in range(EDGES)}, "depth": int(depth[i]),
                "width": int(width[i]), "lr": float(lr[i]), "weight_decay": float(wd[i]),
                "dropout": float(dropout[i])} for i in range(n)]
    return configs, loss


def seed_study(database_url: str, study_id: str, n: int, reported: int, pruned: int,
               versions: int, seed: int = 0) -> dict:
    """``n`` trials and their curves, pruned candidates and pruner versions, written in bulk in
    one transaction under the study lock (numbers taken, revision bumped, as a tell would)."""
    from sqlalchemy import insert

    from service.db import study_queries
    from service.db.models import PrunedCandidate, PrunerVersion, Study, Trial, TrialReport
    from service.db.session import make_engine, make_sessionmaker, transaction

    rng = np.random.default_rng(seed)
    configs, loss = synthetic(n, rng)
    # Trials that report curves: evenly spread; a third of them stopped early. Others: a few
    # failed or infeasible, the newest four still running.
    curve_of = set(np.linspace(0, n - 1, min(reported, n)).round().astype(int).tolist())
    start = datetime(2025, 1, 1, tzinfo=UTC)
    t0 = time.perf_counter()
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            owner = session.get(Study, study_id).owner_id
            lock = study_queries.lock_study(session, owner, study_id)
            numbers = study_queries.take_numbers(session, study_id, lock, n)
            rows, steps_of = [], {}
            for i, number in zip(range(n), numbers, strict=True):
                draw = rng.random()
                state, value, last_step = "complete", float(loss[i]), None
                if i in curve_of:
                    last_step = 20
                    if draw < 0.33:
                        state, last_step = "stopped", int(rng.choice([4, 8, 12]))
                elif draw < 0.03:
                    state, value = "failed", None
                elif draw < 0.04:
                    state, value = "infeasible", None
                if i >= n - 4:
                    state, value, last_step = "running", None, None
                steps_of[number] = (last_step, float(loss[i]))
                phase = min(len(STRATEGIES) - 1, int(4 * i / n + rng.random()))
                strategy = STRATEGIES[0] if i < 50 else STRATEGIES[phase]
                exploration = float(np.clip(1.0 - 0.8 * i / n + rng.normal(0, 0.05), 0, 1))
                predicted = (None if i < 500 or strategy == "random" else
                             float(np.clip(1 - loss[i] / 3 + rng.normal(0, 0.1), 0, 1)))
                at = start + timedelta(seconds=10 * i)
                finished = state != "running"
                rows.append({
                    "study_id": study_id, "number": number, "state": state, "params": configs[i],
                    "value": value, "reason": "diverged" if state == "failed" else None,
                    "static_metrics": {}, "client_id": f"worker-{i % 8}",
                    "proposal": {"strategy": strategy, "exploration": exploration,
                                 "predicted": predicted},
                    "revision": lock.revision, "created_at": at, "started_at": at,
                    "heartbeat_at": at + timedelta(seconds=9),
                    "deadline_at": None if finished else at + timedelta(days=3650),
                    "completed_at": at + timedelta(seconds=9) if finished else None,
                    "last_step": last_step, "user_attrs": {}})
            reports = 0
            for begin in range(0, n, CHUNK):
                chunk = rows[begin:begin + CHUNK]
                ids = session.execute(insert(Trial).returning(Trial.id, Trial.number,
                                                              sort_by_parameter_order=True),
                                      chunk).all()
                curves = []
                for trial_id, number in ids:
                    last_step, final = steps_of[number]
                    for step in range(1, (last_step or 0) + 1):
                        curves.append({"study_id": study_id, "trial_id": trial_id, "step": step,
                                       "value": final + 1.5 * np.exp(-step / 4) * (1 + 0.1 * (
                                           number % 7)), "reason": None,
                                       "created_at": start})
                if curves:
                    session.execute(insert(TrialReport), curves)
                    reports += len(curves)
            pruned_configs, pruned_loss = synthetic(pruned, rng)
            if pruned:
                session.execute(insert(PrunedCandidate), [
                    {"study_id": study_id, "params": c, "static_metrics": {},
                     "predicted": float(np.clip(0.5 - l_ / 6, 0, 1)), "created_at": start}
                    for c, l_ in zip(pruned_configs, pruned_loss, strict=True)])
            if versions:
                session.execute(insert(PrunerVersion), [
                    {"study_id": study_id, "version": v + 1, "weights": b"",
                     "fingerprint": "bench", "n_train": (v + 1) * n // (versions + 1),
                     "metrics": {"spearman_holdout": 0.3 + 0.1 * v}, "device": "cpu",
                     "seconds": 2.0 + v, "active": True, "created_at": start}
                    for v in range(versions)])
        # What autovacuum does to a table that grew over days: the planner's statistics (the
        # first pages would otherwise be planned on an empty table's).
        with engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE trials, trial_reports, pruned_candidates")
            connection.commit()
    finally:
        engine.dispose()
    return {"trials": n, "reports": reports, "pruned": pruned, "versions": versions,
            "seed_s": round(time.perf_counter() - t0, 1)}


def best_reported_trial(database_url: str, study_id: str) -> int:
    """The id of the best complete trial with a curve (the trial page shows its curve)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as connection:
        trial_id = connection.execute(text(
            "SELECT id FROM trials WHERE study_id = :s AND state = 'complete' AND last_step IS "
            "NOT NULL ORDER BY value LIMIT 1"), {"s": study_id}).scalar_one()
    engine.dispose()
    return int(trial_id)


# --- what each page's script requests --------------------------------------------------------

def pages(study: str, trial: int) -> dict[str, tuple[str, list[list[str]]]]:
    """Page -> (its shell, its script's requests: a list of phases, each sent together)."""
    s = f"/v1/studies/{study}"
    return {
        "studies": ("/ui", [["/v1/studies?order=-created&offset=0&limit=25"]]),
        "study": (f"/ui/studies/{study}", [[s], [
            f"{s}/insights/history?max_points=2000", f"{s}/insights/params?max_points=1000",
            f"{s}/insights/curves", f"{s}/insights/trials?sort=number&offset=0&limit=20"]]),
        "engine": (f"/ui/studies/{study}/engine", [[s], [
            f"{s}/insights/history?max_points=2000", f"{s}/pruner?limit=100"]]),
        "map": (f"/ui/studies/{study}/map", [[s], [f"{s}/insights/map?max_points=1500"]]),
        "trial": (f"/ui/studies/{study}/trials/{trial}", [
            [s, f"{s}/trials/{trial}"], [f"{s}/trials/{trial}/curve?offset=0&limit=1000"]]),
    }


def points_in(path: str, body: Any) -> int:
    """The data points a response carries (what a plot or a table draws)."""
    if "/insights/history" in path:
        return len(body["points"]["number"]) + len(body["best"]["number"]) + len(body["bins"])
    if "/insights/params" in path:
        return body["shown"]
    if "/insights/map" in path:
        return len(body["points"]["x"]) + len(body["pruned"]["x"])
    if "/insights/curves" in path:
        return sum(len(c["points"]) for c in body["curves"])
    if "/insights/trials" in path:
        return len(body["trials"])
    if path.startswith("/v1/studies?"):
        return len(body["studies"])
    if "/pruner" in path:
        return len(body["versions"])
    if "/curve" in path:
        return len(body["points"])
    return 1  # one object: a study or a trial


def timed_get(http: httpx.Client, path: str) -> dict:
    t0 = time.perf_counter()
    response = http.get(path)
    seconds = time.perf_counter() - t0
    out = {"path": path, "status": response.status_code, "s": seconds,
           "bytes": len(response.content)}
    if response.status_code == 200 and "application/json" in response.headers.get(
            "content-type", ""):
        out["points"] = points_in(path, response.json())
    return out


def load_page(http: httpx.Client, pool: ThreadPoolExecutor, shell: str,
              phases: list[list[str]]) -> dict:
    """The shell, then each phase's requests together: the wall time the script waits for data
    (Plotly's drawing not included: ``--browser`` measures that)."""
    t0 = time.perf_counter()
    html = timed_get(http, shell)
    calls = []
    for phase in phases:
        calls.extend(pool.map(lambda p: timed_get(http, p), phase))
    return {"wall_s": time.perf_counter() - t0, "html": html, "calls": calls}


def alone(http: httpx.Client, shell: str, phases: list[list[str]]) -> list[dict]:
    """Every request of the page, one after another on one connection."""
    return [timed_get(http, p) for p in [shell, *(p for phase in phases for p in phase)]]


class RssSampler:
    """The server process's resident memory, read every 20 ms in a thread (peak and now)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> int:
        rss = self.process.memory_info().rss
        for child in self.process.children(recursive=True):
            rss += child.memory_info().rss
        return rss

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, self.now())
            except psutil.Error:  # a child came or went between the listing and the reading
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def browser_times(base: str, page_map: dict, repeats: int) -> dict[str, list[float | None]]:
    """Headless Chromium: seconds from navigation until the page's script set ``data-ready``
    (its first draw done), a fresh tab each time in one browser (assets cached after the
    first). None: the page showed an error instead (a request failed) or was not drawn in
    60 s."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    done = ("document.body.dataset.ready !== undefined || "
            "!document.getElementById('error').hidden")
    out: dict[str, list[float | None]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        context = browser.new_context()
        try:
            for name, (shell, _) in page_map.items():
                out[name] = []
                for _ in range(1 + repeats):
                    tab = context.new_page()
                    t0 = time.perf_counter()
                    tab.goto(base + shell)
                    try:
                        tab.wait_for_function(done, timeout=60_000)
                        ready = tab.evaluate("document.body.dataset.ready !== undefined")
                    except PlaywrightTimeout:
                        ready = False
                    out[name].append(time.perf_counter() - t0 if ready else None)
                    tab.close()
        finally:
            browser.close()
    return out


# --- one study size --------------------------------------------------------------------------

def run_size(n: int, args: argparse.Namespace) -> dict:
    database = f"dyesp_bench_dashboard_{n}_{os.getpid()}"
    url = recreate_database(args.admin_url, database)
    server = start_server(url)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            study = http.post("/v1/studies", json={
                "name": f"dashboard-{n}", "direction": "minimize", "space": DASH_SPACE,
                "seed": 0, "fidelity": FIDELITY}).raise_for_status().json()["id"]
        seeded = seed_study(url, study, n, min(args.reported, max(1, n // 5)), args.pruned,
                            args.versions)
        print(f"[{n}] seeded {seeded}", flush=True)
        page_map = pages(study, best_reported_trial(url, study))
        sampler = RssSampler(server.process.pid)
        rss = {"before": sampler.now()}
        result: dict[str, Any] = {"trials": n, "seeded": seeded, "pages": {},
                              "load_average_before": [round(x, 2) for x in os.getloadavg()]}
        with httpx.Client(base_url=server.url, timeout=120) as http, \
                ThreadPoolExecutor(max_workers=4) as pool:
            rounds: dict[str, list[dict]] = {name: [] for name in page_map}
            singles: dict[str, list[list[dict]]] = {name: [] for name in page_map}
            for _ in range(1 + args.repeats):
                for name, (shell, phases) in page_map.items():
                    rounds[name].append(load_page(http, pool, shell, phases))
                    singles[name].append(alone(http, shell, phases))
                if len(rounds["studies"]) == 1:
                    rss["after_first_round"] = sampler.now()
            for _ in range(args.soak):
                for shell, phases in page_map.values():
                    load_page(http, pool, shell, phases)
            rss["after_soak"] = sampler.now()
        if args.browser:
            try:
                result["browser"] = summarise_browser(browser_times(server.url, page_map,
                                                                    args.browser_repeats))
            except Exception as error:  # the HTTP measurements stand without the browser's
                result["browser_error"] = repr(error)[:500]
        sampler.stop()
        rss["peak"] = sampler.peak
        result["rss_mib"] = {k: round(v / 2**20, 1) for k, v in rss.items()}
        result["soak_rounds"] = args.soak
        for name in page_map:
            result["pages"][name] = summarise_page(rounds[name], singles[name])
        return result
    finally:
        server.stop()
        drop_database(args.admin_url, database)


def summarise_page(rounds: list[dict], singles: list[list[dict]]) -> dict:
    """Cold (first round) apart; warm rounds as median and max. ``alone``: each request's own
    time, their sum and the slowest; bytes and points of each request (from the first round)."""
    def stats(values: list[float]) -> dict:
        return {"median_ms": round(1000 * statistics.median(values), 1),
                "max_ms": round(1000 * max(values), 1)} if values else {}

    warm, warm_alone = rounds[1:], singles[1:]
    first = [rounds[0]["html"], *rounds[0]["calls"]]
    requests = []
    for k, call in enumerate(first):
        times = [s[k]["s"] for s in warm_alone]
        requests.append({"path": call["path"], "status": call["status"], "bytes": call["bytes"],
                         "points": call.get("points"), "cold_ms": round(1000 * call["s"], 1),
                         **stats(times)})
    statuses = {c["status"] for r in rounds for c in [r["html"], *r["calls"]]}
    return {
        "all_200": statuses == {200},
        "cold_wall_ms": round(1000 * rounds[0]["wall_s"], 1),
        "wall": stats([r["wall_s"] for r in warm]),
        "alone_sum": stats([sum(c["s"] for c in s) for s in warm_alone]),
        "alone_max": stats([max(c["s"] for c in s) for s in warm_alone]),
        "html": stats([r["html"]["s"] for r in warm]),
        "bytes": sum(c["bytes"] for c in first[1:]),
        "points": sum(c.get("points") or 0 for c in first[1:]),
        "requests": requests,
    }


def summarise_browser(times: dict[str, list[float | None]]) -> dict:
    """Cold and warm (median, max) per page; ``failed``: loads that never got drawn."""
    out = {}
    for name, t in times.items():
        warm = [x for x in t[1:] if x is not None] or [x for x in t[:1] if x is not None]
        out[name] = {"cold_ms": None if t[0] is None else round(1000 * t[0], 1),
                     "median_ms": round(1000 * statistics.median(warm), 1) if warm else None,
                     "max_ms": round(1000 * max(warm), 1) if warm else None,
                     "failed": sum(x is None for x in t)}
    return out


# --- report ----------------------------------------------------------------------------------

def render(report: dict) -> str:
    sizes = report["sizes"]
    big, small = sizes[0], sizes[-1]
    lines = [
        "# The dashboard at scale (`python -m benchmarks.dashboard`)", "",
        f"Command: `{report['command']}`; {report['when']}; {report['machine']}. One uvicorn "
        "worker on PostgreSQL, auth off, client on the same machine. A page's **wall**: its HTML "
        "shell, then its script's API requests phase by phase, a phase's requests sent together "
        "as the script's `Promise.all` sends them (Plotly's drawing not included; see the "
        "browser table). **alone**: each request timed by itself, one after another on one "
        "connection (sum; slowest). Cold: the first load after seeding; warm: median (max) of "
        f"{report['repeats']} more. Bar: {BAR_S:g} s per page at {big['trials']:,} trials. "
        "Load average (1, 5, 15 min) before each size: " + "; ".join(
            f"{s['trials']:,}: {s.get('load_average_before')}" for s in sizes)
        + f"; at the end: {report.get('load_average_at_end')} (other jobs share the cores).", "",
        "| trials | page | cold wall ms | warm wall ms | alone sum ms | slowest request ms | "
        "bytes | points sent | all 200 |", "|" + "---|" * 9]
    for size in sizes:
        for name, p in size["pages"].items():
            slowest = max(p["requests"], key=lambda r: r.get("median_ms", 0))
            lines.append(
                f"| {size['trials']:,} | {name} | {p['cold_wall_ms']:.0f} | "
                f"{p['wall']['median_ms']:.0f} ({p['wall']['max_ms']:.0f}) | "
                f"{p['alone_sum']['median_ms']:.0f} | {slowest['median_ms']:.0f} "
                f"(`{_short(slowest['path'])}`) | {p['bytes']:,} | {p['points']:,} | "
                f"{'yes' if p['all_200'] else 'NO'} |")
    if len(sizes) > 1:
        def ratio(name: str) -> float:
            return (big["pages"][name]["wall"]["median_ms"]
                    / max(small["pages"][name]["wall"]["median_ms"], 0.1))

        lines += ["", f"Ratio {big['trials']:,} / {small['trials']:,} trials (warm wall "
                  "medians): " + ", ".join(f"{name} {ratio(name):.1f}x" for name in big["pages"])]
    lines += ["", "Every request at the largest size (warm median, ms; bytes; points):", "",
              "| request | cold ms | warm ms (max) | bytes | points |", "|---|---|---|---|---|"]
    seen = set()
    for p in big["pages"].values():
        for r in p["requests"]:
            if r["path"] in seen:
                continue
            seen.add(r["path"])
            lines.append(f"| `{_short(r['path'])}` | {r['cold_ms']:.0f} | "
                         f"{r.get('median_ms', 0):.0f} ({r.get('max_ms', 0):.0f}) | "
                         f"{r['bytes']:,} | {r['points'] if r['points'] is not None else ''} |")
    if all("browser" in s for s in sizes):
        lines += ["", "Headless Chromium (Playwright), navigation until `body[data-ready]` "
                  "(the page's first draw done), ms: cold (first visit, assets not cached) and "
                  "warm median (max):", "",
                  "| trials | " + " | ".join(big["browser"]) + " |",
                  "|---|" + "---|" * len(big["browser"])]
        for size in sizes:
            lines.append(f"| {size['trials']:,} | " + " | ".join(
                f"{_ms(b['cold_ms'])} / {_ms(b['median_ms'])} ({_ms(b['max_ms'])})"
                + (f", {b['failed']} not drawn" if b["failed"] else "")
                for b in size["browser"].values()) + " |")
    lines += ["", "Server RSS (MiB; the uvicorn process): before the first page, after the "
              "first round of all pages, after the soak rounds, and the peak sampled every "
              "20 ms:", "", "| trials | before | after first round | after soak | peak | "
              "soak rounds |", "|---|---|---|---|---|---|"]
    for size in sizes:
        m = size["rss_mib"]
        lines.append(f"| {size['trials']:,} | {m['before']} | {m['after_first_round']} | "
                     f"{m['after_soak']} | {m['peak']} | {size['soak_rounds']} |")
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _short(path: str) -> str:
    """A request path without the study id (the tables stay narrow)."""
    parts = path.split("/")
    if len(parts) > 3 and parts[1:3] == ["v1", "studies"]:
        parts[3] = "{id}"
    if len(parts) > 3 and parts[1:3] == ["ui", "studies"]:
        parts[3] = "{id}"
    if len(parts) > 5 and parts[4] == "trials" and parts[5].split("?")[0].isdigit():
        parts[5] = "{trial}" + parts[5][len(parts[5].split("?")[0]):]
    return "/".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dashboard", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=100_000, help="the large study's trials")
    ap.add_argument("--small", type=int, default=1000,
                    help="the comparison study's trials (0: none)")
    ap.add_argument("--reported", type=int, default=2000,
                    help="trials with a 20-step curve (at most a fifth of the study)")
    ap.add_argument("--pruned", type=int, default=400, help="pruned candidates")
    ap.add_argument("--versions", type=int, default=5, help="pruner versions")
    ap.add_argument("--repeats", type=int, default=5, help="warm rounds after the cold one")
    ap.add_argument("--soak", type=int, default=20,
                    help="more rounds of every page before the last RSS reading")
    ap.add_argument("--browser", action=argparse.BooleanOptionalAction, default=True,
                    help="also time headless Chromium until the page is drawn")
    ap.add_argument("--browser-repeats", type=int, default=2,
                    help="warm browser loads of each page after the cold one")
    ap.add_argument("--admin-url", default=ADMIN_URL,
                    help="a PostgreSQL URL allowed to create databases")
    ap.add_argument("--out", type=Path, default=RESULTS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    sizes = []
    for n in [args.trials, *([args.small] if args.small else [])]:
        size = run_size(n, args)
        sizes.append(size)
        print(json.dumps({k: size[k] for k in ("trials", "rss_mib")}), flush=True)
    import platform

    report = {"command": ("python -m benchmarks.dashboard " + " ".join(
        sys.argv[1:] if argv is None else argv)).strip(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "repeats": args.repeats, "bar_s": BAR_S, "sizes": sizes}
    args.out.mkdir(parents=True, exist_ok=True)
    text = render(report)
    (args.out / "dashboard.md").write_text(text)
    (args.out / "dashboard.json").write_text(json.dumps(report, indent=1))
    print(text)
    return report


if __name__ == "__main__":
    main()
