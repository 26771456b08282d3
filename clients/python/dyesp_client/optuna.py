"""DyespSampler: existing define-by-run Optuna code searched by the DyESP engine, in one line.

Optuna still owns the study: its storage records every trial as usual (so RDB storages,
``optuna.load_study`` from several processes and optuna-dashboard keep working); the sampler only
decides the values and tells the service what came of them.

How an Optuna study maps onto the service:

- **Discovering the space.** Optuna's spaces are only known as the objective runs. A trial with no
  service study behind it samples every value independently (``RandomSampler``); when it finishes,
  its distributions become the space of a *service study* (created then, named after the Optuna
  study and a fingerprint of the space and direction; names are unique per owner, so a create
  that finds the name taken loads that study instead, and processes sharing one Optuna storage
  share one service study). Its id is kept in the Optuna study's system attrs (``dyesp:study``).
- **Asking.** Each later trial asks the service study for a configuration (Optuna's *relative*
  sampling); the service trial's id and params are kept in the Optuna trial's system attrs
  (``dyesp:trial``). A param the service space lacks (a branch seen for the first time), or whose
  proposed value lies outside the distribution the objective asks now, is sampled independently;
  params the service proposes but the objective never asks are simply not used.
- **Telling.** When the trial ends, the service trial is told its value (COMPLETE), its curve and
  ``stopped`` (PRUNED: the intermediate values are reported, so the last one is the result) or
  ``failed`` (FAIL). A trial whose values differ from a proposal (sampled independently because
  the proposal fell outside the distribution) fails that proposal, with a reason: in the service
  ``failed`` means "not evaluated, may be proposed again", which is what it was. What was
  evaluated is then *recorded* as a finished service trial of its own (``add_trial``: one
  request, with its curve when pruned, nothing handed out that another process's ask could take),
  so the engine learns from it.
- **Enqueued trials.** A trial fixed by ``study.enqueue_trial`` asks nothing: its fixed values are
  kept, the params it leaves out are sampled independently, and the whole configuration is
  recorded when it ends. (The service's partial enqueue would fill the missing params no better:
  it samples them uniformly in each param's scale, as the default ``RandomSampler`` does, and
  handing the enqueued trial to *this* Optuna trial would take an enqueue and an ask that another
  process's ask can come between, taking it.)
- **A growing space.** A search space only grows here: when a finished trial used a param the
  service space lacks (or a value outside its range), a new service study is created over the
  union (ranges widened to cover both) that transfers from the earlier ones (the service's
  ``transfer_from``: their results become its prior, shared params keep their meaning, new ones are
  unknown in the old configurations), and asks go there from then on. The engine keeps learning
  across the change instead of sampling the new params at random forever.

The service space has no conditions: a conditional param is proposed in every configuration and
the objective ignores it where its branch is not taken. Failed trials are told (so nothing is left
running) but never recorded: a failure says nothing about the configuration.

Example::

    import optuna
    from dyesp_client.optuna import DyespSampler

    study = optuna.create_study(sampler=DyespSampler("http://127.0.0.1:8000", api_key="..."),
                                storage="sqlite:///optuna.db", study_name="mlp",
                                load_if_exists=True)
    study.optimize(objective, n_trials=100)
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

try:
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
        distribution_to_json,
        json_to_distribution,
    )
    from optuna.samplers import BaseSampler, RandomSampler
    from optuna.study import Study as OptunaStudy
    from optuna.study import StudyDirection
    from optuna.trial import FrozenTrial, TrialState
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("dyesp_client.optuna needs Optuna: pip install 'dyesp-client[optuna]' "
                      "(or pip install optuna)") from error

from dyesp_client._client import Client
from dyesp_client._errors import APIError, DyespError
from dyesp_client._study import Study, Trial

__all__ = ["DyespSampler"]

log = logging.getLogger("dyesp_client")

STUDY_ATTR = "dyesp:study"  # Optuna study: {"id", "distributions"} of the current service study
SOURCES_ATTR = "dyesp:sources"  # Optuna study: ids of every service study it used, oldest first
TRIAL_ATTR = "dyesp:trial"  # Optuna trial: {"study_id", "id", "number", "params"} of its trial
# The service's limits (docs/api-contract.md): names, choices and numbers beyond them are sampled
# independently instead of failing the service study's creation.
MAX_NAME = 128
MAX_STUDY_NAME = 256
MAX_SAFE_INT = 2**53 - 1
MAX_ABS_FLOAT = 1e15
MAX_STEP = 10**6
MAX_REASON = 2000
MAX_SOURCES = 16  # transfer sources of one study: the newest ones
MAX_CURVE_POINTS = 100  # reported per pruned proposal: its last points, one request each
MAX_RECORDED_POINTS = 10_000  # of a recorded pruned trial, in its one request (the server's limit)


# --- distributions <-> the service's params --------------------------------------------------


def _plain_choice(choice: Any) -> bool:
    if isinstance(choice, (str, bool)):
        return True
    if isinstance(choice, int):
        return abs(choice) <= MAX_SAFE_INT
    return isinstance(choice, float) and math.isfinite(choice)


def _choice_token(choice: Any) -> tuple[bool, bool, Any]:
    # the service's notion of a duplicate: True is not 1, but 1 is 1.0
    number = isinstance(choice, (int, float)) and not isinstance(choice, bool)
    return isinstance(choice, bool), number, choice


def service_choices(choices: Sequence[Any]) -> list[Any] | None:
    """The choices as the service stores them: themselves when JSON and the service take them
    (strings, booleans, finite numbers, no two alike), else their ``repr`` (None, say); None when
    even the reprs collide."""
    if all(_plain_choice(c) for c in choices) and len({_choice_token(c) for c in choices}) == len(
            choices):
        return list(choices)
    labels = [repr(c) for c in choices]
    return labels if len(set(labels)) == len(labels) else None


def to_service_param(name: str, dist: BaseDistribution) -> dict[str, Any] | None:
    """The service's param for an Optuna distribution, or None when it has nothing to learn
    (a single value) or lies outside the service's limits: such a param is sampled
    independently."""
    if len(name) > MAX_NAME or dist.single():
        return None
    if isinstance(dist, FloatDistribution):
        if max(abs(dist.low), abs(dist.high)) > MAX_ABS_FLOAT:
            return None
        param: dict[str, Any] = {"name": name, "type": "float", "low": dist.low, "high": dist.high}
        if dist.log:
            param["log"] = True
        if dist.step is not None:
            param["step"] = dist.step
        return param
    if isinstance(dist, IntDistribution):
        if max(abs(dist.low), abs(dist.high), dist.step) > MAX_SAFE_INT:
            return None
        param = {"name": name, "type": "int", "low": dist.low, "high": dist.high}
        if dist.log:
            param["log"] = True  # Optuna allows log only with step 1, the service's default
        elif dist.step != 1:
            param["step"] = dist.step
        return param
    if isinstance(dist, CategoricalDistribution):
        choices = service_choices(dist.choices)
        return None if choices is None else {"name": name, "type": "categorical",
                                             "choices": choices}
    return None


def to_service_value(dist: BaseDistribution, value: Any) -> Any:
    if isinstance(dist, CategoricalDistribution):
        choices = service_choices(dist.choices)
        assert choices is not None  # only called for params of a service space
        return choices[int(dist.to_internal_repr(value))]
    if isinstance(dist, IntDistribution):
        return int(value)
    return float(value)


_MISSING = object()


def from_service_value(dist: BaseDistribution, value: Any) -> Any:
    """The Optuna value for a service value, or ``_MISSING`` when it cannot be one (Optuna itself
    then checks the range, and samples independently a value outside it)."""
    if isinstance(dist, CategoricalDistribution):
        choices = service_choices(dist.choices) or []
        for i, choice in enumerate(choices):
            if _choice_token(choice) == _choice_token(value):
                return dist.choices[i]
        return _MISSING
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _MISSING
    if isinstance(dist, IntDistribution):
        return int(value) if float(value).is_integer() else _MISSING
    return float(value)


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (isinstance(a, (int, float)) and isinstance(b, (int, float))
                and not isinstance(a, bool) and not isinstance(b, bool)
                and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300))
    return _choice_token(a) == _choice_token(b)


def _hull(old: BaseDistribution, new: BaseDistribution) -> BaseDistribution:
    """The smallest distribution of old's kind holding both (same kind and log: Optuna keeps them
    fixed within a study); the newer one when the kinds differ."""
    if old == new:
        return old
    if isinstance(old, FloatDistribution) and isinstance(new, FloatDistribution) and (
            old.log == new.log):
        low, high = min(old.low, new.low), max(old.high, new.high)
        step = old.step if old.step is not None and old.step == new.step and _on_grid(
            (new.low - old.low) / old.step) and _on_grid((high - low) / old.step) else None
        return FloatDistribution(low, high, log=old.log, step=step)
    if isinstance(old, IntDistribution) and isinstance(new, IntDistribution) and (
            old.log == new.log):
        low, high = min(old.low, new.low), max(old.high, new.high)
        step = old.step if old.step == new.step and (new.low - old.low) % old.step == 0 and (
            high - low) % old.step == 0 else 1
        return IntDistribution(low, high, log=old.log, step=step)
    return new


def _on_grid(k: float) -> bool:
    return abs(k - round(k)) <= 1e-9 * max(1.0, abs(k))


def merge_space(space: Mapping[str, BaseDistribution],
                seen: Mapping[str, BaseDistribution]) -> dict[str, BaseDistribution]:
    """``space`` grown to hold ``seen``: new params added, ranges widened."""
    out = dict(space)
    for name, dist in seen.items():
        out[name] = dist if name not in out else _hull(out[name], dist)
    return {name: out[name] for name in sorted(out)}


def service_space(space: Mapping[str, BaseDistribution]) -> list[dict[str, Any]]:
    params = [to_service_param(name, dist) for name, dist in sorted(space.items())]
    return [p for p in params if p is not None]


def service_study_name(optuna_name: str, direction: str, params: list[dict[str, Any]]) -> str:
    """``optuna/<study name>/<fingerprint>``: one service study per Optuna study, direction and
    space, found again by name from any process."""
    digest = hashlib.sha256(json.dumps([direction, params], sort_keys=True).encode()).hexdigest()
    prefix = optuna_name[:MAX_STUDY_NAME - 8 - 14]
    return f"optuna/{prefix}/{digest[:12]}"


def _direction(study: OptunaStudy) -> str:
    return "maximize" if study.direction == StudyDirection.MAXIMIZE else "minimize"


# --- the sampler ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Current:
    """The service study an Optuna study asks now, and its space as Optuna distributions."""

    id: str
    distributions: dict[str, BaseDistribution]


class DyespSampler(BaseSampler):
    """An Optuna sampler whose proposals come from a DyESP server (see the module docstring).

    Args:
        url: the server's base URL; or pass ``client``.
        api_key: the key the service studies belong to.
        client: a :class:`dyesp_client.Client` to use instead of one made from ``url``.
        seed: seeds the independent sampling and the service studies.
        independent_sampler: samples what the service does not propose (default
            ``RandomSampler(seed)``).

    Thread-safe: ``study.optimize(..., n_jobs=4)`` shares one sampler. Picklable when built from
    ``url`` (the copy opens its own connection); a sampler built on an injected ``client`` is
    not, since a connection cannot travel. Single-objective studies only: the service optimizes
    one value.

    Example::

        import optuna
        from dyesp_client.optuna import DyespSampler

        def objective(trial):
            x = trial.suggest_float("x", -10, 10)
            if trial.suggest_categorical("model", ["linear", "quadratic"]) == "quadratic":
                return (x - 2) ** 2 + trial.suggest_float("c", 0, 1)
            return abs(x - 2)

        study = optuna.create_study(sampler=DyespSampler("http://127.0.0.1:8000", api_key="..."))
        study.optimize(objective, n_trials=50)
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 client: Client | None = None, seed: int | None = None,
                 independent_sampler: BaseSampler | None = None) -> None:
        if (url is None) == (client is None):
            raise ValueError("give the server's `url` (and `api_key`), or a `client`, not both")
        self._url = url
        self._api_key = api_key
        self._client = client
        self._owns_client = client is None
        self._seed = seed
        self._independent = independent_sampler or RandomSampler(seed=seed)
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.RLock()
        self._studies: dict[str, Study] = {}  # service studies by id: their objects, cached
        self._refused: set[str] = set()  # service study names the server refused to create

    def __getstate__(self) -> dict[str, Any]:
        if not self._owns_client:
            raise TypeError("a DyespSampler built on an injected client cannot be pickled: "
                            "build it from url and api_key")
        state = dict(self.__dict__)
        for key in ("_lock", "_studies", "_refused", "_client"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client = None
        self._init_state()

    @property
    def client(self) -> Client:
        with self._lock:
            if self._client is None:
                assert self._url is not None
                self._client = Client(self._url, api_key=self._api_key)
            return self._client

    def service_study(self, study: OptunaStudy) -> Study | None:
        """The service study the Optuna ``study`` asks now (None before its first finished
        trial): its trials, their proposals and the transfer trust, as the SDK shows them."""
        current = self._current(study)
        return None if current is None else self._service_study(current.id).refresh()

    def close(self) -> None:
        """Close the connection this sampler opened (an injected client stays open)."""
        if self._owns_client and self._client is not None:
            self._client.close()

    # --- Optuna's sampler interface -------------------------------------------------------

    def reseed_rng(self) -> None:
        self._independent.reseed_rng()

    def before_trial(self, study: OptunaStudy, trial: FrozenTrial) -> None:
        if study._is_multi_objective():
            # failed first, so the refused trial is not left RUNNING in Optuna's storage
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            raise ValueError("DyespSampler supports single-objective studies only (the DyESP "
                             f"service optimizes one value), got directions "
                             f"{[d.name.lower() for d in study.directions]}")
        self._independent.before_trial(study, trial)

    def infer_relative_search_space(self, study: OptunaStudy,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        current = self._current(study)
        return {} if current is None else dict(current.distributions)

    def sample_relative(self, study: OptunaStudy, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        # A trial fixed by enqueue_trial keeps its values: nothing to ask; the rest is sampled
        # independently and the whole configuration recorded when it ends.
        if not search_space or trial.system_attrs.get("fixed_params"):
            return {}
        current = self._current(study)
        if current is None:
            return {}
        try:
            proposed = self._service_study(current.id).ask()
        except DyespError as error:
            log.warning("Optuna trial %d: the DyESP service did not answer (%s); its values are "
                        "sampled independently", trial.number, error)
            return {}
        study._storage.set_trial_system_attr(trial._trial_id, TRIAL_ATTR, _link(proposed))
        values = {}
        for name, dist in search_space.items():
            if name in proposed.params:
                value = from_service_value(dist, proposed.params[name])
                if value is not _MISSING:
                    values[name] = value
        return values

    def sample_independent(self, study: OptunaStudy, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: OptunaStudy, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._independent.after_trial(study, trial, state, values)
        if study._is_multi_objective():
            return
        try:
            self._tell(study, trial, _outcome(study, trial, state, values))
        except DyespError as error:  # Optuna's record is the truth: never fail the trial for it
            log.warning("Optuna trial %d was not told to the DyESP service: %s", trial.number,
                        error)

    # --- telling the service ----------------------------------------------------------------

    def _tell(self, study: OptunaStudy, trial: FrozenTrial, outcome: _Outcome) -> None:
        seen = {name: dist for name, dist in trial.distributions.items()
                if to_service_param(name, dist) is not None}
        current = self._cover(study, seen) if seen else self._current(study)
        link = trial.system_attrs.get(TRIAL_ATTR)
        if link is not None:
            proposed = self._linked(link)
            if _evaluated_as_proposed(trial, link["params"]):
                _finish(proposed, outcome)  # in the study that proposed it, even an older one
                return
            _finish(proposed, _Outcome("failed", reason=(
                "the Optuna objective evaluated other values than these (fixed on Optuna's "
                "side, or these lay outside the distributions it asked): not evaluated; what it "
                "evaluated is recorded as a trial of its own")))
        if outcome.kind != "failed" and current is not None and seen:
            self._record(study, trial, current, outcome)

    def _record(self, study: OptunaStudy, trial: FrozenTrial, current: _Current,
                outcome: _Outcome) -> None:
        """Record a configuration the service did not propose as a finished trial of its own
        (``add_trial``: one request, nothing handed out that another process's ask could take)."""
        config = {}
        for name, dist in current.distributions.items():
            if name in trial.params:
                config[name] = to_service_value(trial.distributions[name], trial.params[name])
            else:  # a param of another branch: any value, the objective did not use it
                value = self._independent.sample_independent(study, trial, name, dist)
                config[name] = to_service_value(dist, value)
        started = trial.datetime_start or datetime.now()
        times = {"started_at": started.astimezone().isoformat(),  # Optuna's are naive local
                 "completed_at": datetime.now().astimezone().isoformat()}
        service = self._service_study(current.id)
        if outcome.kind == "value":
            recorded = service.add_trial(config, outcome.value, **times)
        else:
            recorded = service.add_trial(config, state="stopped", intermediate=outcome.curve,
                                         reason=outcome.reason, **times)
        study._storage.set_trial_system_attr(trial._trial_id, TRIAL_ATTR, _link(recorded))

    # --- which service study ----------------------------------------------------------------

    def _current(self, study: OptunaStudy) -> _Current | None:
        data = study._storage.get_study_system_attrs(study._study_id).get(STUDY_ATTR)
        if not data:
            return None
        return _Current(data["id"], {name: json_to_distribution(text)
                                     for name, text in data["distributions"].items()})

    def _cover(self, study: OptunaStudy, seen: Mapping[str, BaseDistribution]) -> _Current | None:
        """The current service study, first replaced by one over a larger space when ``seen``
        does not fit in it."""
        with self._lock:
            current = self._current(study)
            space = {} if current is None else current.distributions
            merged = merge_space(space, seen)
            if current is not None and merged == space:
                return current
            params = service_space(merged)
            name = service_study_name(study.study_name, _direction(study), params)
            if name in self._refused:
                return current
            attrs = study._storage.get_study_system_attrs(study._study_id)
            sources = [s for s in attrs.get(SOURCES_ATTR, []) if s != name]
            try:
                service = self._load_or_create(name, params, _direction(study),
                                               sources[-MAX_SOURCES:])
            except (APIError, ValueError) as error:
                if isinstance(error, APIError) and error.status != 422:
                    raise
                # past the service's limits (422), or the name is taken by a study of another
                # space (ValueError): ask the old one
                self._refused.add(name)
                log.warning("DyESP service study %s cannot be used (%s); the params the current "
                            "one lacks are sampled independently", name, error)
                return current
            study._storage.set_study_system_attr(study._study_id, STUDY_ATTR, {
                "id": service.id,
                "distributions": {n: distribution_to_json(d) for n, d in merged.items()}})
            if service.id not in sources:
                study._storage.set_study_system_attr(study._study_id, SOURCES_ATTR,
                                                     [*sources, service.id])
            return _Current(service.id, merged)

    def _load_or_create(self, name: str, params: list[dict[str, Any]], direction: str,
                        sources: list[str]) -> Study:
        """The service study called ``name``: created, or loaded when it exists (names are
        unique per owner, so every process sharing the Optuna study gets this one)."""
        create = functools.partial(self.client.create_study, name, params, direction=direction,
                                   seed=self._seed, load_if_exists=True)
        try:
            return self._cached(create(transfer_from=sources))
        except APIError as error:
            if error.status != 422 or not sources or not any(
                    e.field.startswith("transfer") for e in error.errors):
                raise
        # a source the new space is incompatible with (a param changed type): start afresh
        return self._cached(create())

    def _cached(self, service: Study) -> Study:
        with self._lock:
            return self._studies.setdefault(service.id, service)

    def _service_study(self, study_id: str) -> Study:
        with self._lock:
            if study_id not in self._studies:
                self._studies[study_id] = self.client.get_study(study_id)
            return self._studies[study_id]

    def _linked(self, link: Mapping[str, Any]) -> Trial:
        """The service trial an Optuna trial was proposed by, from the trial's system attrs (so
        a trial asked in one process can be told from another)."""
        return Trial(self._service_study(link["study_id"]), {
            "id": link["id"], "number": link["number"], "state": "running",
            "params": link["params"]})


def _link(trial: Trial) -> dict[str, Any]:
    return {"study_id": trial.study.id, "id": trial.id, "number": trial.number,
            "params": trial.params}


def _evaluated_as_proposed(trial: FrozenTrial, proposed: Mapping[str, Any]) -> bool:
    """Whether every param the objective asked that the service proposed took the proposed
    value (params proposed but never asked do not matter)."""
    for name, value in proposed.items():
        if name in trial.params:
            dist = trial.distributions[name]
            if to_service_param(name, dist) is None or not _same_value(
                    to_service_value(dist, trial.params[name]), value):
                return False
    return True


@dataclass(frozen=True)
class _Outcome:
    """What a finished Optuna trial tells the service."""

    kind: str  # "value" | "stopped" | "failed"
    value: float | None = None
    curve: tuple[tuple[int, float], ...] = ()
    reason: str | None = None


def _outcome(study: OptunaStudy, trial: FrozenTrial, state: TrialState,
             values: Sequence[float] | None) -> _Outcome:
    if state == TrialState.COMPLETE and values:
        value = float(values[0])
        if math.isfinite(value):
            return _Outcome("value", value=value)
        return _Outcome("failed", reason=f"the objective returned {value}, not a finite number")
    if state == TrialState.PRUNED:
        curve = tuple(sorted((int(step), float(v)) for step, v in trial.intermediate_values.items()
                             if 0 <= step <= MAX_STEP and math.isfinite(v)))[-MAX_RECORDED_POINTS:]
        pruner = type(study.pruner).__name__
        if curve:
            return _Outcome("stopped", curve=curve, reason=f"pruned by Optuna's {pruner}")
        return _Outcome("failed", reason=f"pruned by Optuna's {pruner} before any finite "
                                         "intermediate value: nothing to keep")
    return _Outcome("failed", reason=f"Optuna trial {trial.number} ended {state.name}: see "
                                     "Optuna's log for the objective's exception")


def _finish(trial: Trial, outcome: _Outcome) -> None:
    try:
        if outcome.kind == "value":
            assert outcome.value is not None
            trial.tell(outcome.value)
        elif outcome.kind == "stopped":
            for step, value in outcome.curve[-MAX_CURVE_POINTS:]:
                trial.report(step, value)
            trial.stop(outcome.reason)
        else:
            trial.fail((outcome.reason or "")[:MAX_REASON] or None)
    except APIError as error:
        if error.status != 409:  # finished already (told by another process): keep that
            raise
        log.warning("service trial %d was finished already: %s", trial.id, error.detail)
