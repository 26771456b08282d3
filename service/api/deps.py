"""Typed dependencies (FastAPI full-stack template style): session, context, current owner
(rate-limited)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator
from sqlalchemy.orm import Session

from service.admission import RateLimiter
from service.db.key_queries import resolve_owner, secret_digest
from service.schemas import reject_unstorable
from service.usecases.context import UseCaseContext


# Dependencies that only read app.state are async: a sync one costs a hop to the threadpool and
# back, and under CPU load each hop waits for the GIL (milliseconds per hop, per request).
async def get_context(request: Request) -> UseCaseContext:
    return request.app.state.context


def get_session(context: Annotated[UseCaseContext, Depends(get_context)]) -> Iterator[Session]:
    with context.sessions() as session:
        yield session


async def get_rate_limiter(request: Request) -> RateLimiter:
    return request.app.state.rate_limiter


ContextDep = Annotated[UseCaseContext, Depends(get_context)]
SessionDep = Annotated[Session, Depends(get_session)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


# The bearer scheme, declared for the OpenAPI document only (Swagger UI's Authorize button):
# with auto_error off it never rejects a request, and _authenticate below still decides.
BEARER = HTTPBearer(scheme_name="bearer", auto_error=False,
                    description="An API key from `dyesp keys create NAME`. With auth off (the "
                                "loopback default), requests without one act as the local owner.")
BearerDoc = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


def current_owner(request: Request, context: ContextDep, limiter: RateLimiterDep,
                  _bearer: BearerDoc = None) -> int:
    """The owner of the bearer key, its request counted under DYESP_RATE_LIMIT (429 past it)."""
    owner_id = _authenticate(request, context)
    limiter.hit("requests", owner_id)
    return owner_id


def _authenticate(request: Request, context: UseCaseContext) -> int:
    """The owner of the bearer key. With auth off (loopback only), requests without a key act as
    the local owner; a key that is sent is still checked."""
    header = request.headers.get("authorization")
    if header is None:
        local = request.app.state.local_owner_id
        if local is not None:
            return local
        raise _unauthorized("missing `Authorization: Bearer <key>` header")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise _unauthorized("malformed Authorization header: expected `Bearer <key>`")
    secret = secret.strip()
    digest = secret_digest(secret)
    owner_id = context.verified_keys.owner(digest)
    if owner_id is not None:
        return owner_id
    with context.sessions() as session:
        owner_id = resolve_owner(session, secret, digest)
    if owner_id is None:
        raise _unauthorized("unknown or revoked API key")
    context.verified_keys.remember(digest, owner_id)
    return owner_id


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


CurrentOwner = Annotated[int, Depends(current_owner)]


def asking_owner(request: Request, context: ContextDep, limiter: RateLimiterDep,
                 _bearer: BearerDoc = None) -> int:
    """``current_owner`` for an ask, counted under DYESP_ASK_RATE_LIMIT as well (in one threadpool
    hop, not two)."""
    owner_id = current_owner(request, context, limiter)
    limiter.hit("asks", owner_id)
    return owner_id


AskingOwner = Annotated[int, Depends(asking_owner)]


# Bounded path parameters: an out-of-range id (or a NUL PostgreSQL cannot compare) is a 422 here,
# not a database error later.
StudyId = Annotated[str, Path(min_length=1, max_length=64), AfterValidator(reject_unstorable)]
TrialId = Annotated[int, Path(ge=0, le=2**63 - 1)]
# Paging: an offset past any real table is a 422, not a database integer overflow (a 500).
MAX_OFFSET = 2**53 - 1
