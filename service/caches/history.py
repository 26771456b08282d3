"""Per-study history cache that catches up incrementally from the database.

Asks must not re-read a study's whole history (10,000 trials is tens of milliseconds of rows).
Every write to a study's trials bumps ``studies.revision`` under the study's row lock and stamps the
rows it changed with that revision, so a cache only reads rows newer than the revision it has seen:
correct across any number of server processes, since the database orders the writes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from service.caches.lru import LRU
from service.db import trial_queries
from service.db.history import to_observations, to_pruned
from service.db.study_queries import current_revision
from service.engine.history import Direction, History
from service.engine.history_ledger import HistoryLedger

# Studies whose history a process keeps. A history is the largest entry of any cache (a study
# of 10,000 trials is megabytes of Observations) and an evicted one costs a single full read of
# its rows on its next ask, so the bound is the working set of a busy process, not every study.
MAX_STUDIES = 512


@dataclass
class _Entry:
    revision: int = 0
    last_pruned_id: int = 0
    # The trials read so far with their views kept up to date row by row, and the History it
    # last handed out until a row changes: an ask loads twice (its draft, then under the lock),
    # and one frozen History shares its views (complete, ranked, losses, seen) between them.
    ledger: HistoryLedger | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class HistoryCache:
    """Holds the newest known History of the ``max_studies`` most recently used studies."""

    def __init__(self, max_studies: int = MAX_STUDIES) -> None:
        self._entries: LRU[str, _Entry] = LRU(max_studies)

    def __len__(self) -> int:
        return len(self._entries)

    def forget(self, study_id: str) -> None:
        self._entries.pop(study_id)

    def load(self, session: Session, study_id: str, direction: Direction,
             revision: int | None = None, rungs: tuple[int, ...] = ()) -> History:
        """The study's history as of ``revision`` (default: the one ``session`` sees now), its
        finished trials with their values at ``rungs`` (``db.history.study_rungs``).

        A writer holding the study lock passes the revision before its own, so rows it stamps
        later in its transaction are read on the next load. Otherwise the revision is read before
        the changed rows: every row at or below it is included, and rows above it may be read too
        and are simply read again next time.
        """
        entry = self._entries.get_or_put(study_id, _Entry)
        with entry.lock:  # an entry evicted meanwhile is finished, then dropped: still exact
            ledger = entry.ledger
            if ledger is None or ledger.direction != direction:
                # A study's direction never changes: this is its first load in this process.
                entry.ledger = ledger = HistoryLedger(direction)
                entry.revision = entry.last_pruned_id = 0
            if revision is None:
                revision = current_revision(session, study_id) or 0
            if revision > entry.revision:
                rows = trial_queries.changed_since(session, study_id, entry.revision)
                ledger.put_many(to_observations(session, rows, rungs))
                for row in trial_queries.pruned_after(session, study_id, entry.last_pruned_id):
                    ledger.add_pruned(to_pruned(row))
                    entry.last_pruned_id = row.id
                entry.revision = revision
            return ledger.history()

