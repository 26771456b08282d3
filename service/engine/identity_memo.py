"""Values computed once per object, remembered by the object's identity.

The service re-sends the same Observation objects on every ask (its history cache hands out one
History per revision), so work that depends only on one trial (its feature row, a prior's score
of it, a stopped trial's estimate) can be done once per trial instead of once per ask. Frozen
value objects make identity a safe key while the object lives; the memo holds the object itself,
so an id is never reused for another one while its entry exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class IdentityMemo(Generic[K, V]):
    """About ``limit`` values by object identity: when a call's new objects would not fit, it
    starts over with that call's objects (all computed again, never half of them; one call's
    objects are kept whole even past the limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._values: dict[int, tuple[K, V]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def values(self, items: Sequence[K], compute: Callable[[list[K]], Sequence[V]]) -> list[V]:
        """The value of each item, calling ``compute`` once on those without one."""
        known = self._values
        missing = [t for t in items if (hit := known.get(id(t))) is None or hit[0] is not t]
        if missing:
            if len(known) + len(missing) > self.limit:
                known.clear()
                missing = list(items)
            for t, value in zip(missing, compute(missing), strict=True):
                known[id(t)] = (t, value)
        return [known[id(t)][1] for t in items]
