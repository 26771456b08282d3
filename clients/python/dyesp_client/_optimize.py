"""study.optimize: worker threads that ask, evaluate and tell until the run is over.

The run ends, as in Optuna's ``Study.optimize``, when ``n_trials`` trials were asked, when
``timeout`` seconds have passed (trials already running finish), when ``Study.stop()`` is called,
or when an exception outside ``catch`` escapes the objective or a callback.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TextIO

from dyesp_client._errors import Infeasible, TrialStopped

if TYPE_CHECKING:
    from dyesp_client._study import MetricsFn, Study, Trial

__all__ = ["Callback", "optimize"]

log = logging.getLogger("dyesp_client")
# The server keeps a failure reason of at most this many characters.
MAX_REASON = 2000
Callback = Callable[["Study", "Trial"], None]


def optimize(study: Study, fn: Callable[[Trial], float], n_trials: int | None = None, *,
             timeout: float | None = None, n_workers: int = 1, show_progress: bool = True,
             catch: Iterable[type[BaseException]] | type[BaseException] = (),
             callbacks: Sequence[Callback] | None = None,
             static_metrics: MetricsFn | None = None) -> Trial | None:
    """Evaluate ``fn`` on trials of ``study`` with ``n_workers`` threads; return the best trial.

    The run stops asking for trials after ``n_trials`` asks, after ``timeout`` seconds, or once
    :meth:`Study.stop` is called (from the objective or a callback); trials already running
    finish and are told. With neither ``n_trials`` nor ``timeout`` it runs until ``Study.stop()``
    or Ctrl-C, as Optuna does.

    ``fn`` returns the objective value. If it raises :class:`TrialStopped` (after
    ``trial.report`` returned True) the trial is recorded stopped with the server's reason, keeping
    its last reported value; raised before any report, the trial is recorded failed with a reason.
    If it raises :class:`Infeasible` the trial is recorded infeasible. Any other exception fails
    the trial (its ``repr`` is the reason, so the trial is never left running); an exception in
    ``catch`` is logged and the run goes on, any other one lets the other workers finish their
    current trial and is re-raised. ``catch`` is empty by default, as in Optuna: a bug in the
    objective (a KeyError, say) ends the run instead of failing every trial quietly. A return
    value that is not a finite number fails the trial with a warning, as in Optuna.

    Each of ``callbacks`` is called as ``callback(study, trial)`` after every finished trial, in
    the worker thread that ran it; an exception in a callback ends the run like one in ``fn``.

    Threads suit objectives that release the GIL (GPU training, subprocesses, remote jobs); use
    one process per worker for pure-Python CPU-bound objectives.

    Example::

        best = study.optimize(lambda trial: (trial.params["x"] - 2) ** 2, n_trials=30, n_workers=2)

    For an hour, stopping early once the loss is small enough::

        def good_enough(study, trial):
            if trial.value is not None and trial.value < 0.01:
                study.stop()

        study.optimize(objective, timeout=3600, callbacks=[good_enough])

    With early stopping (the study declares a ``fidelity``)::

        def objective(trial):
            for epoch in range(1, 28):
                loss = train_one_epoch(trial.params)
                if trial.report(epoch, loss):
                    raise TrialStopped()
            return loss
    """
    if n_trials is not None and n_trials < 0:
        raise ValueError(f"`n_trials >= 0` must hold, got n_trials={n_trials}")
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"`timeout >= 0` must hold, got timeout={timeout}")
    if n_workers < 1:
        raise ValueError(f"`n_workers >= 1` must hold, got n_workers={n_workers}")
    caught = (catch,) if isinstance(catch, type) else tuple(catch)
    progress = Progress(n_trials, study.direction, enabled=show_progress)
    deadline = None if timeout is None else time.monotonic() + timeout
    run = _Run(study, fn, n_trials, caught, progress, static_metrics, deadline=deadline,
               callbacks=tuple(callbacks or ()))
    # One id per worker, reused for all its asks: a worker whose tell was lost gets that trial back.
    client_ids = [study.client._new_client_id() for _ in range(n_workers)]
    study._runs.append(run.stop)  # what Study.stop() sets
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
        study._runs.remove(run.stop)
        progress.close()
    if run.error is not None:
        raise run.error
    return study.best()


class _Run:
    """State shared by the workers of one optimize call."""

    def __init__(self, study: Study, fn: Callable[[Trial], float], n_trials: int | None,
                 catch: tuple[type[BaseException], ...], progress: Progress,
                 static_metrics: MetricsFn | None = None, *, deadline: float | None = None,
                 callbacks: tuple[Callback, ...] = ()) -> None:
        self.study = study
        self.static_metrics = static_metrics
        self.fn = fn
        self.n_trials = n_trials
        self.catch = catch
        self.progress = progress
        self.deadline = deadline
        self.callbacks = callbacks
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._claimed = 0
        self._lock = threading.Lock()

    def _claim(self) -> bool:
        """Reserve one more trial before asking, so the workers ask at most n_trials times and
        none after the deadline or a stop."""
        with self._lock:
            if self.stop.is_set():
                return False
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return False
            if self.n_trials is not None and self._claimed >= self.n_trials:
                return False
            self._claimed += 1
            return True

    def work(self, client_id: str) -> None:
        try:
            while self._claim():
                (trial,) = self.study._ask(1, client_id, self.static_metrics)
                self._evaluate(trial)
                self.progress.update(trial)
                for callback in self.callbacks:
                    callback(self.study, trial)
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
            trial.fail(repr(error)[:MAX_REASON])
            return
        except BaseException as error:
            _fail_quietly(trial, repr(error)[:MAX_REASON])
            raise
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            reason = f"the objective returned {value!r}, not a finite number"
            log.warning("trial %d failed: %s", trial.number, reason)
            trial.fail(reason[:MAX_REASON])
            return
        trial.tell(number)


def _fail_quietly(trial: Trial, reason: str) -> None:
    # The objective's own exception is the one to report; a failure to record it must not hide it.
    try:
        trial.fail(reason)
    except Exception:
        log.warning("could not mark trial %d failed", trial.number, exc_info=True)


class Progress:
    """A one-line progress report on stderr, without a dependency on tqdm.

    On a terminal the line is rewritten in place; in a log file a line is written every tenth of
    the run, so logs stay readable.
    """

    def __init__(self, total: int | None, direction: str, *, enabled: bool = True,
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
        self._every = max(1, (total or 100) // 10)  # no total (a timeout, a stop): every 10

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
        total = "?" if self.total is None else self.total
        return (f"dyesp {self.done}/{total} trials | best {best} | failed {failed} | "
                f"infeasible {infeasible} | stopped {stopped} | {elapsed:.1f}s")

    def close(self) -> None:
        if self.enabled and self._tty and self.done:
            with self._lock:
                self.stream.write("\n")
                self.stream.flush()
