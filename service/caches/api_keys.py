"""API keys verified in the last few seconds, so a busy client's requests skip the key's read.

Every authenticated request otherwise opens a session and reads its key's row before its own work
(about 1.0 ms on PostgreSQL and 0.3 ms on SQLite, median, in process; a cached check is 3 us): a
tell is then four statements instead of three, a report between rungs four instead of three. A
key verified within ``ttl_s`` (``DYESP_KEY_CACHE_S``) is trusted again without the read. The
price, documented in docs/api-contract.md: a key revoked by `dyesp keys revoke` (another process)
keeps working for at most ``ttl_s`` on a server process that verified it just before. Only
successes are kept: a wrong, unknown or revoked key is checked in the database every time, so
guessing fills nothing. Entries are keyed by the stored form of the key (its SHA-256), never the
key itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from service.caches.lru import LRU

MAX_KEYS = 10_000  # keys remembered per process, least recently used dropped first


class VerifiedKeys:
    """Owner ids of keys verified within ``ttl_s`` seconds (0: remember nothing)."""

    def __init__(self, ttl_s: float, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._owners: LRU[str, tuple[int, float]] = LRU(max_keys)

    def owner(self, digest: str) -> int | None:
        """The owner of the key with this digest, if verified less than ``ttl_s`` ago."""
        hit = self._owners.get(digest) if self.ttl_s > 0 else None
        if hit is None or self._clock() >= hit[1]:
            return None
        return hit[0]

    def remember(self, digest: str, owner_id: int) -> None:
        """The key with this digest was just verified as ``owner_id``'s."""
        if self.ttl_s > 0:
            self._owners.put(digest, (owner_id, self._clock() + self.ttl_s))
