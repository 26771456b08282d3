"""Every error leaves as an RFC 9457 problem document naming the field and the reason."""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.errors import DomainError
from service.schemas import Problem

log = logging.getLogger("dyesp.api")
RETRY_AFTER_S = "2"
# SQLSTATEs of a database too slow rather than wrong: statement_timeout (or a cancel), lock_timeout,
# idle_in_transaction_session_timeout. Retrying is safe; a 500 would blame the request.
_TIMEOUT_SQLSTATES = frozenset({"57014", "55P03", "25P03"})


def _encodable(text: str) -> str:
    """Input echoed in a problem (a dict key in a field path) may hold a lone surrogate, which
    JSON can spell (``"\\udc00"``) but UTF-8 cannot encode: show it escaped, not fail with a 500."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def problem(status: int, detail: str, errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
        "detail": _encodable(detail),
        "errors": [{key: _encodable(value) for key, value in e.items()} for e in errors or []]}
    return JSONResponse(body, status_code=status, headers=headers,
                        media_type="application/problem+json")


# pydantic names the union member that failed at the end of a location; users need the field.
_UNION_TAGS = {"int", "float", "str", "bool", "none", "list", "dict"}


def field_path(loc: tuple[Any, ...]) -> str:
    """("body", "space", "params", 1, "high", "float") -> "space.params[1].high"."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    while len(parts) > 1 and isinstance(parts[-1], str) and parts[-1] in _UNION_TAGS:
        parts.pop()
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in str(part):
            continue  # pydantic's internal union/validator tags say nothing to a user
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route serves on this path (Starlette's own 405 lists only the first
    route's, though GET and POST of one path are separate routes)."""
    scope = {**request.scope, "method": "GET"}
    methods: set[str] = set()
    routes = list(app.router.routes)
    while routes:
        route = routes.pop()
        inner = getattr(route, "original_router", None)  # an included router: look inside
        if inner is not None:
            routes.extend(inner.routes)
        elif route.matches(scope)[0] is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, error: DomainError) -> JSONResponse:
        errors = [{"field": error.field, "message": getattr(error, "reason", error.detail)}] \
            if error.field else []
        retry_after = getattr(error, "retry_after", None)  # TooManyRequests (429)
        if getattr(error, "delay_s", 0) > 0:
            await asyncio.sleep(error.delay_s)  # type: ignore[attr-defined]
        return problem(error.status, error.detail, errors,
                       headers={"Retry-After": str(retry_after)} if retry_after else None)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, error: RequestValidationError) -> JSONResponse:
        errors: list[dict[str, str]] = []
        for item in error.errors():
            field = field_path(tuple(item.get("loc", ())))
            message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
            if item.get("type") == "json_invalid":  # loc is ("body", offset), not a field
                field = "body"
                message = (f"invalid JSON at character {item['loc'][-1]}: "
                           f"{(item.get('ctx') or {}).get('error', 'decode error')}")
            if item.get("type") in ("int_type", "float_type", "string_type", "bool_type"):
                message += f", got {item.get('input')!r}"[:120]
            if any(e["field"] == field for e in errors):
                continue  # one line per field, not one per union member
            errors.append({"field": field, "message": message})
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(422, detail or "invalid request", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(app, request))
        return problem(error.status_code, _unparsable(error) or str(error.detail),
                       headers=headers or None)

    @app.exception_handler(RecursionError)
    async def _too_deep(_: Request, __: RecursionError) -> JSONResponse:
        return problem(400, "body: JSON nested too deeply")

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _db_down(_: Request, error: Exception) -> JSONResponse:
        if _timed_out(error):
            return _db_too_slow(error)
        log.warning("database unavailable: %s", str(error).splitlines()[0])
        return problem(503, "the database is unavailable; retry shortly",
                       headers={"Retry-After": RETRY_AFTER_S})

    @app.exception_handler(DBAPIError)
    async def _db_error(_: Request, error: DBAPIError) -> JSONResponse:
        if _timed_out(error):
            return _db_too_slow(error)
        if error.connection_invalidated:
            return problem(503, "the database connection was lost; retry shortly",
                           headers={"Retry-After": RETRY_AFTER_S})
        log.exception("database error")
        return problem(500, "internal database error")


def _timed_out(error: Exception) -> bool:
    """A database timeout, whichever DBAPIError subclass the driver maps its SQLSTATE to."""
    return getattr(getattr(error, "orig", None), "sqlstate", None) in _TIMEOUT_SQLSTATES


def _db_too_slow(error: Exception) -> JSONResponse:
    log.warning("database timeout: %s", str(error).splitlines()[0])
    return problem(503, "the database did not answer in time; retry shortly",
                   headers={"Retry-After": RETRY_AFTER_S})


def _unparsable(error: StarletteHTTPException) -> str | None:
    """FastAPI answers any body it cannot parse with one generic 400; say why, where we know."""
    cause = error.__cause__
    if error.status_code != 400 or cause is None:
        return None
    if isinstance(cause, RecursionError):
        return "body: JSON nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return "body: not valid UTF-8"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return "body: a number has too many digits"
    return None


# Statuses any /v1 operation may answer, all as problem documents.
COMMON_ERRORS = (400, 401, 404, 409, 413, 422, 429, 503)


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI schema say what the handlers above send: every error status as
    ``application/problem+json`` with the Problem schema, on every operation."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                             routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = \
            Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        problem_content = {"application/problem+json": {
            "schema": {"$ref": "#/components/schemas/Problem"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status in COMMON_ERRORS:
                    responses[str(status)] = {"description": HTTPStatus(status).phrase,
                                              "content": problem_content}
                responses["405"] = {"description": "Method Not Allowed",
                                    "content": problem_content}
        schema["components"]["schemas"].pop("HTTPValidationError", None)
        schema["components"]["schemas"].pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
