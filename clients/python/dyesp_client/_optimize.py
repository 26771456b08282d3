"""study.optimize: worker threads that ask, evaluate and tell until n_trials are done."""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from dyesp_client._errors import Infeasible, TrialStopped

if TYPE_CHECKING:
    from dyesp_client._study import MetricsFn, Study, Trial

__all__ = ["optimize"]

log = logging.getLogger("dyesp_client")


def optimize(study: Study, fn: Callable[[Trial], float], n_trials: int, *, n_workers: int = 1,
             show_progress: bool = True,
             catch: tuple[type[BaseException], ...] = (Exception,),
             static_metrics: MetricsFn | None = None) -> Trial | None:
    """Evaluate ``fn`` on ``n_trials`` trials of ``study`` with ``n_workers`` threads.

    ``fn`` returns the objective value. If it raises :class:`TrialStopped` (after
    ``trial.report`` returned True) the trial is recorded stopped with the server's reason, keeping
    its last reported value; raised before any report, the trial is recorded failed with a reason.
    If it raises :class:`Infeasible` the trial is recorded infeasible; if it raises an exception
    in ``catch`` the trial is recorded failed and the run goes on; any other exception fails the
    trial, lets the other workers finish their current trial, and is re-raised. A return value
    that is not a finite number fails the trial with a warning, as in Optuna. Returns the study's
    best trial (None if no trial completed).

    Threads suit objectives that release the GIL (GPU training, subprocesses, remote jobs); use
    one process per worker for pure-Python CPU-bound objectives.

    Example::

        best = study.optimize(lambda trial: (trial.params["x"] - 2) ** 2, n_trials=30, n_workers=2)

    With early stopping (the study declares a ``fidelity``)::

        def objective(trial):
            for epoch in range(1, 28):
                loss = train_one_epoch(trial.params)
                if trial.report(epoch, loss):
                    raise TrialStopped()
            return loss
    """
    if n_trials < 0:
        raise ValueError(f"`n_trials >= 0` must hold, got n_trials={n_trials}")
    if n_workers < 1:
        raise ValueError(f"`n_workers >= 1` must hold, got n_workers={n_workers}")
    progress = Progress(n_trials, study.direction, enabled=show_progress)
    run = _Run(study, fn, n_trials, catch, progress, static_metrics)
    # One id per worker, reused for all its asks: a worker whose tell was lost gets that trial back.
    client_ids = [study.client._new_client_id() for _ in range(n_workers)]
    try:
        if n_workers == 1:
            run.work(client_ids[0])  # in the caller's thread: plain tracebacks, Ctrl-C just works
        else:
            threads = [threading.Thread(target=run.work, args=(cid,), daemon=True,
                                        name=f"dyesp-worker-{i}")
                       for i, cid in enumerate(client_ids)]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():  # a timed join lets KeyboardInterrupt reach this thread
                    thread.join(0.2)
    except KeyboardInterrupt:
        run.stop.set()  # workers finish and tell their current trial, then stop
        raise
    finally:
        progress.close()
    if run.error is not None:
        raise run.error
    return study.best()


class _Run:
    """State shared by the workers of one optimize call."""

    def __init__(self, study: Study, fn: Callable[[Trial], float], n_trials: int,
                 catch: tuple[type[BaseException], ...], progress: Progress,
                 static_metrics: MetricsFn | None = None) -> None:
        self.study = study
        self.static_metrics = static_metrics
        self.fn = fn
        self.n_trials = n_trials
        self.catch = catch
        self.progress = progress
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._claimed = 0
        self._lock = threading.Lock()

    def _claim(self) -> bool:
        """Reserve one of the n_trials before asking, so the workers ask exactly n_trials times."""
        with self._lock:
            if self.stop.is_set() or self._claimed >= self.n_trials:
                return False
            self._claimed += 1
            return True

    def work(self, client_id: str) -> None:
        try:
            while self._claim():
                (trial,) = self.study._ask(1, client_id, self.static_metrics)
                self._evaluate(trial)
                self.progress.update(trial)
        except BaseException as error:
            with self._lock:
                if self.error is None:
                    self.error = error
            self.stop.set()

    def _evaluate(self, trial: Trial) -> None:
        try:
            value = self.fn(trial)
        except TrialStopped as error:
            trial._stopped(error)
            return
        except Infeasible as error:
            trial.infeasible(error.reason)
            return
        except self.catch as error:
            log.warning("trial %d failed: %r", trial.number, error)
            trial.fail()
            return
        except BaseException:
            _fail_quietly(trial)
            raise
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            log.warning("trial %d failed: the objective returned %r, not a finite number",
                        trial.number, value)
            trial.fail()
            return
        trial.tell(number)


def _fail_quietly(trial: Trial) -> None:
    # The objective's own exception is the one to report; a failure to record it must not hide it.
    try:
        trial.fail()
    except Exception:
        log.warning("could not mark trial %d failed", trial.number, exc_info=True)


class Progress:
    """A one-line progress report on stderr, without a dependency on tqdm.

    On a terminal the line is rewritten in place; in a log file a line is written every tenth of
    the run, so logs stay readable.
    """

    def __init__(self, total: int, direction: str, *, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.total = total
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.sign = -1.0 if direction == "maximize" else 1.0
        self.done = 0
        self.counts: dict[str, int] = {}
        self.best: float | None = None
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self._every = max(1, total // 10)

    def update(self, trial: Trial) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.done += 1
            self.counts[trial.state] = self.counts.get(trial.state, 0) + 1
            if trial.value is not None and trial.state == "complete" and (
                    self.best is None or self.sign * trial.value < self.sign * self.best):
                self.best = trial.value
            if self._tty:
                self.stream.write("\r" + self.line() + "\x1b[K")
            elif self.done % self._every == 0 or self.done == self.total:
                self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        best = "-" if self.best is None else f"{self.best:.6g}"
        failed = self.counts.get("failed", 0)
        infeasible = self.counts.get("infeasible", 0)
        stopped = self.counts.get("stopped", 0)
        elapsed = time.monotonic() - self._started
        return (f"dyesp {self.done}/{self.total} trials | best {best} | failed {failed} | "
                f"infeasible {infeasible} | stopped {stopped} | {elapsed:.1f}s")

    def close(self) -> None:
        if self.enabled and self._tty and self.done:
            with self._lock:
                self.stream.write("\n")
                self.stream.flush()
