"""When to retry a request and how long to wait: exponential backoff with full jitter."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

__all__ = ["NOT_APPLIED_STATUSES", "RETRY_STATUSES", "RetryPolicy", "Retryable",
           "may_retry_status", "parse_retry_after"]

# Refused before it took effect (a rate limit, a full ask queue: 429 + Retry-After): sending it
# again is safe for any call, even one that is not idempotent.
NOT_APPLIED_STATUSES = frozenset({429})
# Gateway errors and "database unavailable": the request did not take effect, or is idempotent.
RETRY_STATUSES = frozenset({502, 503, 504}) | NOT_APPLIED_STATUSES


class Retryable(Enum):
    """Which failures a call may retry, by how safe it is to send it twice."""

    ALWAYS = "always"  # idempotent: GETs, delete, tell, heartbeat, ask with a client_id
    UNSENT = "unsent"  # not idempotent (create, enqueue): only if the request never left
    NEVER = "never"


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, honouring the server's ``Retry-After``.

    Full jitter (a uniform draw up to the exponential cap) spreads the retries of many workers
    that failed together, so a recovering server is not hit by a synchronized wave.

    Example::

        policy = RetryPolicy(retries=3, base_s=0.5)
        client = Client("http://127.0.0.1:8000", retries=policy)
    """

    retries: int = 5
    base_s: float = 0.25
    max_s: float = 10.0
    # A server asking for more than this is treated as asking for this: a worker should not stall.
    max_retry_after_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"`retries >= 0` must hold, got retries={self.retries}")
        if not 0 < self.base_s <= self.max_s:
            raise ValueError(f"`0 < base_s <= max_s` must hold, got base_s={self.base_s}, "
                             f"max_s={self.max_s}")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after_s)
        cap = min(self.max_s, self.base_s * 2.0 ** attempt)
        return self.rng.uniform(0.0, cap)


def may_retry_status(status: int, retry: Retryable) -> bool:
    """Whether a call of this kind may be sent again after an answer with this status: a 429 for
    any call but a ``NEVER`` one, the other retry statuses for idempotent calls only."""
    if status in NOT_APPLIED_STATUSES:
        return retry is not Retryable.NEVER
    return status in RETRY_STATUSES and retry is Retryable.ALWAYS


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max((when - now).total_seconds(), 0.0)
