"""`dyesp serve | db | keys | worker | bench | import-optuna`: the one command users and operators
meet."""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile

from service import logging_config
from service.config import get_settings

_BENCHMARKS = {
    "quality": "benchmarks.quality",  # engine vs. peers, trials to target
    "static-metrics": "benchmarks.static_metrics",  # pruner from proxies (naslib_zc)
    "cell-features": "benchmarks.cell_features",  # cells' structure features (naslib_zc)
    "zc-service": "benchmarks.zc_service",  # proxies' search gain through service and SDK
    "retraining": "benchmarks.retraining",  # training time; ask latency during retraining
    "ask-time": "benchmarks.ask_time",  # the engine's time per ask as history grows
    "ask-profile": "benchmarks.ask_profile",  # where an ask's time goes (py-spy)
    "ask-phases": "benchmarks.ask_phases",  # one client's ask on the server, phase by phase
    "transfer": "benchmarks.transfer",  # warm start from past studies, leave one dataset out
    "load": "benchmarks.load",  # server on PostgreSQL under 1-64 clients vs. Optuna's RDBStorage
    "worst-case": "benchmarks.worst_case",  # the costliest asks inside the documented limits
    "isolation": "benchmarks.isolation",  # a flooding tenant's effect on another's latency
    "multifidelity": "benchmarks.multifidelity",  # early stopping: epochs to target vs. peers
    "report-latency": "benchmarks.report_latency",  # a report's cost at 100 / 10,000 trials
    "multi-server": "benchmarks.multi_server",  # servers sharing PostgreSQL + Redis, checked
    "dashboard": "benchmarks.dashboard",  # every dashboard page of a 100,000-trial study
    "parallel": "benchmarks.parallel",  # 8 asynchronous workers vs. sequential, simulated time
    "coalescing": "benchmarks.coalescing",  # coalesced vs. one-by-one asks, simulated engine time
    "gc-threshold": "benchmarks.gc_threshold",  # the collector's young threshold, ask time
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dyesp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API server (applies pending migrations)")
    serve.add_argument("--host", default=None, help="bind address (default DYESP_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default DYESP_PORT, 8000)")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=None,
                       help="log one line per request (default DYESP_ACCESS_LOG, off)")

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply pending Alembic migrations")
    db_commands.add_parser("current", help="print the applied and the newest revision")

    keys = commands.add_parser("keys", help="API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("name", help="a label for the key")
    create.add_argument("--owner", default=None, help="owner name (default: the key's name)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix")
    key_commands.add_parser("list", help="list keys (prefixes only)")

    worker = commands.add_parser("worker", help="run an RQ worker that retrains pruners")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--fork", action="store_true",
                        help="fork a child per job (default: run jobs in the worker process, "
                             "which keeps torch and CUDA initialised once)")

    bench = commands.add_parser("bench", help="benchmarks (needs the [bench] extra)")
    bench.add_argument("which", choices=sorted(_BENCHMARKS))
    bench.add_argument("rest", nargs=argparse.REMAINDER)

    optuna = commands.add_parser(
        "import-optuna", help="copy an Optuna study and its finished trials into a new study "
                              "(needs optuna installed)")
    optuna.add_argument("--storage", required=True,
                        help="the Optuna storage URL, e.g. sqlite:///optuna.db")
    optuna.add_argument("--study", required=True, help="the Optuna study's name")
    optuna.add_argument("--into", default=None,
                        help="the new study's name (default: the Optuna study's)")
    optuna.add_argument("--owner", default=None,
                        help="the owner's name (default: the local owner, 'local')")

    args = parser.parse_args(argv)
    logging_config.configure()
    handlers = {"serve": _serve, "db": _db, "keys": _keys, "worker": _worker, "bench": _bench,
                "import-optuna": _import_optuna}
    return handlers[args.command](args)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.host:
        os.environ["DYESP_HOST"] = args.host
    if args.port:
        os.environ["DYESP_PORT"] = str(args.port)
    if args.access_log is not None:
        os.environ["DYESP_ACCESS_LOG"] = "true" if args.access_log else "false"
    get_settings.cache_clear()
    settings = get_settings()
    try:
        settings.check()
    except ValueError as error:
        print(f"dyesp: {error}", file=sys.stderr)
        return 2
    auth = "on" if settings.auth_enabled else "OFF (embedded default, loopback only)"
    print(f"dyesp: serving on http://{settings.host}:{settings.port} "
          f"database={_redacted(settings.database_url)} auth={auth} "
          f"workers={args.workers} access_log={'on' if settings.access_log else 'off'}",
          flush=True)
    metrics_dir = _multiprocess_metrics_dir() if args.workers > 1 else None
    try:
        # log_config, not the parent's setup: uvicorn applies it in every worker process it
        # starts, the access logger included (its lines take the application's format).
        uvicorn.run("service.asgi:app", host=settings.host, port=settings.port,
                    workers=args.workers, log_level="info", access_log=settings.access_log,
                    log_config=logging_config.log_config())
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _multiprocess_metrics_dir() -> str | None:
    """Several workers share their Prometheus values through files (``api/telemetry.py``): in
    the operator's ``PROMETHEUS_MULTIPROC_DIR``, emptied of an earlier run's files, or in a
    temporary directory this process removes when it ends (returned)."""
    from service.api.telemetry import MULTIPROCESS_ENV  # lazily: other commands need no web stack

    given = os.environ.get(MULTIPROCESS_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):
            os.remove(stale)  # an earlier run's counts would be added to this one's
        return None
    os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="dyesp-metrics-")
    return os.environ[MULTIPROCESS_ENV]


