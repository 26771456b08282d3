"""Pruner retraining off the request path.

``notify`` runs after every tell and only marks the study; a background thread of the server then
checks whether enough new results arrived and dispatches the training: to the RQ worker pool when
Redis is configured and reachable, otherwise to one spawned child process. Either way the API
process never imports torch, and ask/tell never wait for training.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.db.history import to_observation
from service.db.models import PrunerModel as PrunerRow
from service.db.models import Study, Trial
from service.engine.history import History, TrialState
from service.engine.pruner import TRUST_FLOOR, measure_trust

TRUST_WINDOW = 20  # the same window the engine measures trust over

log = logging.getLogger("dyesp.retraining")


def is_due(n_complete: int, trained_on: int, settings: Settings,
           trust: float | None = None, pretrain: bool = False) -> bool:
    """Retrain once enough results exist, then when results grew by a margin, or sooner (after a
    few new results) when the pruner's measured trust has dropped below the floor where it gets
    a say: a pruner that stopped predicting well should learn from what fooled it now.
    ``pretrain``: the study learns from prior studies and has no model yet: train on theirs."""
    if pretrain:
        return True
    if n_complete < settings.retrain_min_trials:
        return False
    new = n_complete - trained_on
    if trust is not None and trust <= TRUST_FLOOR and new >= settings.retrain_min_new:
        return True
    return new >= max(settings.retrain_min_new, int(settings.retrain_growth * trained_on))


class Retrainer:
    """Collects studies with new results and dispatches their retraining one at a time."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self._dirty: set[str] = set()
        self._wake = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._redis = None
        if settings.retrain_enabled and settings.redis_url:
            from workers.queue import connect

            self._redis = connect(settings.redis_url)

    @property
    def mode(self) -> str:
        if not self.settings.retrain_enabled:
            return "off"
        if self._redis is None:
            return "thread"
        return "rq" if self._redis_up() else "thread (redis unreachable)"

    def notify(self, study_id: str) -> None:
        if not self.settings.retrain_enabled:
            return
        with self._wake:
            self._dirty.add(study_id)
            self._wake.notify()

    def start(self) -> None:
        if not self.settings.retrain_enabled:
            return
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="dyesp-retrainer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._pool is not None:
            # The child may be mid-training: end it (the job is idempotent and writes a version in
            # one transaction), or it outlives the server holding torch's memory.
            children = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for child in children:
                child.terminate()
            for child in children:
                child.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._dirty and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                study_id = self._dirty.pop()
            try:
                if self._due(study_id):
                    self._dispatch(study_id)
            except Exception:
                log.exception("retraining study %s failed; asks keep the previous pruner",
                              study_id)

    def _due(self, study_id: str) -> bool:
        with self.sessions() as session:
            n_complete = session.scalar(
                select(func.count()).select_from(Trial)
                .where(Trial.study_id == study_id, Trial.state == TrialState.COMPLETE.value)
            ) or 0
            trained_on = session.scalar(
                select(func.max(PrunerRow.n_train)).where(PrunerRow.study_id == study_id)
            )
            trust = _recent_trust(session, study_id) if trained_on else None
            study = session.get(Study, study_id)
            pretrain = study is not None and bool(study.transfer_from) and trained_on is None
        return is_due(n_complete, trained_on or 0, self.settings, trust, pretrain)

    def _dispatch(self, study_id: str) -> None:
        if self._redis is not None and self._redis_up():
            from workers.queue import enqueue_retraining

            enqueue_retraining(self._redis, study_id)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        outcome = self._pool.submit(_train_in_child, self.settings.database_url,
                                    study_id).result(timeout=600)
        if outcome:
            log.info("study %s: %s", study_id, outcome)

    def _redis_up(self) -> bool:
        try:
            return bool(self._redis.ping())
        except Exception:
            return False


def _recent_trust(session: Session, study_id: str) -> float | None:
    """The pruner's trust over the study's most recent finished trials (a bounded read)."""
    rows = session.scalars(
        select(Trial).where(Trial.study_id == study_id,
                            Trial.state.in_([TrialState.COMPLETE.value,
                                             TrialState.INFEASIBLE.value]))
        .order_by(Trial.number.desc()).limit(TRUST_WINDOW)
    )
    direction = session.scalar(select(Study.direction).where(Study.id == study_id)) or "minimize"
    trials = tuple(sorted((to_observation(r) for r in rows), key=lambda t: t.number))
    return measure_trust(History(direction, trials), window=TRUST_WINDOW)


def _train_in_child(database_url: str, study_id: str) -> str | None:
    from workers.jobs import retrain_pruner  # imported in the child: torch stays out of the API

    return retrain_pruner(study_id, database_url=database_url)


def make_retrainer(settings: Settings, sessions: sessionmaker[Session]) -> Retrainer:
    return Retrainer(settings, sessions)
