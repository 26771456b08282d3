"""The bounded map behind every cache: past ``max_size`` keys, the least recently used goes.

A long-running server sees an open-ended set of studies (tenants come and go, studies finish);
its caches must hold the ones in use, not every one it ever served.

>>> lru = LRU[str, int](max_size=2)
>>> lru.put("a", 1); lru.put("b", 2)
>>> lru.get("a")  # "a" is now the most recently used
1
>>> lru.put("c", 3)  # over the bound: "b", the least recently used, goes
>>> sorted(lru.keys()), lru.get("b")
(['a', 'c'], None)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A thread-safe map of at most ``max_size`` entries; reads and writes mark a key used."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        self.max_size = max_size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            self._trim()

    def get_or_put(self, key: K, make: Callable[[], V]) -> V:
        """The entry of ``key``, made by ``make()`` (under the map's lock: keep it cheap) if
        absent."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                value = self._items[key] = make()
                self._trim()
            else:
                self._items.move_to_end(key)
            return value

    def pop(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)

    def keys(self) -> list[K]:
        """The keys, least recently used first (a snapshot; marks nothing used)."""
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def _trim(self) -> None:
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)