def _db(args: argparse.Namespace) -> int:
    from service.db import migrate
    from service.db.session import make_engine

    settings = get_settings()  # a migration may rightly run long: no statement timeout
    engine = make_engine(settings.database_url, statement_timeout_s=None,
                         connect_timeout_s=settings.db_connect_timeout_s)
    if args.db_command == "upgrade":
        migrate.upgrade(engine)
    print(f"current: {migrate.current(engine)}  head: {migrate.head()}")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from service.db import key_queries, migrate
    from service.db.session import make_engine, make_sessionmaker, transaction

    settings = get_settings()  # a migration may rightly run long: no statement timeout
    engine = make_engine(settings.database_url, statement_timeout_s=None,
                         connect_timeout_s=settings.db_connect_timeout_s)
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        if args.keys_command == "create":
            new = key_queries.create_key(session, args.owner or args.name, args.name)
            print(new.secret)
        elif args.keys_command == "revoke":
            if not key_queries.revoke_key(session, args.prefix):
                print(f"dyesp: no active key with prefix {args.prefix!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.prefix}")
        else:
            for key, owner in key_queries.list_keys(session):
                state = "revoked" if key.revoked_at else "active"
                print(f"{key.prefix}\t{owner.name}\t{key.name}\t{state}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from rq import SimpleWorker, Worker

    from service.retrain_queue import QUEUE_NAME, connect

    settings = get_settings()
    if not settings.redis_url:
        print("dyesp: the worker needs DYESP_REDIS_URL", file=sys.stderr)
        return 2
    worker_class = Worker if args.fork else SimpleWorker
    print(f"dyesp: worker on {_redacted_redis(settings.redis_url)} queue={QUEUE_NAME} "
          f"database={_redacted(settings.database_url)}", flush=True)
    worker = worker_class([QUEUE_NAME], connection=connect(settings.redis_url, timeout_s=None))
    worker.work(burst=args.burst, with_scheduler=True)
    return 0


def _import_optuna(args: argparse.Namespace) -> int:
    from service.db import key_queries, migrate
    from service.db.session import make_engine, make_sessionmaker, transaction
    from service.errors import DomainError
    from service.optuna_import import ImportFailed, import_optuna
    from service.usecases.context import UseCaseContext

    settings = get_settings()
    engine = make_engine(settings.database_url, statement_timeout_s=None,
                         connect_timeout_s=settings.db_connect_timeout_s)
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        owner = key_queries.get_or_create_owner(session, args.owner or key_queries.LOCAL_OWNER)
        owner_id, owner_name = owner.id, owner.name
    ctx = UseCaseContext.from_settings(settings, sessions)
    try:
        report = import_optuna(ctx, owner_id, args.storage, args.study, args.into)
    except (ImportFailed, DomainError) as error:
        print(f"dyesp: import-optuna: {getattr(error, 'detail', error)}", file=sys.stderr)
        return 1
    states = ", ".join(f"{n} {s}" for s, n in sorted(report.by_state.items())) or "no trials"
    print(f"imported {states} into study {report.study_id} {report.name!r} of owner "
          f"{owner_name!r}")
    if report.skipped_unfinished:
        print(f"skipped {report.skipped_unfinished} unfinished (running or waiting) trials")
    for name, (parent, values) in report.conditions.items():
        print(f"condition inferred: {name!r} is active when {parent!r} is one of {values}")
    if report.dropped_params:
        print(f"left out (present in some trials, explained by no discrete param): "
              f"{report.dropped_params}")
    return 0


def _redacted_redis(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


def _bench(args: argparse.Namespace) -> int:
    import runpy
    from pathlib import Path

    # benchmarks/ is not installed: it lives in the checkout the (editable) service comes from.
    checkout = str(Path(__file__).resolve().parents[1])
    if (Path(checkout) / "benchmarks").is_dir() and checkout not in sys.path:
        sys.path.insert(0, checkout)
    module = _BENCHMARKS[args.which]
    sys.argv = [module, *args.rest]
    runpy.run_module(module, run_name="__main__")
    return 0


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
