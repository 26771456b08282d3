"""One background thread per client that keeps its running trials alive on the server.

The server fails a running trial that stays silent longer than the study's
``heartbeat_timeout_s``, so a crashed worker's trial is reclaimed. A live worker therefore beats
for each of its trials; one thread serves them all, so ``ask(count=100)`` does not start 100.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["Heartbeat"]

log = logging.getLogger("dyesp_client")


@dataclass
class _Entry:
    interval: float
    beat: Callable[[], bool]  # returns False when the trial no longer needs beats
    next_at: float


class Heartbeat:
    """Calls each registered ``beat`` every ``interval`` seconds until it is discarded.

    The thread starts on the first ``add`` and exits when nothing is registered, so an idle client
    holds no thread. It is a daemon: a dying process must not be kept alive by its heartbeats
    (the server then reclaims the trials, which is the point).
    """

    def __init__(self, name: str = "dyesp-heartbeat") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._entries: dict[Hashable, _Entry] = {}
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, key: Hashable, interval: float, beat: Callable[[], bool]) -> None:
        if interval <= 0:
            raise ValueError(f"`interval > 0` must hold, got interval={interval}")
        with self._cond:
            if self._closed:
                return
            self._entries[key] = _Entry(interval, beat, time.monotonic() + interval)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def discard(self, key: Hashable) -> None:
        with self._cond:
            self._entries.pop(key, None)
            self._cond.notify()

    def __contains__(self, key: Hashable) -> bool:
        with self._cond:
            return key in self._entries

    def close(self, timeout: float = 5.0) -> None:
        """Stop beating everything; waits up to ``timeout`` for a beat in flight to finish."""
        with self._cond:
            self._closed = True
            self._entries.clear()
            thread = self._thread
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _next_due(self) -> tuple[Hashable, _Entry] | None:
        """Wait for the earliest beat; None means stop the thread. Call with the lock held."""
        while not self._closed and self._entries:
            key, entry = min(self._entries.items(), key=lambda item: item[1].next_at)
            wait = entry.next_at - time.monotonic()
            if wait <= 0:
                entry.next_at = time.monotonic() + entry.interval
                return key, entry
            self._cond.wait(wait)
        self._thread = None
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._next_due()
            if due is None:
                return
            key, entry = due
            try:
                keep = entry.beat()
            except Exception:  # a beat must never kill the thread that serves the others
                log.warning("heartbeat for %s failed; will retry", key, exc_info=True)
                keep = True
            if not keep:
                with self._cond:
                    if self._entries.get(key) is entry:
                        del self._entries[key]
