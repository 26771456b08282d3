"""Prometheus metrics: request counts and latencies per route, results told by state."""

from __future__ import annotations

import time
from http import HTTPStatus

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
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


class MetricsMiddleware:
    """Pure ASGI middleware: labels by route template (not raw path) to keep cardinality bounded."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

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
            self.metrics.requests.labels(scope["method"], template, str(status)).inc()
            self.metrics.latency.labels(scope["method"], template).observe(
                time.perf_counter() - start)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with a 413, counting streamed chunks too."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or {}).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(send, self.max_bytes)


class _BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit. An HTTPException, because
    FastAPI re-raises those from its body parsing (to the app's problem handler: a 413) and turns
    any other error into a 400; a read outside the routes lands in the ``except`` above."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: at most {limit} bytes allowed")


async def _too_large(send: Send, limit: int) -> None:
    import json

    body = json.dumps({"type": "about:blank", "title": HTTPStatus(413).phrase, "status": 413,
                       "detail": f"body: at most {limit} bytes allowed", "errors": []}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
