"""Load benchmark: the server under concurrent clients, against Optuna's RDBStorage
(`python -m benchmarks.load`, `dyesp bench load`).

DyESP runs as a real server (uvicorn, ``--workers`` processes) on PostgreSQL with auth off;
Optuna runs its default TPE sampler in the client processes on an RDBStorage in the same
PostgreSQL server. Both are driven by the same harness: spawned client processes (threads inside
them past ``--max-procs``) each loop ask -> instant synthetic objective -> tell on a mixed
HAS-like space (3 categorical architecture choices, 2 ints, 3 floats and one conditional int).
DyESP runs with its per-owner rate limits off (a capacity measurement; Optuna has none). DyESP
clients speak HTTP with one keep-alive ``httpx.Client`` per client thread (no SDK); a
refused ask (429 + ``Retry-After``: the server's per-owner queue is full) is sent again after the
wait it names, as the SDK does, and counted (``refused``: its wait is in that ask's latency); any
other non-2xx answer is counted as an error. Optuna
clients call ``study.ask()`` + the ``trial.suggest_*`` calls (that is where TPE samples) and
``study.tell``.

Every pair is recorded with the trial number it got (the study's history size at that ask), so
latencies are binned in history bands 0-100, 100-1k and 1k-10k trials. Two kinds of scenario:

* grow: studies start empty; clients run until the trial quota or the wall-time budget is spent.
  ``one-study`` (every client on one study) at each ``--clients`` count and ``many-studies``
  (clients spread round-robin over ``--studies`` studies).
* window: one study prefilled to ``H - W - clients`` finished trials (the same random
  configurations and objective values for both systems, written straight to each system's
  storage: Optuna through ``study.add_trials``, DyESP through its own data layer, as an enqueue +
  ask + tell would write them), then one warm-up pair per client (not recorded), then ``W``
  measured pairs, so the measured asks see histories in ``[H - W, H)``. This is how the 1k-10k
  band and "at 10,000 trials" are measured fairly for Optuna, which cannot grow a study to
  10,000 trials in reasonable time.

pairs/s of a band = pairs whose ask fell in the band / (last tell end - first ask start among
them). Writes benchmarks/results/load.md and load.json (see ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402

from benchmarks.retraining import HAS_SPACE, synthetic_loss  # noqa: E402
from benchmarks.servers import start_server  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SERVER_LOG = Path(tempfile.gettempdir()) / "dyesp-load-server.log"  # server stderr
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BANDS = ((0, 100, "0-100"), (100, 1_000, "100-1k"), (1_000, 10_000, "1k-10k"),
         (10_000, math.inf, "10k+"))
SYSTEMS = ("dyesp", "optuna")


def band_of(number: int) -> str:
    for low, high, name in BANDS:
        if low <= number < high:
            return name
    raise ValueError(number)


def objective(params: dict[str, Any]) -> float:
    """Deterministic, instant, smooth-plus-categorical (the retraining benchmark's)."""
    return float(synthetic_loss(params))


# --- the workload a client runs --------------------------------------------------------------

@dataclass
class Workload:
    """What one scenario's clients do; pickled into every spawned client process."""

    system: str
    target: str  # DyESP: the server URL; Optuna: the storage URL
    studies: list[str]  # DyESP study ids or Optuna study names
    quota: int  # measured pairs per study (shared by that study's clients)
    budget_s: float  # wall-time limit of the measured phase
    warmup: bool = False  # one unrecorded pair per client before the barrier


@dataclass
class Record:
    study: int  # index into Workload.studies
    number: int  # the trial number the ask returned: the study's history at that ask
    start: float  # time.monotonic() at the ask's start (CLOCK_MONOTONIC: comparable across procs)
    ask_s: float
    tell_s: float
    end: float
    trial_id: int | str
    refused: int = 0  # 429s this pair's ask got before it was served


MAX_REFUSALS = 100  # an ask refused this often in a row is an error (the server never drains)


class _DyespClient:
    def __init__(self, url: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=url, timeout=120)
        self.refused = 0  # 429s so far: the harness reads the difference per pair

    def ask(self, study: str) -> tuple[Any, int, dict]:
        for _ in range(MAX_REFUSALS):
            response = self.http.post(f"/v1/studies/{study}/ask", json={})
            if response.status_code != 429:
                break
            self.refused += 1
            time.sleep(float(response.headers.get("Retry-After", "1")))
        response.raise_for_status()
        (trial,) = response.json()["trials"]
        return trial["id"], trial["number"], trial["params"]

    def tell(self, study: str, handle: Any, value: float) -> None:
        self.http.post(f"/v1/studies/{study}/trials/{handle}/tell",
                       json={"value": value}).raise_for_status()

    def close(self) -> None:
        self.http.close()


class _OptunaClient:
    _studies: dict[str, Any] = {}
    _lock = threading.Lock()

    def __init__(self, storage: str) -> None:
        self.storage = storage

    def _study(self, name: str) -> Any:
        import optuna

        with self._lock:  # one Study (one storage cache, one sampler) per process and study
            if name not in self._studies:
                optuna.logging.set_verbosity(optuna.logging.WARNING)
                self._studies[name] = optuna.load_study(
                    study_name=name, storage=_optuna_storage(self.storage),
                    sampler=optuna.samplers.TPESampler())
            return self._studies[name]

    def ask(self, study: str) -> tuple[Any, int, dict]:
        trial = self._study(study).ask()
        return trial, trial.number, suggest(trial)

    def tell(self, study: str, handle: Any, value: float) -> None:
        self._study(study).tell(handle, value)

    def close(self) -> None:
        pass


_STORAGES: dict[str, Any] = {}


def _optuna_storage(url: str) -> Any:
    """One RDBStorage per process and URL (cached, as ``optuna.load_study(storage=url)`` does)."""
    import optuna

    if url not in _STORAGES:
        _STORAGES[url] = optuna.storages.get_storage(
            optuna.storages.RDBStorage(url, engine_kwargs=_optuna_engine_kwargs(url)))
    return _STORAGES[url]


def _optuna_engine_kwargs(url: str) -> dict:
    # Enough connections for every client thread of a process (SQLAlchemy's default is 5 + 10).
    return {} if url.startswith("sqlite") else {"pool_size": 16, "max_overflow": 16}


def suggest(trial: Any) -> dict[str, Any]:
    """HAS_SPACE, define-by-run: the conditional param is suggested inside an ``if``."""
    params = {
        "cell": trial.suggest_categorical("cell", ["conv3x3", "conv1x1", "skip", "pool"]),
        "norm": trial.suggest_categorical("norm", ["batch", "layer", "none"]),
        "act": trial.suggest_categorical("act", ["relu", "gelu", "silu"]),
        "depth": trial.suggest_int("depth", 1, 8),
        "width": trial.suggest_int("width", 16, 512, log=True),
        "lr": trial.suggest_float("lr", 1e-5, 1e-1, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
    }
    if params["depth"] >= 5:
        params["width_deep"] = trial.suggest_int("width_deep", 16, 512, log=True)
    return params


def _make_client(workload: Workload) -> _DyespClient | _OptunaClient:
    if workload.system == "dyesp":
        return _DyespClient(workload.target)
    return _OptunaClient(workload.target)


def _client_thread(workload: Workload, client: int, tickets: list, barrier: Any,
                   records: list[Record], errors: list[str], starts: list[float]) -> None:
    study_index = client % len(workload.studies)
    study = workload.studies[study_index]
    driver = _make_client(workload)
    try:
        if workload.warmup:
            handle, _, params = driver.ask(study)
            driver.tell(study, handle, objective(params))
        elif isinstance(driver, _OptunaClient):  # load the study before the clock starts
            driver._study(study)
    except Exception as error:
        errors.append(f"warm-up: {error!r}")
    barrier.wait()
    start = time.monotonic()
    starts.append(start)
    deadline = start + workload.budget_s
    ticket = tickets[study_index]
    while time.monotonic() < deadline:
        with ticket.get_lock():
            if ticket.value <= 0:
                break
            ticket.value -= 1
        refused = getattr(driver, "refused", 0)
        try:
            t0 = time.monotonic()
            handle, number, params = driver.ask(study)
            t1 = time.monotonic()
            value = objective(params)
            t2 = time.monotonic()
            driver.tell(study, handle, value)
            t3 = time.monotonic()
        except Exception as error:
            errors.append(repr(error)[:500])
            continue
        trial_id = handle if isinstance(driver, _DyespClient) else handle._trial_id
        records.append(Record(study_index, number, t0, t1 - t0, t3 - t2, t3, trial_id,
                              getattr(driver, "refused", 0) - refused))
    driver.close()


def _client_process(workload: Workload, clients: list[int], tickets: list, barrier: Any,
                    results: Any) -> None:
    records: list[Record] = []
    errors: list[str] = []
    starts: list[float] = []
    threads = [threading.Thread(target=_client_thread,
                                args=(workload, c, tickets, barrier, records, errors, starts))
               for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(([asdict(r) for r in records], errors, min(starts, default=math.nan)))


def drive(workload: Workload, n_clients: int, max_procs: int) -> dict:
    """Run ``n_clients`` clients (in at most ``max_procs`` spawned processes) to completion."""
    context = multiprocessing.get_context("spawn")
    n_procs = min(n_clients, max_procs)
    groups = [list(range(i, n_clients, n_procs)) for i in range(n_procs)]
    tickets = [context.Value("q", workload.quota) for _ in workload.studies]
    barrier = context.Barrier(n_clients + 1)
    results = context.Queue()
    procs = [context.Process(target=_client_process,
                             args=(workload, group, tickets, barrier, results), daemon=True)
             for group in groups]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=1800)  # every client connected (and warmed up): the clock starts
    records: list[dict] = []
    errors: list[str] = []
    starts: list[float] = []
    for _ in procs:
        got, errs, start = results.get(timeout=workload.budget_s + 1800)
        records += got
        errors += errs
        starts.append(start)
    for proc in procs:
        proc.join(timeout=60)
    return {"records": records, "errors": errors,
            "start": min(s for s in starts if not math.isnan(s)) if records else math.nan}


# --- statistics ------------------------------------------------------------------------------

def percentile(samples: list[float], q: float) -> float:
    """Nearest rank; milliseconds."""
    ordered = sorted(samples)
    return 1000 * ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def summarise(records: list[dict], start: float) -> dict:
    out: dict[str, Any] = {"pairs": len(records)}
    if not records:
        return out | {"pairs_per_s": 0.0, "wall_s": 0.0, "bands": {}}
    wall = max(r["end"] for r in records) - start
    out |= {"wall_s": round(wall, 3), "pairs_per_s": round(len(records) / wall, 2),
            "refused": sum(r.get("refused", 0) for r in records),
            "max_history": max(r["number"] for r in records) + 1, "bands": {}}
    by_band: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_band[band_of(r["number"])].append(r)
    for _, _, name in BANDS:
        rows = by_band.get(name)
        if not rows:
            continue
        span = max(r["end"] for r in rows) - min(r["start"] for r in rows)
        asks = [r["ask_s"] for r in rows]
        tells = [r["tell_s"] for r in rows]
        out["bands"][name] = {
            "pairs": len(rows), "pairs_per_s": round(len(rows) / span, 2) if span > 0 else None,
            "ask_p50_ms": round(percentile(asks, 0.5), 2),
            "ask_p99_ms": round(percentile(asks, 0.99), 2),
            "tell_p50_ms": round(percentile(tells, 0.5), 2),
            "tell_p99_ms": round(percentile(tells, 0.99), 2),
            "history": [min(r["number"] for r in rows), max(r["number"] for r in rows) + 1],
        }
    return out


# --- DyESP: server, studies, prefill ---------------------------------------------------------

def create_dyesp_studies(url: str, n: int, label: str) -> list[str]:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as http:
        ids = []
        for i in range(n):
            # Many clients per study: deterministic mode (one sequential client) does not apply,
            # and its waits for due retrainings are not what a throughput benchmark measures.
            response = http.post("/v1/studies", json={
                "name": f"{label}-{i}", "direction": "minimize", "space": HAS_SPACE, "seed": i,
                "deterministic": False})
            response.raise_for_status()
            ids.append(response.json()["id"])
    return ids


def prefill_configs(n: int, seed: int = 0) -> list[tuple[dict, float]]:
    """The random history both systems get: uniform configurations and their objective."""
    from service.engine.space import SearchSpace

    space = SearchSpace.from_dict(HAS_SPACE)
    rng = np.random.default_rng(seed)
    configs = [space.validate_config(space.sample(rng)) for _ in range(n)]
    return [(c, objective(c)) for c in configs]


def prefill_dyesp(database_url: str, study_id: str, history: list[tuple[dict, float]]) -> None:
    """Finished trials written through the service's data layer, under the study lock, exactly as
    enqueue + ask + tell would leave them (strategy "user"), in one transaction."""
    from service.db import study_queries, trial_queries
    from service.db.models import Study, utcnow
    from service.db.session import make_engine, make_sessionmaker, transaction

    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            owner = session.get(Study, study_id).owner_id
            lock = study_queries.lock_study(session, owner, study_id)
            numbers = study_queries.take_numbers(session, study_id, lock, len(history))
            now = utcnow()
            for number, (params, value) in zip(numbers, history, strict=True):
                trial_queries.add_trial(
                    session, study_id, number, state="complete", params=params, value=value,
                    proposal={"strategy": "user", "exploration": 0.0, "predicted": None},
                    revision=lock.revision, static_metrics={}, created_at=now, started_at=now,
                    heartbeat_at=now, completed_at=now)
    finally:
        engine.dispose()


def check_dyesp(database_url: str, study_ids: list[str]) -> dict[str, dict[str, int]]:
    """Trials by state per study, read straight from the database."""
    from service.db.session import make_engine, make_sessionmaker
    from service.db.study_queries import state_counts

    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            return state_counts(session, study_ids)
    finally:
        engine.dispose()


# --- Optuna: studies, prefill ----------------------------------------------------------------

def create_optuna_studies(storage: str, n: int, label: str) -> list[str]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [f"{label}-{i}-{uuid.uuid4().hex[:6]}" for i in range(n)]
    for name in names:
        optuna.create_study(study_name=name, storage=_optuna_storage(storage),
                            direction="minimize")
    return names


def prefill_optuna(storage: str, name: str, history: list[tuple[dict, float]]) -> None:
    """The rows ``study.add_trials`` would write (a trial, its params, its value), inserted in
    bulk under the study row lock ``create_new_trial`` takes: ``add_trials`` writes one trial per
    transaction with a count of past trials each, minutes for 10,000 trials on this machine."""
    from datetime import datetime

    import optuna
    from optuna.distributions import CategoricalDistribution as Cat
    from optuna.distributions import FloatDistribution as Float
    from optuna.distributions import IntDistribution as Int
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from optuna.trial import TrialState
    from sqlalchemy import func, select

    dists = {"cell": Cat(["conv3x3", "conv1x1", "skip", "pool"]),
             "norm": Cat(["batch", "layer", "none"]), "act": Cat(["relu", "gelu", "silu"]),
             "depth": Int(1, 8), "width": Int(16, 512, log=True),
             "lr": Float(1e-5, 1e-1, log=True), "weight_decay": Float(1e-6, 1e-2, log=True),
             "dropout": Float(0.0, 0.5), "width_deep": Int(16, 512, log=True)}
    as_json = {k: distribution_to_json(d) for k, d in dists.items()}
    rdb = optuna.storages.RDBStorage(storage, engine_kwargs=_optuna_engine_kwargs(storage))
    study_id = rdb.get_study_id_from_name(name)
    trials_t, params_t = models.TrialModel.__table__, models.TrialParamModel.__table__
    values_t = models.TrialValueModel.__table__
    now = datetime.now()
    with _create_scoped_session(rdb.scoped_session) as session:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        first = session.scalar(select(func.count()).select_from(trials_t)
                               .where(trials_t.c.study_id == study_id)) or 0
        for i in range(0, len(history), 1000):
            chunk = history[i:i + 1000]
            ids = [row[0] for row in session.execute(
                trials_t.insert().returning(trials_t.c.trial_id, sort_by_parameter_order=True),
                [{"number": first + i + j, "study_id": study_id, "state": TrialState.COMPLETE,
                  "datetime_start": now, "datetime_complete": now}
                 for j in range(len(chunk))])]
            session.execute(params_t.insert(), [
                {"trial_id": tid, "param_name": k, "param_value": dists[k].to_internal_repr(v),
                 "distribution_json": as_json[k]}
                for tid, (params, _) in zip(ids, chunk, strict=True) for k, v in params.items()])
            session.execute(values_t.insert(), [
                {"trial_id": tid, "objective": 0, "value": value,
                 "value_type": models.TrialValueModel.TrialValueType.FINITE}
                for tid, (_, value) in zip(ids, chunk, strict=True)])
    rdb.engine.dispose()


def check_optuna(storage: str, names: list[str]) -> dict[str, dict[str, int]]:
    import optuna

    out = {}
    for name in names:
        study = optuna.load_study(study_name=name, storage=_optuna_storage(storage))
        out[name] = dict(Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False)))
    return out


