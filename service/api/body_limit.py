"""The request-body limit: a body over ``max_body_bytes`` is refused with a 413 before a route
parses it, whether it announces its length or streams in chunks."""

from __future__ import annotations

import json
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
    body = json.dumps({"type": "about:blank", "title": HTTPStatus(413).phrase, "status": 413,
                       "detail": f"body: at most {limit} bytes allowed", "errors": []}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
