"""The last-resort request deadline: an answer within ``request_timeout_s``, whatever the handler
waits on.

The database timeouts bound what the database enforces, but a frozen server enforces nothing and
a pooled connection to it waits forever. Route handlers run in worker threads, which no
cancellation can stop (anyio even defers the awaiting task's cancellation until the thread
returns), so the app runs in a task of its own: on time-out the client gets a 503 + Retry-After
and the task is left to finish in the background, its late response discarded.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import RETRY_AFTER_S, problem

log = logging.getLogger("dyesp.api")


class DeadlineMiddleware:
    """Pure ASGI middleware; a response that has started streaming is left alone."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = abandoned = False

        async def send_unless_abandoned(message: Message) -> None:
            nonlocal started
            if abandoned:
                return  # the client already has its 503
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, receive, send_unless_abandoned))
        try:
            done, _ = await asyncio.wait({handler}, timeout=self.timeout_s)
        except asyncio.CancelledError:
            handler.cancel()
            raise
        if done or started:
            await handler  # finished (its result or error is ours), or streaming: let it run
            return
        abandoned = True
        handler.add_done_callback(_log_late_failure)
        log.warning("%s %s unanswered after %s s: 503", scope["method"], scope["path"],
                    self.timeout_s)
        response = problem(503, f"the request did not finish within {self.timeout_s:g} s; "
                                "retry shortly", headers={"Retry-After": RETRY_AFTER_S})
        await response(scope, receive, send)


def _log_late_failure(handler: asyncio.Future[None]) -> None:
    """Collect an abandoned handler's outcome, so its error is logged rather than lost."""
    if handler.cancelled():
        return
    error = handler.exception()
    if error is not None:
        first_line = (str(error).splitlines() or [""])[0]
        log.warning("an abandoned request failed later: %s: %s", type(error).__name__, first_line)
