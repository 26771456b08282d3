"""The FastAPI app factory and its lifespan: migrations, caches, reaper, retrainer."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from service.admission import REQUEST_THREADS, RateLimiter
from service.api import docs, problems
from service.api.body_limit import BodyLimitMiddleware
from service.api.deadline import DeadlineMiddleware
from service.api.routes import health, insights, pruner, studies, trials
from service.api.telemetry import Telemetry, TelemetryMiddleware
from service.config import Settings, get_settings
from service.dashboard import pages as dashboard
from service.db import key_queries, migrate
from service.db.session import make_engine, make_sessionmaker, transaction
from service.retraining import make_retrainer
from service.usecases.ask_tell import reap_stale
from service.usecases.context import UseCaseContext

log = logging.getLogger("dyesp")


def tune_collector(young_threshold: int) -> None:
    """Set the cyclic collector up for a long-lived server process, once it has started.

    - Freeze what startup built (``gc.freeze``): the modules, the app and its routes (about
      130,000 objects) live as long as the process, yet each full collection walked them again:
      about 100 ms, the tail of the report latency (``benchmarks.report_latency``).
    - Collect the young generation after ``young_threshold`` net container allocations
      (``Settings.gc_young_threshold``) instead of CPython's 700; the older generations keep
      their thresholds.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


def create_app(settings: Settings | None = None, *, tune_gc: bool = False) -> FastAPI:
    """Build the app. Nothing touches the database until the lifespan starts.

    ``tune_gc`` (the server processes' entry point, ``service.asgi``, sets it): once started, set
    the cyclic collector up for a long-lived server (``tune_collector``). Not for in-process apps
    (tests): a frozen cycle is never freed, and the thresholds are the whole process's.
    """
    settings = settings or get_settings()
    settings.check()
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size,
                         max_overflow=settings.db_max_overflow,
                         connect_timeout_s=settings.db_connect_timeout_s,
                         statement_timeout_s=settings.db_statement_timeout_s,
                         pool_timeout_s=settings.db_pool_timeout_s)
    sessions = make_sessionmaker(engine)
    retrainer = make_retrainer(settings, sessions)
    context = UseCaseContext.from_settings(settings, sessions, on_told=retrainer.notify,
                                           on_pruner_due=retrainer.request)

    telemetry = Telemetry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
        if settings.migrate_on_start:
            migrate.upgrade(engine)
        app.state.local_owner_id = None
        if not settings.auth_enabled:
            with transaction(sessions) as session:
                app.state.local_owner_id = key_queries.get_or_create_owner(
                    session, key_queries.LOCAL_OWNER).id
        stop = threading.Event()
        reaper = threading.Thread(target=_reap_forever, args=(context, settings, stop),
                                  name="dyesp-reaper", daemon=True)
        reaper.start()
        retrainer.start()
        if tune_gc:
            tune_collector(settings.gc_young_threshold)
        log.info("dyesp ready: database=%s auth=%s retraining=%s",
                 engine.url.render_as_string(hide_password=True),
                 "on" if settings.auth_enabled else "off (loopback only)", retrainer.mode)
        try:
            yield
        finally:
            stop.set()
            retrainer.stop()
            reaper.join(timeout=5)
            engine.dispose()

    app = FastAPI(
        title="DyESP", version="0.1.0", lifespan=lifespan,
        summary="Search-as-a-service for joint hyperparameter-architecture search.",
        docs_url=None, redoc_url=None,  # served from local files by docs.install (no CDN)
    )
    app.state.settings = settings
    app.state.context = context
    app.state.retrainer = retrainer
    app.state.telemetry = telemetry
    # Admission control (service/admission.py): per-owner rate limits; the engine's fair gate is
    # the context's.
    app.state.rate_limiter = RateLimiter.from_settings(settings)
    app.state.engine = engine
    app.state.local_owner_id = None
    problems.install(app)
    problems.document_problems(app)
    for module in (studies, trials, pruner, insights, health):
        app.include_router(module.router)
    docs.install(app)
    dashboard.install(app)
    app.add_middleware(TelemetryMiddleware, telemetry=telemetry)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(DeadlineMiddleware, timeout_s=settings.request_timeout_s)  # outermost
    return app


def _reap_forever(context: UseCaseContext, settings: Settings, stop: threading.Event) -> None:
    while not stop.wait(settings.reaper_interval_s):
        try:
            n = reap_stale(context)
            if n:
                log.info("failed %d trials silent past their heartbeat timeout", n)
        except Exception as error:  # the database may be down; try again next round
            log.warning("reaper: %s", str(error).splitlines()[0])
