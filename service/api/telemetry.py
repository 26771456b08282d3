"""Prometheus telemetry: request counts and latencies per route, results told by state.

Under several uvicorn workers each process counts only its own requests, and a scrape reaches
one of them at random: ``/metrics`` would jump between workers' partial counts. So ``dyesp serve
--workers N`` (N > 1) runs prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``,
set before any worker imports prometheus_client): each process writes its values to files there,
and ``exposition`` sums every process's files, the exited ones' included (their counts happened).

(Not to be confused with a study's static metrics, the numbers a client measures per candidate.)
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Telemetry:
    """One registry per app, so several apps in one process (tests) don't collide.

    Aggregate only, by design: no label names a study, an owner or a key, so the endpoint can stay
    open to a Prometheus scraper without leaking one tenant's activity to another, and a scrape
    costs the same however much data the tenants hold (it reads no table)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("dyesp_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram(
            "dyesp_request_seconds", "HTTP request latency", ["method", "route"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.told = Counter("dyesp_trials_told", "Results told, by the state they set",
                            ["state"], registry=self.registry)
        self.coalesced = Counter("dyesp_asks_coalesced",
                                 "Asks answered from the engine batch of another ask of their "
                                 "study (usecases/coalescing.py)", registry=self.registry)

    def exposition(self) -> bytes:
        """The text a scrape gets: every worker process's values summed in multiprocess mode,
        else this app's registry."""
        if os.environ.get(MULTIPROCESS_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


class TelemetryMiddleware:
    """Pure ASGI middleware: labels by route template (not raw path) to keep cardinality bounded."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.telemetry.requests.labels(scope["method"], template, str(status)).inc()
            self.telemetry.latency.labels(scope["method"], template).observe(
                time.perf_counter() - start)
