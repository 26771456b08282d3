"""Study and Trial: thin views of the server's objects, with the calls that act on them."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypedDict, overload
from urllib.parse import quote

from dyesp_client._errors import APIError, Infeasible, TrialStopped
from dyesp_client._retry import Retryable

if TYPE_CHECKING:
    from dyesp_client._client import Client
    from dyesp_client._optimize import Callback

__all__ = ["Fidelity", "Study", "Trial", "TrialState"]

log = logging.getLogger("dyesp_client")
TrialState = Literal["waiting", "running", "complete", "failed", "infeasible", "stopped"]
# The server's maximum page size: fewest round trips when listing trials.
PAGE_SIZE = 1000
ADD_TRIALS_BATCH = 1000  # finished trials the server records per request
# Why a TrialStopped with nothing reported is recorded failed (the server refuses such a stop).
STOPPED_BEFORE_REPORT = ("the objective raised TrialStopped before any trial.report(): "
                         "no value to keep, so the trial is recorded failed")


class Fidelity(TypedDict):
    """The budget a study's trials report along, e.g. ``{"name": "epoch", "min": 1, "max": 52}``:
    the steps of :meth:`Trial.report` run from ``min`` to ``max``."""

    name: str
    min: int
    max: int


def _points(rows: Any) -> list[tuple[int, float]]:
    return [(int(step), float(value)) for step, value in rows or []]


def study_path(study_id: str) -> str:
    return f"/v1/studies/{quote(str(study_id), safe='')}"


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:  # Python 3.10's fromisoformat does not read the "Z" suffix
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:  # a timestamp is informative only: never fail a call over its format
        return None


class Trial:
    """One configuration handed out by the server, and its outcome.

    A trial from :meth:`Study.ask` is ``running`` and heartbeats in the background until it is
    told, failed or marked infeasible. Used as a context manager, an exception marks it failed
    (or infeasible for :class:`Infeasible`), and leaving without a result marks it failed, so an
    abandoned trial is not kept alive by its heartbeats. :class:`TrialStopped` raised after a
    report tells it stopped and ends the ``with`` block quietly.

    ``report(step, value)`` sends a point of the learning curve and returns True when the server
    says to stop early; ``intermediate`` holds the last 100 points, ``last_step`` the last step.

    Example::

        with study.ask() as trial:
            trial.tell(train(**trial.params))
    """

    def __init__(self, study: Study, data: Mapping[str, Any]) -> None:
        self.study = study
        self._update(data)

    def _update(self, data: Mapping[str, Any]) -> None:
        self.id: int = data["id"]
        self.number: int = data["number"]
        self.state: TrialState = data["state"]
        self.params: dict[str, Any] = dict(data["params"])
        self.value: float | None = data.get("value")
        self.reason: str | None = data.get("reason")
        self.proposal: dict[str, Any] | None = data.get("proposal")
        self.static_metrics: dict[str, float] = dict(data.get("static_metrics") or {})
        self.created_at = _time(data.get("created_at"))
        self.started_at = _time(data.get("started_at"))
        self.heartbeat_at = _time(data.get("heartbeat_at"))
        self.completed_at = _time(data.get("completed_at"))
        # The last 100 reported (step, value) points; curve() reads them all.
        self.intermediate: list[tuple[int, float]] = _points(data.get("intermediate"))
        self.last_step: int | None = data.get("last_step")
        # The client's own JSON notes (Optuna's user_attrs); set with set_user_attr.
        self.user_attrs: dict[str, Any] = dict(data.get("user_attrs") or {})
        if not hasattr(self, "_should_stop"):  # the last report's answer outlives a re-read
            self._should_stop = False
            self._stop_reason: str | None = None

    @property
    def _path(self) -> str:
        return f"{self.study._path}/trials/{self.id}"

    # --- early stopping -----------------------------------------------------------------------

    def report(self, step: int, value: float) -> bool:
        """Report the objective's ``value`` at ``step`` (an epoch, a number of samples: the study's
        fidelity) and return whether the server says to stop this trial now.

        On True, end the objective with ``raise TrialStopped()``: ``optimize`` then tells the trial
        ``stopped``, keeping this last value. Reporting the same step and value again is harmless
        (which is why it is retried); the same step with another value is a 409. A report also
        counts as a heartbeat.

        Example::

            def objective(trial):
                for epoch in range(1, 28):
                    accuracy = train_one_epoch(model)
                    if trial.report(epoch, accuracy):
                        raise TrialStopped()  # reason: trial.stop_reason
                return accuracy
        """
        if isinstance(step, bool) or int(step) != step:
            raise ValueError(f"step must be an integer, got {step!r}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"value must be a finite number, got {value!r}")
        data = self.study.client._call("POST", f"{self._path}/report",
                                       json={"step": int(step), "value": number})
        self._should_stop = bool(data.get("should_stop"))
        self._stop_reason = data.get("reason") if self._should_stop else None
        self.last_step = int(step)
        self.intermediate = [*[p for p in self.intermediate if p[0] != step], (int(step), number)]
        self.intermediate = self.intermediate[-100:]
        return self._should_stop

    @property
    def should_stop(self) -> bool:
        """The server's answer to the last :meth:`report` (False before any)."""
        return self._should_stop

    @property
    def stop_reason(self) -> str | None:
        """Why the server said stop at the last :meth:`report`, or None."""
        return self._stop_reason

    def stop(self, reason: str | None = None) -> Trial:
        """Finish the trial early as ``stopped``: the server keeps its last reported value and
        step. ``reason`` defaults to the server's stop reason. Needs at least one :meth:`report`
        (else the server answers 409). ``optimize`` calls this for :class:`TrialStopped`."""
        body: dict[str, Any] = {"state": "stopped"}
        reason = reason if reason is not None else self._stop_reason
        if reason is not None:
            body["reason"] = reason
        return self._finish(body)

    def curve(self, page_size: int = PAGE_SIZE) -> list[tuple[int, float]]:
        """Every reported ``(step, value)`` point, in step order (``intermediate`` holds only the
        last 100); follows the server's pages."""
        return self.study.trial_curve(self.id, page_size=page_size)

    def _stopped(self, error: TrialStopped) -> Trial:
        """Record a TrialStopped: stopped if anything was reported, else failed with a reason."""
        if self.last_step is None:
            log.warning("trial %d: %s", self.number, STOPPED_BEFORE_REPORT)
            return self.fail(STOPPED_BEFORE_REPORT)
        return self.stop(error.reason)

    def set_user_attr(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable note on the trial, running or finished (Optuna's
        ``trial.set_user_attr``); ``None`` deletes the key. Bounded by the server: at most 64
        keys of 1 to 128 characters and 16 KiB of JSON per trial (422 past them)."""
        data = self.study.client._call("PATCH", self._path, json={"user_attrs": {key: value}})
        self.user_attrs = dict(data.get("user_attrs") or {})

    @property
    def _key(self) -> tuple[str, int]:
        return (self.study.id, self.id)

    def tell(self, value: float, static_metrics: Mapping[str, float] | None = None) -> Trial:
        """Record the objective value. Telling the same value again is harmless (the server makes
        tell idempotent, which is also why it is retried); a different value is a 409.

        ``static_metrics`` (declared by the study) are stored and used to train the pruner.
        """
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"value must be a finite number, got {value!r}")
        body: dict[str, Any] = {"value": number}
        if static_metrics:
            body["static_metrics"] = {k: float(v) for k, v in static_metrics.items()}
        return self._finish(body)

    def fail(self, reason: str | None = None) -> Trial:
        """Record that the run broke for reasons unrelated to the configuration."""
        body: dict[str, Any] = {"state": "failed"}
        if reason is not None:
            body["reason"] = reason
        return self._finish(body)

    def infeasible(self, reason: str | None = None) -> Trial:
        """Record that the configuration cannot work, so the search avoids its neighbourhood."""
        body: dict[str, Any] = {"state": "infeasible"}
        if reason is not None:
            body["reason"] = reason
        return self._finish(body)

    def _finish(self, body: dict[str, Any]) -> Trial:
        client = self.study.client
        try:
            data = client._call("POST", f"{self._path}/tell", json=body)
        except APIError as error:
            if error.status in (404, 409):  # gone or finished: no more heartbeats either way
                client._heartbeat.discard(self._key)
            raise
        client._heartbeat.discard(self._key)
        self._update(data)
        return self

    def _start_heartbeat(self) -> None:
        interval = self.study.client.heartbeat_interval
        if interval is None or self.state != "running":
            return
        timeout = self.study.heartbeat_timeout_s
        if timeout:  # beat well within the study's timeout, even if the client's default is longer
            interval = min(interval, timeout / 3)
        self.study.client._heartbeat.add(self._key, interval, self._beat)

    def _beat(self) -> bool:
        try:
            self.study.client._call("POST", f"{self._path}/heartbeat", json={})
        except APIError as error:
            if error.status in (404, 409):
                log.warning("trial %d of study %s is no longer running (%s); heartbeats stop",
                            self.number, self.study.id, error.detail)
                return False
            raise
        return True

    def __enter__(self) -> Trial:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        if self.state != "running":
            return None
        if isinstance(exc, Infeasible):
            self.infeasible(exc.reason)
        elif isinstance(exc, TrialStopped):
            # a stop is the planned way out of the block, so it ends there; one raised before
            # any report is a mistake, recorded failed and left to propagate
            return self._stopped(exc).state == "stopped"
        else:
            self.fail()

    def __repr__(self) -> str:
        return (f"Trial(number={self.number}, state={self.state!r}, value={self.value!r}, "
                f"params={self.params!r})")


MetricsFn = Callable[[dict[str, Any]], Mapping[str, float]]


def _metrics_of(fn: MetricsFn | None, candidate: Mapping[str, Any]) -> dict[str, float]:
    """The user's metrics for one candidate; a candidate whose metrics fail is sent without
    them (the server still predicts it from its configuration) rather than failing the ask."""
    if fn is None:
        return {}
    try:
        values = fn(dict(candidate["params"]))
        return {str(k): float(v) for k, v in values.items() if math.isfinite(float(v))}
    except Exception as error:
        log.warning("static_metrics failed for %s: %s", candidate["params"], error)
        return {}


class Study:
    """A named search over one space, owned by one API key.

    Example::

        study = client.create_study("mlp", [
            {"name": "depth", "type": "int", "low": 1, "high": 4},
            {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        ])
        best = study.optimize(lambda t: t.params["depth"] * t.params["lr"], n_trials=20)
        print(best.value, best.params)
    """

    def __init__(self, client: Client, data: Mapping[str, Any]) -> None:
        self.client = client
        self._runs: list[threading.Event] = []  # the stop flags of this study's optimize calls
        self._update(data)

    def _update(self, data: Mapping[str, Any]) -> None:
        self.id: str = data["id"]
        self.name: str = data["name"]
        self.direction: Literal["minimize", "maximize"] = data["direction"]
        self.space: dict[str, Any] = dict(data["space"])
        self.seed: int | None = data.get("seed")
        self.heartbeat_timeout_s: float | None = data.get("heartbeat_timeout_s")
        self.static_metrics: list[str] = list(data.get("static_metrics") or [])
        self.created_at = _time(data.get("created_at"))
        self.n_trials: int = data.get("n_trials", 0)
        self.trials_by_state: dict[str, int] = dict(data.get("trials_by_state") or {})
        best = data.get("best_trial")
        self.best_trial: Trial | None = Trial(self, best) if best else None
        # {"sources", "prior_trials", "trust", "active"} for a study that learns from earlier
        # ones (trust is filled in by ``refresh``/``get_study``, not in listings); else None.
        self.transfer: dict[str, Any] | None = data.get("transfer")
        # What trials report along (see Trial.report), e.g. {"name": "epoch", "min": 1, "max": 52}.
        self.fidelity: Fidelity | None = data.get("fidelity")
        self.deterministic: bool = bool(data.get("deterministic"))
        # The client's own JSON notes (Optuna's user_attrs); set with set_user_attr.
        self.user_attrs: dict[str, Any] = dict(data.get("user_attrs") or {})

    @property
    def _path(self) -> str:
        return study_path(self.id)

    def refresh(self) -> Study:
        """Re-read the study (trial counts, best trial, transfer trust) from the server."""
        self._update(self.client._call("GET", self._path))
        return self

    def set_user_attr(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable note on the study (Optuna's ``study.set_user_attr``);
        ``None`` deletes the key. Same bounds as :meth:`Trial.set_user_attr`."""
        self._update(self.client._call("PATCH", self._path, json={"user_attrs": {key: value}}))

    @overload
    def ask(self, count: None = None, *, client_id: str | None = None,
            static_metrics: MetricsFn | None = None) -> Trial: ...

    @overload
    def ask(self, count: int, *, client_id: str | None = None,
            static_metrics: MetricsFn | None = None) -> list[Trial]: ...

    def ask(self, count: int | None = None, *, client_id: str | None = None,
            static_metrics: MetricsFn | None = None) -> Trial | list[Trial]:
        """Get one running trial, or a list of ``count`` trials.

        Each call sends a fresh ``client_id``, reused by its own retries: the server answers a
        repeated ask with the same id with the trials it already handed out, so a retried ask never
        leaks a trial. Pass a stable ``client_id`` (e.g. a host and GPU name) to get a crashed
        worker's running trials back after a restart.

        For a study that declares static metrics, ``static_metrics(params) -> dict`` is called on
        each candidate the server offers (build the model, count, score: no training) and the
        server's pruner picks the trials from them; without it the server picks in its own order.
        """
        trials = self._ask(1 if count is None else count, client_id or self.client._new_client_id(),
                           static_metrics)
        return trials[0] if count is None else trials

    def _ask(self, count: int, client_id: str,
             static_metrics: MetricsFn | None = None) -> list[Trial]:
        body: dict[str, Any] = {"count": count, "client_id": client_id}
        data = self.client._call("POST", f"{self._path}/ask", json=body)
        items = list(data["trials"])  # e.g. enqueued trials, handed out before any pool
        for _ in range(3):  # a pool that expired while metrics were computed is offered anew
            if not data.get("candidates"):
                break
            answers = [{"token": c["token"], "static_metrics": _metrics_of(static_metrics, c)}
                       for c in data["candidates"]]
            rest = {**body, "count": count - len(items)}
            try:
                data = self.client._call("POST", f"{self._path}/ask",
                                         json={**rest, "candidates": answers})
                items += data["trials"]
            except APIError as error:
                if error.status != 409:
                    raise
                data = self.client._call("POST", f"{self._path}/ask", json=rest)
                items += data["trials"]
        trials = [Trial(self, item) for item in items]
        for trial in trials:
            trial._start_heartbeat()
        return trials

    def enqueue(self, params: Mapping[str, Any], skip_if_exists: bool = False) -> Trial:
        """Queue a configuration to be handed out by the next ask, ahead of new proposals
        (Optuna's ``enqueue_trial``). ``params`` may leave params out: the server fills them in
        when it hands the trial out, reproducibly from the study's seed. ``skip_if_exists``
        returns a trial of the study that already has these values, in any state, instead.

        Not retried once sent: a second POST would queue it twice.
        """
        body: dict[str, Any] = {"params": dict(params)}
        if skip_if_exists:
            body["skip_if_exists"] = True
        data = self.client._call("POST", f"{self._path}/trials", json=body,
                                 retry=Retryable.UNSENT)
        return Trial(self, data)

    def add_trial(self, params: Mapping[str, Any], value: float | None = None, *,
                  state: TrialState = "complete", intermediate: Any = (),
                  user_attrs: Mapping[str, Any] | None = None, reason: str | None = None,
                  **fields: Any) -> Trial:
        """Record one trial that already ran elsewhere (Optuna's ``study.add_trial``): a whole
        configuration and its outcome; the server's engine learns from it as from a told
        trial. ``intermediate`` is its curve, ``[(step, value), ...]``; a ``stopped`` trial's
        value is its last point. ``fields`` may add ``static_metrics``, ``started_at`` and
        ``completed_at`` (ISO 8601 with a zone)."""
        item: dict[str, Any] = {"params": dict(params), "state": state, **fields}
        if value is not None:
            item["value"] = float(value)
        if intermediate:
            item["intermediate"] = [[int(s), float(v)] for s, v in intermediate]
        if user_attrs:
            item["user_attrs"] = dict(user_attrs)
        if reason is not None:
            item["reason"] = reason
        return self.add_trials([item])[0]

    def add_trials(self, items: list[Mapping[str, Any]]) -> list[Trial]:
        """Record finished trials given as the API's items (``{"params", "state"?, "value"?,
        "intermediate"?, "user_attrs"?, "reason"?, ...}``; see :meth:`add_trial`). Sent 1,000
        to a request, the server's limit: each request is all or nothing (a 422 records none
        of its trials and names the first bad one). Not retried once sent."""
        out: list[Trial] = []
        for start in range(0, len(items), ADD_TRIALS_BATCH):
            batch = [dict(item) for item in items[start:start + ADD_TRIALS_BATCH]]
            data = self.client._call("POST", f"{self._path}/trials:batch",
                                     json={"trials": batch}, retry=Retryable.UNSENT)
            out += [Trial(self, item) for item in data["trials"]]
        return out

    def trials(self, state: TrialState | None = None) -> list[Trial]:
        """All trials in number order, optionally only those in ``state`` (follows the pages)."""
        out: list[Trial] = []
        while True:
            query: dict[str, Any] = {"offset": len(out), "limit": PAGE_SIZE}
            if state is not None:
                query["state"] = state
            page = self.client._call("GET", f"{self._path}/trials", params=query)
            out.extend(Trial(self, item) for item in page["trials"])
            if not page["trials"] or len(out) >= page["total"]:
                return out

    def trials_dataframe(self, attrs: Sequence[str] | None = None) -> Any:
        """The trials as a pandas DataFrame shaped like Optuna's ``study.trials_dataframe()``:
        ``number, value, datetime_start, datetime_complete, duration, params_<name>...,
        user_attrs_<key>..., state`` (Optuna's state names: COMPLETE, PRUNED for stopped, FAIL,
        RUNNING, WAITING; INFEASIBLE has no Optuna counterpart). ``attrs`` picks among those.
        Needs pandas: ``pip install 'dyesp-client[pandas]'``."""
        from dyesp_client._frames import DEFAULT_ATTRS, trials_dataframe

        return trials_dataframe(self, DEFAULT_ATTRS if attrs is None else attrs)

    def trials_csv(self, path_or_file: Any) -> None:
        """Download the server's ``trials.csv`` into a path or an open file, streamed (see
        docs/api-contract.md for its columns; user_attrs are one JSON column)."""
        from dyesp_client._frames import trials_csv

        trials_csv(self, path_or_file)

    def trial_curve(self, trial_id: int, page_size: int = PAGE_SIZE) -> list[tuple[int, float]]:
        """Every ``(step, value)`` point reported for trial ``trial_id``, following the pages."""
        path = f"{self._path}/trials/{int(trial_id)}/curve"
        out: list[tuple[int, float]] = []
        while True:
            page = self.client._call("GET", path, params={"offset": len(out), "limit": page_size})
            out += _points(page["points"])
            if not page["points"] or len(out) >= page["total"]:
                return out

    def stopping_policy(self) -> dict[str, Any]:
        """How hard each rung of early stopping cuts now, and the evidence behind it:
        ``{"fidelity", "curves", "rules": [{"step", "keep", "trust", "measured", "pairs",
        "wrong_stop_rate"}]}`` (no rules without a fidelity)."""
        return self.client._call("GET", f"{self._path}/stopping")

    def best(self) -> Trial | None:
        """The best complete trial, or None before any result (also refreshes the study)."""
        return self.refresh().best_trial

    def optimize(self, fn: Callable[[Trial], float], n_trials: int | None = None,
                 n_workers: int = 1, show_progress: bool = True,
                 catch: Iterable[type[BaseException]] | type[BaseException] = (),
                 static_metrics: MetricsFn | None = None, *, timeout: float | None = None,
                 callbacks: Sequence[Callback] | None = None) -> Trial | None:
        """Run ``fn`` on trials with ``n_workers`` threads until ``n_trials`` were asked,
        ``timeout`` seconds passed or :meth:`stop` was called; return the best trial.

        See :func:`dyesp_client.optimize` for how exceptions in ``fn`` are recorded (``catch`` is
        empty by default, as in Optuna) and for ``callbacks``, and :meth:`ask` for
        ``static_metrics``.
        """
        from dyesp_client._optimize import optimize

        return optimize(self, fn, n_trials, timeout=timeout, n_workers=n_workers,
                        show_progress=show_progress, catch=catch, callbacks=callbacks,
                        static_metrics=static_metrics)

    def stop(self) -> None:
        """End the running :meth:`optimize` calls of this Study object, as Optuna's
        ``Study.stop``: no new trial is asked, the running ones finish and are told. Call it from
        the objective or a callback."""
        if not self._runs:
            raise RuntimeError("Study.stop() ends a running optimize(): call it from the "
                               "objective or a callback, not outside optimize()")
        for flag in list(self._runs):
            flag.set()

    def __repr__(self) -> str:
        return (f"Study(id={self.id!r}, name={self.name!r}, direction={self.direction!r}, "
                f"n_trials={self.n_trials})")
