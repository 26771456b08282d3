"""Admission control: one tenant can't starve the rest (docs/api-contract.md, "Rate limits and
admission").

Two mechanisms, both keyed by owner (all of an owner's API keys together):

* ``RateLimiter``: per-owner request rates (``DYESP_RATE_LIMIT`` for every /v1 request,
  ``DYESP_ASK_RATE_LIMIT`` for asks), counted by the ``limits`` library with its sliding-window
  counter. With ``DYESP_REDIS_URL`` the counts live in Redis and are shared by every server
  process; without it they live in each process's memory, so an owner gets N x the limit from N
  processes. A Redis that fails (down, slow, missing client library) never fails a request: the
  limiter serves it unlimited (fail open) and logs once.
* ``FairGate``: asks are CPU-bound under the GIL, so a rate alone doesn't isolate tenants (an owner
  under its ask limit can still keep every core busy). At most ``ASK_CONCURRENCY`` asks per process
  run at once; the others wait in one FIFO per owner, served round-robin across owners, so an ask
  waits behind the running one and about one ask per other waiting owner, however many the others
  have in flight. Waits are bounded in time and in number per owner; past either bound the ask is
  refused.

Every refusal is ``TooManyRequests`` (429 + ``Retry-After``): the request did not take effect. Its
answer is held back ``REFUSAL_DELAY_S`` in the event loop, so refusing is no cheap loop to spin in.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from service.config import Settings
from service.errors import TooManyRequests

log = logging.getLogger("dyesp.admission")

# Asks running the engine at once in one server process. The engine is pure Python/numpy under
# the GIL, so a second concurrent ask adds no CPU: it halves the speed of both. Measured
# (benchmarks/isolation.py, 16 flooding clients, 2 cores): the victim's ask p50 was 1.6-2.8x its
# p50 alone with 1 (six runs), 3.0-3.5x with 2 (two runs), the flooder's throughput the same.
# More cores: more server processes (`dyesp serve --workers N`), each with its own gate.
ASK_CONCURRENCY = 1
# Asks of one owner waiting for a slot, per process; more are refused at once (they would only
# hold server threads). Enough for 16 parallel workers of one owner even when one process holds
# most of their connections: with 8, 16 workers on 2 processes had 20 of 400 asks refused
# (benchmarks.load one-study, 16 clients), each then waiting out its Retry-After: ask p99 3.3 s.
MAX_WAITERS_PER_OWNER = 16
# Threads serving the synchronous routes in each server process (anyio's default is 40). Every
# waiting ask holds one, asleep; with three owners' queues full, 16 are left for tells, reports
# and reads. A waiting ask holds no database connection (the pool is the limit on those).
REQUEST_THREADS = 64
# How long an ask may wait for a slot before it is refused: well under the request timeout, so a
# client hears "retry later" rather than a 503 for a request that never started.
MAX_WAIT_S = 5.0
# Seconds a refused ask is told to wait: asks take tens of milliseconds, so a queue drains fast.
GATE_RETRY_AFTER_S = 1
# Seconds every refusal (429) is held before it is answered, asleep in the event loop (no thread
# held). Without it a flooder ignoring Retry-After retried at once (~190 refusals/s, each
# authenticated against the database) and the victim's ask p50 went to 9.9x its p50 alone, worse
# than with no admission control at all; with it, 2.2x (benchmarks/isolation.py,
# flood-on-hostile). A client honouring Retry-After waits 0.5 s more.
REFUSAL_DELAY_S = 0.5
# After a Redis failure the limiter stops asking Redis for this long (requests are served
# unlimited meanwhile), so a hung Redis costs one timeout per interval, not one per request.
REDIS_RETRY_S = 5.0
REDIS_KEY_PREFIX = "dyesp:rate"


# --- rate limits -------------------------------------------------------------------------------

# scope -> (what its 429 says is counted, the setting that limits it)
_SCOPES = {"requests": ("requests", "DYESP_RATE_LIMIT"), "asks": ("asks", "DYESP_ASK_RATE_LIMIT")}


class RateLimiter:
    """Per-owner rate limits; ``hit(scope, owner)`` counts one request (scope ``"requests"``: any
    /v1 request; ``"asks"``: an ask, counted under both) or raises ``TooManyRequests`` naming the
    limit. An empty limit counts nothing.

    Example::

        limiter = RateLimiter(rate_limit="5/minute", ask_rate_limit="")
        limiter.hit("requests", 7)  # the 6th call within a minute raises TooManyRequests
    """

    def __init__(self, rate_limit: str = "", ask_rate_limit: str = "",
                 redis_url: str | None = None, timeout_s: float = 2.0,
                 key_prefix: str = REDIS_KEY_PREFIX) -> None:
        # A malformed limit fails here, at start-up (ValueError), not on the first request.
        texts = {"requests": rate_limit, "asks": ask_rate_limit}
        self._rules: dict[str, tuple[RateLimitItem, ...]] = {
            scope: tuple(parse_many(text)) for scope, text in texts.items() if text.strip()}
        self._paused_until = 0.0  # monotonic time until which Redis is not asked (fail open)
        self._failing = False
        self._limiter: SlidingWindowCounterRateLimiter | None = None
        self.shared = False  # counts shared by all server processes (Redis)
        if self._rules:
            storage, self.shared = _storage(redis_url, timeout_s, key_prefix)
            self._limiter = SlidingWindowCounterRateLimiter(storage)

    @classmethod
    def from_settings(cls, settings: Settings, key_prefix: str = REDIS_KEY_PREFIX) -> RateLimiter:
        return cls(settings.rate_limit, settings.ask_rate_limit, settings.redis_url or None,
                   settings.redis_timeout_s, key_prefix)

    @property
    def enabled(self) -> bool:
        return self._limiter is not None

    def hit(self, scope: str, owner: int) -> None:
        """Count one request of ``owner`` under ``scope``; raise ``TooManyRequests`` past a limit.
        Scopes without a configured limit count nothing."""
        items = self._rules.get(scope)
        if not items or self._limiter is None or time.monotonic() < self._paused_until:
            return
        try:
            for item in items:
                if not self._limiter.hit(item, scope, str(owner)):
                    reset = self._limiter.get_window_stats(item, scope, str(owner)).reset_time
                    wait = max(1, math.ceil(reset - time.time()))
                    what, setting = _SCOPES[scope]
                    raise TooManyRequests(
                        f"rate limit exceeded: {what} of an owner are limited to {item} "
                        f"({setting}); retry after {wait} s", retry_after=wait,
                        delay_s=REFUSAL_DELAY_S)
        except TooManyRequests:
            raise
        except Exception as error:  # Redis down or slow: serve the request, say so once
            self._paused_until = time.monotonic() + REDIS_RETRY_S
            if not self._failing:
                self._failing = True
                log.warning("rate limits are off while their storage fails (fail open; retrying "
                            "every %.0f s): %s: %s", REDIS_RETRY_S, type(error).__name__, error)
            return
        if self._failing:
            self._failing = False
            log.warning("rate limits are on again: their storage answers")


def _storage(redis_url: str | None, timeout_s: float, key_prefix: str) -> tuple[Storage, bool]:
    """Redis when configured (shared by all processes), this process's memory otherwise."""
    if redis_url:
        try:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # One attempt, bounded by the timeouts: redis-py's default retries with backoff would
            # hold the request for seconds when Redis is down. Nothing connects until a hit.
            return storage_from_string(redis_url, key_prefix=key_prefix,
                                       socket_timeout=timeout_s,
                                       socket_connect_timeout=timeout_s,
                                       retry=Retry(NoBackoff(), 0)), True  # type: ignore[arg-type]
        except Exception as error:  # e.g. the redis package is not installed
            log.warning("rate limits: cannot use Redis (%r); counting per process instead", error)
    return storage_from_string("memory://"), False


