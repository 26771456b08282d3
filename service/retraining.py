"""Pruner retraining off the request path.

``notify`` runs after every tell and only marks the study; a background thread of the server then
checks whether enough new results arrived and dispatches the training: to the RQ worker pool when
Redis is configured and reachable, otherwise to one spawned child process. A check that says "not
yet" also says how many results may pass before the next one can say yes
(``RetrainPolicy.results_before_recheck``); tells before that cost no read at all. Either way the
API process never imports torch, and tells never wait for training. Only a deterministic study's ask
may (``usecases.deterministic``): it calls ``request`` for the version its schedule calls for,
which dispatches without the cheap check (the job trains exactly what the schedule calls for).

The child holds torch's memory (hundreds of MB), so it must never outlive the server, whatever ends
the server (SIGKILL and OOM included, where no shutdown code runs): see ``_die_with_parent``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from service.caches.lru import LRU
from service.config import Settings
from service.db import pruner_queries, study_queries, trial_queries
from service.db.history import to_observation
from service.db.models import Study
from service.engine.history import History, TrialState
from service.engine.retraining_policy import recent_trust
from service.engine.trust import TRUST_WINDOW
from service.pruner_training import TRAINING_TIMEOUT_S, retrain_study

CHILD_STOP_GRACE_S = 5  # a child still alive this long after SIGTERM gets SIGKILL
PARENT_POLL_S = 1.0  # how often the child's watchdog checks that its server still lives
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# The training child's niceness: retraining is background work, and under Linux's scheduler a
# niceness of 10 weighs about a tenth of a server worker's, so on a busy host the asks keep the
# CPU while training still takes every idle cycle.
CHILD_NICENESS = 10
# Studies whose next check this process remembers; a study forgotten is simply checked again.
WATCHED_STUDIES = 10_000

log = logging.getLogger("dyesp.retraining")


@dataclass
class _Told:
    """What arrived for a study since the retrainer last looked: the newest revision told (None:
    unknown, check now) and how many results."""

    revision: int | None
    results: int


@dataclass
class _NextCheck:
    """After a check said "not yet": check again once the study's revision reaches
    ``revision``, or once ``results`` more results were told to this process, whichever comes
    first. Each result is a write that bumps the revision, so the revision alone bounds how late
    a check comes for results told to any process; the count catches a batch of results in one
    write (``add_trials``)."""

    revision: int
    results: int


class Retrainer:
    """Collects studies with new results and dispatches their retraining one at a time."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self._dirty: dict[str, _Told] = {}
        self._requested: set[str] = set()  # dirty ones to dispatch whatever ``_due`` says
        self._next_check: LRU[str, _NextCheck] = LRU(WATCHED_STUDIES)
        self.checks = 0  # full checks made (each a few reads; the tests count them)
        self._wake = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()  # stop() ends the pool while _dispatch may use it
        self._redis = None
        if settings.retrain_enabled and settings.redis_url:
            from service.retrain_queue import connect  # Redis and RQ: the optional worker extra

            self._redis = connect(settings.redis_url, timeout_s=settings.redis_timeout_s)

    @property
    def mode(self) -> str:
        if not self.settings.retrain_enabled:
            return "off"
        if self._redis is None:
            return "thread"
        return "rq" if self._redis_up() else "thread (redis unreachable)"

    def notify(self, study_id: str, revision: int | None = None, results: int = 1) -> None:
        """``results`` new results of ``study_id`` were committed at ``revision`` (None: check
        the study whatever its last check said, e.g. a new study learning from prior ones)."""
        if not self.settings.retrain_enabled:
            return
        with self._wake:
            told = self._dirty.get(study_id)
            if told is None:
                self._dirty[study_id] = _Told(revision, results)
            else:
                told.results += results
                told.revision = None if revision is None or told.revision is None \
                    else max(told.revision, revision)
            self._wake.notify()

    def request(self, study_id: str) -> None:
        """Dispatch ``study_id``'s retraining without the cheap check of ``_due``: a
        deterministic study's ask found the version its schedule calls for missing (the job
        itself trains exactly what the schedule calls for, or nothing)."""
        if not self.settings.retrain_enabled:
            return
        with self._wake:
            self._dirty.setdefault(study_id, _Told(None, 0))
            self._requested.add(study_id)
            self._wake.notify()

    def start(self) -> None:
        if not self.settings.retrain_enabled:
            return
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="dyesp-retrainer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the retrainer thread and its child. The child may be mid-training: it is ended
        (the job is idempotent and writes a version in one transaction), or it would outlive the
        server holding torch's memory. Ending it first also frees the thread from waiting on it."""
        with self._wake:
            self._stop = True
            self._wake.notify()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            _end_pool(pool)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._dirty and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
            self.step()

    def step(self) -> str | None:
        """Handle one marked study: dispatch its training if requested or due. Returns the study
        dispatched, if any (the thread's loop body; tests drive it directly)."""
        with self._wake:
            if not self._dirty:
                return None
            study_id = next(iter(self._dirty))  # the longest waiting: a busy study starves none
            told = self._dirty.pop(study_id)
            requested = study_id in self._requested
            self._requested.discard(study_id)
        try:
            if requested or (not self._can_wait(study_id, told) and self._due(study_id)):
                self._next_check.pop(study_id)
                self._dispatch(study_id)
                return study_id
        except Exception:
            log.exception("retraining study %s failed; asks keep the previous pruner", study_id)
        return None

    def _can_wait(self, study_id: str, told: _Told) -> bool:
        """Whether the last check's "not yet" still holds for what was told since."""
        next_check = self._next_check.get(study_id)
        if next_check is None or told.revision is None:
            return False
        next_check.results -= told.results
        return told.revision < next_check.revision and next_check.results > 0

    def _due(self, study_id: str) -> bool:
        """The engine's retraining policy on counts read cheaply (the job checks again on the
        whole history before it trains); a "not yet" records when to check next."""
        self.checks += 1
        policy = self.settings.retrain_policy
        with self.sessions() as session:
            study = study_queries.by_id(session, study_id)
            if study is None:
                return False  # deleted since it was marked: nothing to retrain
            n_complete = trial_queries.count_in_state(session, study_id, TrialState.COMPLETE)
            trained_on = pruner_queries.trained_on(session, study_id)
            trust = _recent_trust(session, study) if trained_on else None
            pretrain = bool(study.transfer_from) and trained_on is None
            revision = study.revision
        if policy.is_due(n_complete, trained_on or 0, trust, pretrain):
            return True
        wait = policy.results_before_recheck(n_complete, trained_on)
        self._next_check.put(study_id, _NextCheck(revision + wait, wait))
        return False

    def _dispatch(self, study_id: str) -> None:
        if self._redis is not None and self._redis_up():
            from service.retrain_queue import enqueue_retraining

            enqueue_retraining(self._redis, study_id)
            return
        try:
            with self._pool_lock:
                if self._stop:
                    return
                if self._pool is None:
                    self._pool = _start_pool()
                pool = self._pool
                # Raises BrokenProcessPool at once if the idle child died (killed, OOM).
                future = pool.submit(_train_in_child, self.settings.database_url, study_id)
            outcome = future.result(timeout=TRAINING_TIMEOUT_S)
        except BrokenProcessPool:
            self._discard(pool)
            if not self._stop:  # stop() ends the child on purpose: nothing to report
                log.warning("the retraining child died; study %s keeps its previous pruner and "
                            "the next retraining starts a new child", study_id)
            return
        except TimeoutError:
            self._discard(pool)
            log.warning("retraining study %s ran past %d s and was ended; it keeps its previous "
                        "pruner", study_id, TRAINING_TIMEOUT_S)
            return
        if outcome:
            log.info("study %s: %s", study_id, outcome)

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        """Forget a broken or stuck pool so the next dispatch starts a fresh child; a broken
        pool refuses every later job, so keeping it would fail every retraining from now on."""
        with self._pool_lock:
            if self._pool is pool:
                self._pool = None
        _end_pool(pool)

    def _redis_up(self) -> bool:
        try:
            return bool(self._redis.ping())
        except Exception:
            return False


