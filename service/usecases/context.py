"""What the use cases need, built once per app (``UseCaseContext.from_settings``, in
``service.app``): the session factory, the caches, the limits, the engine's gate, and whom to tell
that a study has new results."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from service.admission import FairGate
from service.caches.api_keys import VerifiedKeys
from service.caches.history import HistoryCache
from service.caches.priors import PriorStore
from service.caches.pruners import PrunerStore
from service.caches.spaces import SpaceCache
from service.config import Settings
from service.engine.retraining_policy import RetrainPolicy
from service.usecases.coalescing import AskCoalescer

# Called with a study id once results (or, at creation, prior studies) arrive for it, after the
# transaction commits: the retrainer (``service.retraining.Retrainer.notify``) decides whether the
# study's pruner is due for training. It must return at once; ask and tell never wait for training.
OnDue = Callable[[str], None]
# The same, with the revision the results were committed at (None: unknown) and their number.
OnTold = Callable[[str, int | None, int], None]


class SeedOffsets:
    """Seed offsets of the asks of each study drafting in this process at once.

    >>> offsets = SeedOffsets()
    >>> with offsets.hold("s") as a, offsets.hold("s") as b, offsets.hold("t") as c:
    ...     (a, b, c)
    (0, 1, 0)
    >>> len(offsets)  # released on exit
    0
    """

    def __init__(self) -> None:
        self._held: dict[str, set[int]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, study_id: str) -> Iterator[int]:
        """A seed offset for an ask: the smallest one no other ask of the study here holds
        (0, the study's own seed, whenever asks don't overlap)."""
        with self._lock:
            held = self._held.setdefault(study_id, set())
            salt = next(i for i in range(len(held) + 1) if i not in held)
            held.add(salt)
        try:
            yield salt
        finally:
            with self._lock:
                held.discard(salt)
                if not held:
                    self._held.pop(study_id, None)

    def __len__(self) -> int:
        """How many studies have an ask drafting now."""
        return len(self._held)


@dataclass
class UseCaseContext:
    sessions: sessionmaker[Session]
    histories: HistoryCache
    spaces: SpaceCache
    pruners: PrunerStore
    priors: PriorStore
    default_heartbeat_timeout_s: float
    max_ask_count: int
    candidate_pool_factor: int = 4
    candidate_pool_max: int = 64
    candidate_ttl_s: float = 600.0
    # Quotas (see ``service.config``): unfinished trials per study, studies per owner.
    max_running_trials_per_study: int = 1000
    max_waiting_trials_per_study: int = 1000
    max_studies_per_owner: int = 1000
    # The engine's CPU, shared fairly across owners (``service.admission``), held for a whole
    # ask (``ask_tell.ask``); off unless the app switches it on.
    engine_gate: FairGate = field(default_factory=lambda: FairGate(capacity=None))
    # API keys verified in the last seconds (none remembered unless the app sets a TTL).
    verified_keys: VerifiedKeys = field(default_factory=lambda: VerifiedKeys(ttl_s=0))
    on_told: OnTold | None = None
    seed_offsets: SeedOffsets = field(default_factory=SeedOffsets)
    # Concurrent asks of one study in this process share one engine call (``coalescing``).
    coalescer: AskCoalescer = field(default_factory=AskCoalescer)
    # Deterministic studies (``usecases.deterministic``): the schedule their asks follow (None
    # while retraining is off: no scheduled version, no pruner), how long an ask waits for a
    # scheduled version, and whom to ask for its training now (``Retrainer.request``; it must
    # return at once).
    retrain_policy: RetrainPolicy | None = None
    deterministic_wait_s: float = 5.0
    on_pruner_due: OnDue | None = None

    @classmethod
    def from_settings(cls, settings: Settings, sessions: sessionmaker[Session],
                      on_told: OnTold | None = None,
                      on_pruner_due: OnDue | None = None) -> UseCaseContext:
        """The app's context: empty caches, the settings' limits, the engine gate switched on."""
        return cls(
            sessions=sessions, histories=HistoryCache(), spaces=SpaceCache(),
            pruners=PrunerStore(), priors=PriorStore(),
            default_heartbeat_timeout_s=settings.default_heartbeat_timeout_s,
            max_ask_count=settings.max_ask_count, on_told=on_told,
            candidate_pool_factor=settings.candidate_pool_factor,
            candidate_pool_max=settings.candidate_pool_max,
            candidate_ttl_s=settings.candidate_ttl_s,
            max_running_trials_per_study=settings.max_running_trials_per_study,
            max_waiting_trials_per_study=settings.max_waiting_trials_per_study,
            max_studies_per_owner=settings.max_studies_per_owner, engine_gate=FairGate(),
            verified_keys=VerifiedKeys(ttl_s=settings.key_cache_s),
            retrain_policy=settings.retrain_policy if settings.retrain_enabled else None,
            deterministic_wait_s=settings.deterministic_wait_bound_s, on_pruner_due=on_pruner_due,
        )

    def told(self, study_id: str, revision: int | None = None, results: int = 1) -> None:
        """Let the retrainer know ``study_id`` has ``results`` new results, committed at
        ``revision`` (None: unknown; the retrainer checks the study at once). No-op without a
        retrainer."""
        if self.on_told is not None:
            self.on_told(study_id, revision, results)

    def pruner_due(self, study_id: str) -> None:
        """Ask the retrainer to dispatch ``study_id``'s retraining now, whatever its cheap
        check says: a deterministic ask found its scheduled version missing (no-op without
        one)."""
        if self.on_pruner_due is not None:
            self.on_pruner_due(study_id)

    def forget(self, study_id: str) -> None:
        """Drop a (deleted) study from every cache."""
        for cache in (self.histories, self.spaces, self.pruners, self.priors):
            cache.forget(study_id)