# --- the fair gate -----------------------------------------------------------------------------

@dataclass(eq=False)
class _Waiter:
    owner: Hashable
    ready: threading.Event = field(default_factory=threading.Event)
    granted: bool = False  # set under the gate's lock when a slot is handed over


class FairGate:
    """At most ``capacity`` holders at once; waiters admitted round-robin across owners (each owner
    a FIFO). ``capacity=None`` turns the gate off (every ``admit`` passes at once).

    Round-robin by rounds (start-time fair queueing with unit costs): an owner's next waiter is
    served in the owner's next round, one after the round its previous waiter was served in; an
    owner that starts waiting joins the current round (idle owners bank no credit). The waiter of
    the lowest round goes first, ties in the order owners started waiting. So an owner arriving
    behind a flooder with many waiters is served at the next free slot.

    Thread-safe; a slot is released on every exit of the ``with`` block, exceptions included.

    Example::

        gate = FairGate(capacity=1)
        with gate.admit(owner_id):  # may raise TooManyRequests
            run_the_engine()
    """

    def __init__(self, capacity: int | None = ASK_CONCURRENCY,
                 max_waiters_per_owner: int = MAX_WAITERS_PER_OWNER,
                 max_wait_s: float = MAX_WAIT_S) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError(f"`capacity >= 1` (or None: off) must hold, got {capacity}")
        if max_waiters_per_owner < 0:
            raise ValueError("`max_waiters_per_owner >= 0` must hold, "
                             f"got {max_waiters_per_owner}")
        self.capacity = capacity
        self.max_waiters_per_owner = max_waiters_per_owner
        self.max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self._running = 0
        # Owners with waiters (in the order they started waiting), each a FIFO, and the round in
        # which each owner's next waiter is served; `_round` is the round of the latest hand-over.
        self._queues: dict[Hashable, deque[_Waiter]] = {}
        self._rounds: dict[Hashable, int] = {}
        self._round = 0

    @property
    def enabled(self) -> bool:
        return self.capacity is not None

    def waiting(self, owner: Hashable | None = None) -> int:
        """Waiters of ``owner`` (all owners when None), for metrics and tests."""
        with self._lock:
            if owner is not None:
                return len(self._queues.get(owner, ()))
            return sum(len(q) for q in self._queues.values())

    @property
    def running(self) -> int:
        return self._running

    @contextmanager
    def admit(self, owner: Hashable) -> Iterator[None]:
        if self.capacity is None:
            yield
            return
        self._acquire(owner)
        try:
            yield
        finally:
            self._release()

    def _acquire(self, owner: Hashable) -> None:
        with self._lock:
            if self._running < self.capacity and not self._queues:  # type: ignore[operator]
                self._running += 1
                return
            queue = self._queues.get(owner)
            if len(queue or ()) >= self.max_waiters_per_owner:
                raise TooManyRequests(
                    f"too many asks of this owner waiting for the engine (at most "
                    f"{self.max_waiters_per_owner} per server process); retry after "
                    f"{GATE_RETRY_AFTER_S} s", retry_after=GATE_RETRY_AFTER_S,
                delay_s=REFUSAL_DELAY_S)
            waiter = _Waiter(owner)
            if queue is None:
                queue = self._queues[owner] = deque()
                self._rounds[owner] = self._round
            queue.append(waiter)
        try:
            if waiter.ready.wait(self.max_wait_s):
                return
        except BaseException:  # interrupted while waiting: leave no waiter and no slot behind
            if not self._withdraw(waiter):
                self._release()
            raise
        if not self._withdraw(waiter):
            return  # handed a slot just as the wait ended: keep it
        raise TooManyRequests(
            f"the ask waited {self.max_wait_s:g} s for the engine, busy with other asks; retry "
            f"after {GATE_RETRY_AFTER_S} s", retry_after=GATE_RETRY_AFTER_S,
                delay_s=REFUSAL_DELAY_S)

    def _withdraw(self, waiter: _Waiter) -> bool:
        """Take a waiter out of its queue; False if it was handed a slot meanwhile."""
        with self._lock:
            if waiter.granted:
                return False
            queue = self._queues[waiter.owner]
            queue.remove(waiter)
            if not queue:
                del self._queues[waiter.owner], self._rounds[waiter.owner]
            return True

    def _release(self) -> None:
        with self._lock:
            if not self._queues:
                self._running -= 1
                return
            owner = min(self._queues, key=self._rounds.__getitem__)  # first of the lowest round
            queue = self._queues[owner]
            waiter = queue.popleft()
            self._round = self._rounds[owner]
            if queue:
                self._rounds[owner] += 1
            else:
                del self._queues[owner], self._rounds[owner]
            waiter.granted = True  # the slot passes straight on: `_running` is unchanged
            waiter.ready.set()