def _recent_trust(session: Session, study: Study) -> float | None:
    """``recent_trust`` on just the study's most recent finished trials (a bounded read)."""
    rows = trial_queries.recent_finished(session, study.id, TRUST_WINDOW)
    return recent_trust(History(study.direction, tuple(to_observation(r) for r in rows)))


def _train_in_child(database_url: str, study_id: str) -> str | None:
    """The child's job: the RQ job's work, on the server's database (torch loads in the child)."""
    return retrain_study(study_id, database_url=database_url)


def _start_pool() -> ProcessPoolExecutor:
    """One spawned child for training, tied to this process's life by ``_die_with_parent``.

    The kernel's parent-death signal follows the *thread* that spawned the child, not the process.
    Python 3.11's ProcessPoolExecutor (spawn, no ``max_tasks_per_child``) starts its worker in the
    thread calling ``submit``: the retrainer thread, which lives as long as the server (and whose
    end in ``stop`` should end the child anyway). The child's watchdog covers any other case.
    """
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_child_setup, initargs=(os.getpid(),))


def _child_setup(parent_pid: int) -> None:
    """Executor initializer (runs in the child): yield the CPU to the server, die with it."""
    _lower_priority()
    _die_with_parent(parent_pid)


def _lower_priority() -> None:
    """Raise the child's niceness by ``CHILD_NICENESS`` (where the system has niceness). An
    in-server training took a whole core from the asks: at 10,000 trials, one client, ask p99
    went from 64 to 102 ms with retraining on."""
    with contextlib.suppress(OSError, AttributeError):
        os.nice(CHILD_NICENESS)


def _end_pool(pool: ProcessPoolExecutor) -> None:
    """Shut the pool down without waiting, and end its child: SIGTERM, then SIGKILL if it
    ignores that (the pool's only handle on its child is a private attribute)."""
    children = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout=CHILD_STOP_GRACE_S)
        if child.is_alive():
            child.kill()
            child.join(timeout=CHILD_STOP_GRACE_S)


def _die_with_parent(parent_pid: int) -> None:
    """In the child, from ``_child_setup``: end the child whenever the server ends.

    A clean shutdown ends it in ``stop``, but SIGKILL or the OOM killer run no code in the server,
    and an orphaned child would train on (or idle forever) holding torch's memory. Linux kills it
    outright through the parent-death signal; the signal is armed only now, so a server that died
    before this point is caught by comparing the parent pid; a watchdog thread covers systems
    without prctl (and any spawn from a thread that ends early)."""
    _arm_parent_death_signal()
    if os.getppid() != parent_pid:  # re-parented already: the server died while we started
        os._exit(1)
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,),
                     name="dyesp-parent-watchdog", daemon=True).start()


def _arm_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(int(signal.SIGKILL)), ctypes.c_ulong(0),
                          ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0
    except (OSError, AttributeError):
        return False


def _exit_when_orphaned(parent_pid: int, interval_s: float = PARENT_POLL_S) -> None:
    """The portable fallback: once re-parented (the parent died), exit at once, mid-training or
    not; ``os._exit`` because the main thread may be deep in torch and would never return."""
    while os.getppid() == parent_pid:
        time.sleep(interval_s)
    os._exit(1)


def make_retrainer(settings: Settings, sessions: sessionmaker[Session]) -> Retrainer:
    return Retrainer(settings, sessions)
