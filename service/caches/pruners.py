"""The pruner each ask uses, loaded from the database and cached per model version.

Training happens elsewhere (a worker or a spawned process); servers only read stored versions, so
a new model is picked up on the next ask without a restart. An ordinary study's ask uses the
newest active version. A deterministic study's ask uses the version its schedule
(``retraining_policy.training_schedule``) calls for on the results told so far, and nothing
else: when that version is not stored yet it says so (``ScheduledVersionPending``) and the ask
waits for it (``usecases.ask_tell``), rather than propose with whatever happens to be there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from service.caches.lru import LRU
from service.db import pruner_queries
from service.db.models import Study
from service.engine.history import History
from service.engine.pruner import PrunerModel
from service.engine.retraining_policy import Replay, RetrainPolicy, training_schedule

# Studies whose active pruner a process keeps. A model is a small ensemble (typically ~100 kB,
# a few MB at the widest encodable space); reloading one costs a query and a deserialisation,
# so the bound only keeps a long-lived process from holding every study it ever served.
MAX_STUDIES = 512


class ScheduledVersionPending(Exception):
    """A deterministic study's schedule calls for the version trained on its first
    ``n_results`` results, and none is stored yet: the ask must wait for that retraining."""

    def __init__(self, study_id: str, n_results: int) -> None:
        super().__init__(f"study {study_id}: the pruner version scheduled at {n_results} "
                         "results is not stored yet")
        self.study_id = study_id
        self.n_results = n_results


@dataclass(frozen=True)
class _Scheduled:
    """Where a deterministic study's schedule stood at its last ask: the replay to resume from
    (replaying from the first result costs a rank correlation per result) and the model served
    for its latest scheduled training. Stored versions never change, so neither does this."""

    replay: Replay
    model: PrunerModel | None


class PrunerStore:
    def __init__(self, max_studies: int = MAX_STUDIES) -> None:
        # study id -> (row id of the version it was loaded from, the model)
        self._models: LRU[str, tuple[int, PrunerModel]] = LRU(max_studies)
        self._scheduled: LRU[str, _Scheduled] = LRU(max_studies)

    def __len__(self) -> int:
        return len(self._models) + len(self._scheduled)

    def for_ask(self, session: Session, study: Study, history: History, pretrain: bool,
                policy: RetrainPolicy | None) -> PrunerModel | None:
        """The pruner an ask of ``study`` proposes with, given the ``history`` it proposes on:
        the newest active version, or for a deterministic study the scheduled one (none while
        retraining is off: ``policy`` None). ``pretrain``: the study learns from prior studies.
        Raises ``ScheduledVersionPending`` for a scheduled version not stored yet."""
        if not study.deterministic:
            return self.active(session, study.id)
        if policy is None:
            return None
        return self.scheduled(session, study.id, history, pretrain, policy)

    def active(self, session: Session, study_id: str) -> PrunerModel | None:
        newest = pruner_queries.newest_active_id(session, study_id)
        if newest is None:
            return None
        return self._load(session, study_id, newest)

    def scheduled(self, session: Session, study_id: str, history: History, pretrain: bool,
                  policy: RetrainPolicy) -> PrunerModel | None:
        """The version the deterministic schedule calls for on ``history``: trained on exactly
        the first N results, N the latest count at which a retraining was due (or, where that
        training judged itself worse, the newest scheduled version before it that was
        activated); None before the first one is due."""
        cached = self._scheduled.get(study_id)
        rows = None
        if cached is None:  # resume from the newest stored scheduled version this history reaches
            rows = pruner_queries.scheduled_versions(session, study_id)
            reached = [r.n_train for r in rows if r.n_train <= len(history.complete)]
            resume = Replay(reached[-1]) if reached else None
        else:
            resume = cached.replay
        due, replay = training_schedule(policy, history, pretrain=pretrain, resume=resume)
        if replay is None:
            return None  # nothing due yet
        if not due and cached is not None and replay.trained_on == cached.replay.trained_on:
            self._scheduled.put(study_id, _Scheduled(replay, cached.model))
            return cached.model
        rows = rows if rows is not None else pruner_queries.scheduled_versions(session, study_id)
        wanted = replay.trained_on
        if not any(r.n_train == wanted for r in rows):
            raise ScheduledVersionPending(study_id, wanted)
        served = [r for r in rows if r.n_train <= wanted and r.active]
        model = self._load(session, study_id, served[-1].id) if served else None
        self._scheduled.put(study_id, _Scheduled(replay, model))
        return model

    def _load(self, session: Session, study_id: str, version_id: int) -> PrunerModel:
        cached = self._models.get(study_id)
        if cached is not None and cached[0] == version_id:
            return cached[1]
        model = PrunerModel.from_bytes(pruner_queries.weights(session, version_id))
        self._models.put(study_id, (version_id, model))
        return model

    def forget(self, study_id: str) -> None:
        self._models.pop(study_id)
        self._scheduled.pop(study_id)
