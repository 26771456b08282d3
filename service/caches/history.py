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
from service.engine.history import Direction, History, Observation, PrunedCandidate, TrialState
from service.engine.space import config_key

# Studies whose history a process keeps. A history is the largest entry of any cache (a study
# of 10,000 trials is megabytes of Observations) and an evicted one costs a single full read of
# its rows on its next ask, so the bound is the working set of a busy process, not every study.
MAX_STUDIES = 512


@dataclass
class _Entry:
    revision: int = 0
    last_pruned_id: int = 0
    trials: list[Observation | None] = field(default_factory=list)  # indexed by trial number
    pruned: list[PrunedCandidate] = field(default_factory=list)
    # Keys of the trials the engine must not propose again (all but failed) -> how many trials
    # have each, kept up to date row by row: recomputing them over 10,000 trials on every ask was
    # a tenth of its time. A plain dict, not a Counter: frozenset() of an exact dict reuses the
    # stored hashes (0.1 ms at 10,000 keys), of a subclass it hashes every key again (1.8 ms).
    seen: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The History last handed out, until a row changes: an ask loads twice (its draft, then
    # under the lock), and each load copied every trial and key of the study again; sharing
    # the frozen object also shares its derived views (complete, running, losses).
    history: History | None = None


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
            if revision is None:
                revision = current_revision(session, study_id) or 0
            if revision > entry.revision:
                rows = trial_queries.changed_since(session, study_id, entry.revision)
                for row, observation in zip(rows, to_observations(session, rows, rungs),
                                            strict=True):
                    _put(entry, row.number, observation)
                for row in trial_queries.pruned_after(session, study_id, entry.last_pruned_id):
                    entry.pruned.append(to_pruned(row))
                    entry.last_pruned_id = row.id
                entry.revision = revision
                entry.history = None
            if entry.history is None or entry.history.direction != direction:
                trials = tuple(t for t in entry.trials if t is not None)
                entry.history = History(direction=direction, trials=trials,
                                        pruned=tuple(entry.pruned), seen=frozenset(entry.seen))
            return entry.history


def _put(entry: _Entry, number: int, observation: Observation) -> None:
    trials = entry.trials
    if number >= len(trials):
        trials.extend([None] * (number + 1 - len(trials)))
    old = trials[number]
    seen = entry.seen
    if old is not None and old.state is not TrialState.FAILED:
        key = config_key(old.params)
        if seen.get(key, 0) <= 1:
            seen.pop(key, None)
        else:
            seen[key] -= 1
    if observation.state is not TrialState.FAILED:
        key = config_key(observation.params)
        seen[key] = seen.get(key, 0) + 1
    trials[number] = observation