# --- databases -------------------------------------------------------------------------------

def recreate_database(admin_url: str, name: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# --- py-spy ----------------------------------------------------------------------------------

class Profiler:
    """``py-spy record --format raw`` on every uvicorn worker while a scenario runs."""

    def __init__(self, directory: Path | None, extra: str = "") -> None:
        self.directory = directory
        self.extra = shlex.split(extra)
        self.procs: list[subprocess.Popen] = []

    def start(self, pids: list[int], label: str) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        py_spy = Path(sys.executable).with_name("py-spy")
        for pid in pids:
            self.procs.append(subprocess.Popen(
                [str(py_spy if py_spy.exists() else "py-spy"), "record", "--pid", str(pid),
                 "--format", "raw", "--rate", "100", "--nonblocking", *self.extra,
                 "-o", str(self.directory / f"{label}-{pid}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []


# Leaf frames where a worker thread waits rather than computes (py-spy samples them as active).
_WAITS = ("Connection.wait (", "Runner.run (", "Condition.wait (", "Connection._recv (",
          "Event.wait (", "select (")
_PLUMBING = ("<module>", "_bootstrap", "Thread.run (", "WorkerThread.run (", "_run_sync_endpoint",
             "run_sync", "BaseProcess.", "spawn_main", "_main (", "Process.target",
             "subprocess_started", "Server.run", "asyncio_run", "Runner.run",
             "_run_code (", "_run_module_as_main")


def top_functions(paths: list[Path], n: int = 15) -> dict[str, Any]:
    """From py-spy raw (collapsed) stacks: where worker threads wait (by the nearest service
    frame) and, of the samples on CPU, each function's self and total share."""
    waits: Counter[str] = Counter()
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = on_cpu = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            frames = [_strip_line(f) for f in stack.split(";")]
            k = int(count)
            samples += k
            if frames[-1].startswith(_WAITS):
                where = next((f for f in reversed(frames) if "service/" in f), frames[-1])
                waits[f"{frames[-1].split(' (')[0]} in {where}"] += k
                continue
            on_cpu += k
            self_counts[frames[-1]] += k
            for frame in set(frames):
                if not any(part in frame for part in _PLUMBING):
                    total_counts[frame] += k

    def share(c: int, of: int) -> float:
        return round(100 * c / of, 1) if of else 0.0

    return {"samples": samples, "on_cpu": on_cpu,
            "waits": [(f, share(c, samples)) for f, c in waits.most_common(8)],
            "self": [(f, share(c, on_cpu)) for f, c in self_counts.most_common(n)],
            "total": [(f, share(c, on_cpu)) for f, c in total_counts.most_common(n)]}


def _strip_line(frame: str) -> str:
    """``func (file.py:12)`` -> ``func (file.py)``, so a function's lines add up."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].removeprefix(os.getcwd() + '/')})" if where else name


# --- scenarios -------------------------------------------------------------------------------

@dataclass
class Scenario:
    kind: str  # "one-study" | "many-studies" | "window"
    clients: int
    studies: int
    quota: int  # measured pairs per study
    at: int | None = None  # window scenarios: the history the window ends at

    @property
    def label(self) -> str:
        if self.kind == "window":
            return f"window@{self.at}"
        return self.kind


def plan(args: argparse.Namespace) -> list[Scenario]:
    scenarios: list[Scenario] = []
    kinds = set(args.scenarios.split(","))
    clients = [int(c) for c in args.clients.split(",")]
    if "one-study" in kinds:
        for c in clients:
            quota = args.trials if c == args.headline_clients else args.trials_small
            scenarios.append(Scenario("one-study", c, 1, quota))
    if "many-studies" in kinds:
        for c in clients:
            if c >= 2:
                k = min(args.studies, c)
                scenarios.append(Scenario("many-studies", c, k, args.trials_per_study))
    if "window" in kinds:
        for c in (int(c) for c in str(args.window_clients).split(",") if c):
            for at in (int(a) for a in args.window_at.split(",") if a):
                window = min(args.window, at - c)
                if window >= 1:
                    scenarios.append(Scenario("window", c, 1, window, at))
    return scenarios


def run_scenario(system: str, scenario: Scenario, args: argparse.Namespace, urls: dict,
                 profiler: Profiler) -> dict:
    label = f"{scenario.label}-{scenario.clients}c-{system}"
    prefill = 0
    if scenario.kind == "window":
        prefill = scenario.at - scenario.quota - scenario.clients
    history = prefill_configs(prefill, seed=scenario.at or 0) if prefill else []
    budget = args.dyesp_budget_s if system == "dyesp" else args.optuna_budget_s
    server = None
    prep_start = time.monotonic()
    try:
        if system == "dyesp":
            # Per-owner rate limits off: this measures capacity (Optuna has no limits), and one
            # sequential client on a keep-alive connection now asks faster than the default
            # 50 asks/s of an owner (``DYESP_ASK_RATE_LIMIT``).
            server = start_server(urls["dyesp"], workers=args.workers,
                                  retrain=args.retrain == "on", log=SERVER_LOG,
                                  env={"DYESP_RATE_LIMIT": "", "DYESP_ASK_RATE_LIMIT": ""})
            studies = create_dyesp_studies(server.url, scenario.studies, label)
            if history:
                prefill_dyesp(urls["dyesp"], studies[0], history)
            target = server.url
        else:
            studies = create_optuna_studies(urls["optuna"], scenario.studies, label)
            if history:
                prefill_optuna(urls["optuna"], studies[0], history)
            target = urls["optuna"]
        prep_s = time.monotonic() - prep_start
        workload = Workload(system, target, studies, scenario.quota, budget,
                            warmup=scenario.kind == "window")
        if server is not None:
            profiler.start(server.workers, label)
        try:
            outcome = drive(workload, scenario.clients, args.max_procs)
        finally:
            profiler.stop()
        if system == "dyesp":
            states = check_dyesp(urls["dyesp"], studies)
        else:
            states = check_optuna(urls["optuna"], studies)
    finally:
        if server is not None:
            server.stop()
    summary = summarise(outcome["records"], outcome["start"])
    told = Counter(r["study"] for r in outcome["records"])
    result = {
        "scenario": scenario.label, "kind": scenario.kind, "clients": scenario.clients,
        "studies": scenario.studies, "system": system, "quota_per_study": scenario.quota,
        "prefill": prefill, "warmup_pairs": scenario.clients if scenario.kind == "window" else 0,
        "at": scenario.at, "budget_s": budget, "prep_s": round(prep_s, 1),
        "budget_hit": summary.get("wall_s", 0) >= budget,
        "errors": len(outcome["errors"]), "error_samples": outcome["errors"][:5],
        "study_ids": studies, "told_per_study": [told.get(i, 0) for i in range(len(studies))],
        "states": states, **summary,
    }
    if args.keep_records:
        result["records"] = outcome["records"]
    bands = ", ".join(f"{b} {v['pairs']}p ask p50 {v['ask_p50_ms']:.1f} p99 {v['ask_p99_ms']:.1f}"
                      for b, v in summary.get("bands", {}).items())
    print(f"  {label:34s} {summary['pairs']:>6} pairs {summary.get('pairs_per_s', 0):8.1f}/s "
          f"(prep {prep_s:.0f}s, errors {len(outcome['errors'])}, refused "
          f"{summary.get('refused', 0)}) {bands}", flush=True)
    if outcome["errors"]:
        print(f"    first error: {outcome['errors'][0]}", flush=True)
    return result


# --- report ----------------------------------------------------------------------------------

def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def ratios(results: list[dict]) -> list[dict]:
    """dyesp/optuna pairs/s and optuna/dyesp ask p50 per (scenario, clients, band)."""
    index = {(r["scenario"], r["clients"], r["system"]): r for r in results}
    out = []
    for r in results:
        if r["system"] != "dyesp":
            continue
        other = index.get((r["scenario"], r["clients"], "optuna"))
        if other is None:
            continue
        for band, d in r["bands"].items():
            o = other["bands"].get(band)
            if not o or not d["pairs_per_s"] or not o["pairs_per_s"]:
                continue
            out.append({"scenario": r["scenario"], "clients": r["clients"], "band": band,
                        "pairs_per_s_ratio": round(d["pairs_per_s"] / o["pairs_per_s"], 2),
                        "ask_p50_speedup": round(o["ask_p50_ms"] / d["ask_p50_ms"], 2)})
    return out


def verdicts(results: list[dict], ratio_rows: list[dict], clients: int) -> list[dict]:
    out = []
    at16 = [r for r in ratio_rows if r["clients"] == clients]
    if at16:
        worst = min(at16, key=lambda r: r["pairs_per_s_ratio"])
        out.append({"bar": f">= 10x Optuna's pairs/s at {clients} clients",
                    "pass": worst["pairs_per_s_ratio"] >= 10,
                    "detail": "; ".join(f"{r['scenario']} {r['band']}: {r['pairs_per_s_ratio']}x"
                                        for r in at16)
                              + f" (worst {worst['pairs_per_s_ratio']}x)"})
    dy = {(r["scenario"], r["clients"]): r for r in results if r["system"] == "dyesp"}
    window_clients = sorted({c for scenario, c in dy if scenario.startswith("window@")},
                            key=lambda c: (c != clients, c))
    for c in window_clients or [clients]:
        out += _latency_verdicts(results, dy, c)
    return out


def _latency_verdicts(results: list[dict], dy: dict, clients: int) -> list[dict]:
    """Bars 2 and 3 from the window scenarios at ``clients`` clients (or, with no window, from
    the largest grown one-study run's 1k-10k band)."""
    out = []
    big = dy.get(("window@10000", clients))
    big_band = big["bands"].get("1k-10k") if big else None
    if big_band is None:
        grown = [r for r in results if r["system"] == "dyesp" and r["kind"] == "one-study"
                 and "1k-10k" in r["bands"]]
        if grown:
            big = max(grown, key=lambda r: r["bands"]["1k-10k"]["pairs"])
            big_band = big["bands"]["1k-10k"]
    if big_band is not None:
        out.append({"bar": f"ask p99 < 50 ms at 10,000 trials ({big['clients']} clients)",
                    "pass": big_band["ask_p99_ms"] < 50,
                    "detail": f"{big['scenario']}: ask p99 {big_band['ask_p99_ms']:.1f} ms, "
                              f"p50 {big_band['ask_p50_ms']:.1f} ms over histories "
                              f"{big_band['history']}"})
    small = dy.get(("window@100", clients))
    small_band = small["bands"].get("0-100") if small else None
    if big_band is not None and small_band is not None:
        r50 = big_band["ask_p50_ms"] / small_band["ask_p50_ms"]
        r99 = big_band["ask_p99_ms"] / small_band["ask_p99_ms"]
        out.append({"bar": f"ask latency at 10,000 trials within 2x of at 100 ({clients} clients)",
                    "pass": r50 <= 2,
                    "detail": f"p50 {big_band['ask_p50_ms']:.1f} / {small_band['ask_p50_ms']:.1f} "
                              f"ms = {r50:.2f}x; p99 {big_band['ask_p99_ms']:.1f} / "
                              f"{small_band['ask_p99_ms']:.1f} ms = {r99:.2f}x"})
    return out


def render(report: dict) -> str:
    meta = report["meta"]
    lines = [
        "# Load: ask/tell throughput and latency under concurrent clients", "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['cpus']} CPU cores, {meta['platform']}, Python {meta['python']}, "
        f"PostgreSQL {meta['postgres']}, Optuna {meta['optuna']}. Code: {meta['git']}.  ",
        f"DyESP: uvicorn with {meta['workers']} worker process(es), auth and rate limits off, "
        "retraining "
        f"{meta['retrain']} (no Redis: the in-server fallback, a spawned child process), "
        "one BLAS thread. Clients: httpx, one keep-alive connection per client thread, no SDK; "
        "an ask refused with 429 (the owner's queue in a server process is full) is sent again "
        "after its Retry-After, as the SDK does, and counted as *refused* (the wait is in that "
        "ask's latency); any other error is not retried.  ",
        "Optuna: `TPESampler()` defaults, `RDBStorage` on the same PostgreSQL server "
        "(own database), ask + define-by-run `suggest_*` + tell in the client processes.  ",
        f"Clients: spawned processes (at most {meta['max_procs']}; threads inside them beyond "
        "that), sharing the machine's cores with the server and PostgreSQL.  ",
        f"Started {meta['started']}, took {meta['took_s'] / 60:.1f} min; load average "
        f"(1, 5, 15 min) {meta['loadavg_start']} at the start, {meta['loadavg_end']} at the end "
        "(anything above the core count means other work shared the machine).", "",
        "How each band is measured: *grow* scenarios start from an empty study and run until "
        "the study's quota or the wall budget (DyESP "
        f"{meta['dyesp_budget_s']:.0f} s, Optuna {meta['optuna_budget_s']:.0f} s); every pair "
        "is binned by the trial number its ask returned (the history at that ask). *window@H* "
        "prefills one study with H - W - clients finished random trials (identical "
        "configurations and values for both systems, written straight to each storage), runs "
        "one unrecorded warm-up pair per client, then W measured pairs, whose asks see "
        "histories in [H - W, H). pairs/s of a band = its pairs / (last tell end - first ask "
        "start among them); the *all* pairs/s is over the whole measured phase.", "",
        "| scenario | clients | studies | system | pairs | pairs/s (all) | band | history | "
        "pairs/s | ask p50 | ask p99 | tell p50 | tell p99 | dyesp/optuna pairs/s |",
        "|---|---:|---:|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    ratio_of = {(r["scenario"], r["clients"], r["band"]): r["pairs_per_s_ratio"]
                for r in report["ratios"]}
    for r in report["results"]:
        first = True
        bands = r["bands"] or {"-": None}
        for band, b in bands.items():
            pairs = f"{r['pairs']:,}" + (" (budget)" if r["budget_hit"] else "")
            if r["errors"]:
                pairs += f", {r['errors']} errors"
            if r.get("refused"):
                pairs += f", {r['refused']} refused"
            head = (f"| {r['scenario']} | {r['clients']} | {r['studies']} | {r['system']} | "
                    f"{pairs} | {_fmt(r.get('pairs_per_s'))} |" if first else "| | | | | | |")
            first = False
            if b is None:
                lines.append(head + " - | | | | | | | |")
                continue
            ratio = ratio_of.get((r["scenario"], r["clients"], band)) if r["system"] == "dyesp" \
                else None
            lines.append(
                f"{head} {band} | {b['history'][0]:,}-{b['history'][1]:,} | "
                f"{_fmt(b['pairs_per_s'])} | {_fmt(b['ask_p50_ms'])} | {_fmt(b['ask_p99_ms'])} | "
                f"{_fmt(b['tell_p50_ms'])} | {_fmt(b['tell_p99_ms'])} | "
                f"{'' if ratio is None else f'{ratio:.2f}x'} |")
    lines += ["", "Latencies in ms (nearest-rank percentiles). *(budget)*: the wall budget ended "
              "the scenario before its quota.", "", "## Bar", ""]
    for v in report["verdicts"]:
        lines.append(f"- **{'PASS' if v['pass'] else 'FAIL'}** {v['bar']}: {v['detail']}")
    if not report["verdicts"]:
        lines.append("- (not evaluated: this run lacks the scenarios the bar needs)")
    if report.get("profile"):
        prof = report["profile"]
        lines += ["", f"## py-spy: uvicorn workers ({prof['samples']:,} samples, "
                  f"{prof['on_cpu']:,} on CPU)", "", "Waiting (% of all samples):", ""]
        lines += [f"- {p}% `{f}`" for f, p in prof["waits"]]
        lines += ["", "On CPU (% of on-CPU samples):", "",
                  "| self % | function | | total % | function |", "|---:|---|---|---:|---|"]
        for (fs, ps), (ft, pt) in zip(prof["self"], prof["total"], strict=False):
            lines.append(f"| {ps} | `{fs}` | | {pt} | `{ft}` |")
    return "\n".join(lines) + "\n"


def _postgres_version(url: str) -> str:
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url)
        with engine.connect() as connection:
            version = connection.execute(text("show server_version")).scalar()
        engine.dispose()
        return str(version)
    except Exception:
        return "n/a"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of a few minutes: small quotas, 10-20 s budgets, "
                             "8 client processes")
    parser.add_argument("--systems", default="dyesp,optuna")
    parser.add_argument("--scenarios", default="one-study,many-studies,window")
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--trials", type=int, default=10_000,
                        help="one-study quota at --headline-clients clients")
    parser.add_argument("--headline-clients", type=int, default=16)
    parser.add_argument("--trials-small", type=int, default=1_000,
                        help="one-study quota at the other client counts")
    parser.add_argument("--studies", type=int, default=16,
                        help="many-studies: clients spread round-robin over this many studies")
    parser.add_argument("--trials-per-study", type=int, default=200)
    parser.add_argument("--window-at", default="100,1000,10000",
                        help="window scenarios: the history each window ends at")
    parser.add_argument("--window", type=int, default=320, help="measured pairs per window")
    parser.add_argument("--window-clients", default="16,1",
                        help="window scenarios at each of these client counts")
    parser.add_argument("--dyesp-budget-s", type=float, default=900)
    parser.add_argument("--optuna-budget-s", type=float, default=60)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--retrain", choices=("on", "off"), default="on")
    parser.add_argument("--max-procs", type=int, default=16, help="client processes at most")
    parser.add_argument("--admin-url", default=os.environ.get("DYESP_TEST_POSTGRES_URL",
                                                              ADMIN_URL))
    parser.add_argument("--dyesp-url", default=None,
                        help="DyESP database (default: a fresh database dyesp_load_<pid>, "
                             "dropped at the end unless --keep-databases)")
    parser.add_argument("--optuna-url", default=None,
                        help="Optuna storage (default: a fresh database optuna_load_<pid>)")
    parser.add_argument("--keep-databases", action="store_true",
                        help="keep the databases this run created")
    parser.add_argument("--py-spy", type=Path, default=None,
                        help="record the uvicorn workers with py-spy into this folder")
    parser.add_argument("--py-spy-args", default="",
                        help='more py-spy record options, e.g. "--gil" (only the thread '
                             "holding the GIL: a CPU profile without lock and GIL waits)")
    parser.add_argument("--keep-records", action="store_true", help="every pair in the JSON")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        quick = dict(trials=200, trials_small=40, studies=4, trials_per_study=20,
                     window_at="100,1000", window=32, dyesp_budget_s=20.0, optuna_budget_s=10.0,
                     max_procs=8)
        for name, value in quick.items():
            if parser.get_default(name) == getattr(args, name):
                setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.command_line = "python -m benchmarks.load " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    systems = [s for s in args.systems.split(",") if s]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_start = [round(x, 2) for x in os.getloadavg()]
    git_start = _git_state()
    t0 = time.monotonic()
    # Databases of their own (the pid in the name): two runs at once never drop each other's.
    created = []
    urls: dict[str, str | None] = {"dyesp": args.dyesp_url, "optuna": args.optuna_url}
    for system in ("dyesp", "optuna"):
        if system in systems and urls[system] is None:
            created.append(f"{system}_load_{os.getpid()}")
            urls[system] = recreate_database(args.admin_url, created[-1])
    try:
        return _run(args, systems, urls, started, load_start, git_start, t0)
    finally:
        if not args.keep_databases:
            for name in created:
                drop_database(args.admin_url, name)


def _run(args: argparse.Namespace, systems: list[str], urls: dict, started: str,
         load_start: list[float], git_start: str, t0: float) -> dict:
    if "dyesp" in systems:
        from service.db import migrate
        from service.db.session import make_engine

        engine = make_engine(urls["dyesp"])
        migrate.upgrade(engine)  # once, before several workers race for the advisory lock
        engine.dispose()
    profiler = Profiler(args.py_spy, args.py_spy_args)
    results = []
    scenarios = plan(args)
    print(f"load: {len(scenarios)} scenarios x {systems}, workers={args.workers}, "
          f"retrain={args.retrain}", flush=True)
    for scenario in scenarios:
        for system in systems:
            results.append(run_scenario(system, scenario, args, urls, profiler))
    ratio_rows = ratios(results)
    git_end = _git_state()
    git = git_start if git_end == git_start else f"{git_start} at the start, {git_end} at the end"

    report = {
        "meta": {"command": args.command_line,
                 "cpus": os.cpu_count(), "platform": platform.platform(terse=True),
                 "python": platform.python_version(), "postgres": _postgres_version(
                     args.admin_url), "optuna": _optuna_version(), "workers": args.workers,
                 "retrain": args.retrain, "max_procs": args.max_procs, "git": git,
                 "dyesp_budget_s": args.dyesp_budget_s, "optuna_budget_s": args.optuna_budget_s,
                 "started": started, "took_s": round(time.monotonic() - t0, 1),
                 "loadavg_start": load_start, "loadavg_end": [round(x, 2) for x in
                                                              os.getloadavg()]},
        "results": results, "ratios": ratio_rows,
        "verdicts": verdicts(results, ratio_rows, args.headline_clients),
    }
    if args.py_spy is not None:
        paths = sorted(args.py_spy.glob("*.txt"))
        if paths:
            report["profile"] = top_functions(paths)
    text = render(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.md").write_text(text)
    (args.out / "load.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def _git_state() -> str:
    """The commit measured, and whether the service's code differed from it (uncommitted)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "service"],
                               capture_output=True, text=True, timeout=10).stdout.split()
        changed = [f for f in dirty if f.startswith("service/")]
        return head + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def _optuna_version() -> str:
    try:
        import optuna

        return optuna.__version__
    except ImportError:
        return "not installed"


if __name__ == "__main__":
    main()
