"""``dyesp import-optuna``: an Optuna study (from its storage URL) becomes a study here, its space
mapped to ours and its finished trials recorded with their curves, through the use cases (no
HTTP), so it can serve as a transfer prior (``transfer_from``) or go on being searched.

Optuna is an optional dependency, imported only when this runs.

How Optuna's data maps:
- ``FloatDistribution(low, high, log, step)`` -> a float param, ``IntDistribution`` -> an int
  param (log and step kept), ``CategoricalDistribution`` -> a categorical (its choices must be
  strings, numbers or booleans). A param whose range differs between trials (Optuna allows
  dynamic ranges) gets the union of the ranges; different kinds or steps are an error.
- Conditional spaces: Optuna has no conditions, only params some trials did not suggest. A
  param missing in some trials gets a condition when one discrete param (categorical or int)
  explains it exactly: it is present in every trial that has it, and its values in those trials
  never occur in trials without it; the condition is ``{"parent": that param, "values": those
  values}`` (a categorical parent preferred, then the earliest in the space). A param no such
  parent explains (present under a float threshold, say) is left out of the space and of every
  trial, and reported: ours cannot express "sometimes" without a parent.
- States: COMPLETE -> complete, PRUNED -> stopped (value: its last intermediate value; one with no
  intermediate value becomes failed, with a reason), FAIL -> failed; RUNNING and WAITING trials are
  skipped (not finished). ``intermediate_values`` become the curve and the study's fidelity spans
  their steps (``name: "step"``); non-finite points are dropped. User attributes, start and
  completion times (Optuna's naive local times, read as local) are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.errors import Invalid
from service.schemas import MAX_IMPORT_TRIALS, MAX_STEP, FinishedTrialIn, StudyCreate
from service.usecases import add_trials, study_lifecycle, user_attrs
from service.usecases.context import UseCaseContext

OPTUNA_MISSING = ("dyesp import-optuna needs optuna, an optional dependency: "
                  "pip install 'dyesp[optuna]' (or pip install optuna)")
_STATES = {"COMPLETE": "complete", "PRUNED": "stopped", "FAIL": "failed"}
_CHOICE_TYPES = (bool, int, float, str)


@dataclass
class ImportReport:
    """What one import did, for the command to print."""

    study_id: str
    name: str
    by_state: dict[str, int] = field(default_factory=dict)
    skipped_unfinished: int = 0
    conditions: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)
    dropped_params: list[str] = field(default_factory=list)


class ImportFailed(Exception):
    """The Optuna study cannot be imported as it is; the message says why."""


def load_optuna_study(storage: str, study_name: str) -> Any:
    try:
        import optuna
    except ImportError:
        raise ImportFailed(OPTUNA_MISSING) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError as error:
        raise ImportFailed(f"no Optuna study {study_name!r} in that storage ({error})") from None


def import_optuna(ctx: UseCaseContext, owner_id: int, storage: str, study_name: str,
                  into: str | None = None) -> ImportReport:
    """Create a study of ``owner_id`` from the Optuna study and record its finished trials.

    Everything is checked before the study is created; if recording still fails (the trials go
    in batches of 1,000, each all or nothing), the new study is deleted again."""
    source = load_optuna_study(storage, study_name)
    if len(source.directions) != 1:
        raise ImportFailed(f"Optuna study {study_name!r} has {len(source.directions)} "
                           "objectives; only single-objective studies can be imported")
    finished = [t for t in source.get_trials(deepcopy=False) if t.state.name in _STATES]
    skipped = sum(1 for t in source.get_trials(deepcopy=False) if t.state.name not in _STATES)
    params, conditions, dropped = _space(finished)
    fidelity = _fidelity(finished)
    body = _study_body(into or study_name, source, params, fidelity)
    items = [_item(t, dropped) for t in finished]
    study_attrs = user_attrs.merged({}, dict(source.user_attrs))  # checked before creating
    study = study_lifecycle.create_study(ctx, owner_id, body)
    report = ImportReport(study.id, study.name, skipped_unfinished=skipped,
                          conditions=conditions, dropped_params=dropped)
    try:
        if study_attrs:
            user_attrs.set_study_attrs(ctx, owner_id, study.id, study_attrs)
        for start in range(0, len(items), MAX_IMPORT_TRIALS):
            batch = items[start:start + MAX_IMPORT_TRIALS]
            try:
                add_trials.add_trials(ctx, owner_id, study.id, batch)
            except Invalid as error:
                raise ImportFailed(_name_trial(error, finished, start)) from None
    except BaseException:
        study_lifecycle.delete_study(ctx, owner_id, study.id)
        raise
    for item in items:
        report.by_state[item.state] = report.by_state.get(item.state, 0) + 1
    return report


def _name_trial(error: Invalid, finished: list[Any], start: int) -> str:
    """An add_trials error names ``trials[i]``; say which Optuna trial that was."""
    text = error.detail
    if error.field and error.field.startswith("trials["):
        index = int(error.field[len("trials["):error.field.index("]")])
        text = f"Optuna trial {finished[start + index].number}: {text}"
    return text


def _study_body(name: str, source: Any, params: list[dict[str, Any]],
                fidelity: dict[str, Any] | None) -> StudyCreate:
    try:
        return StudyCreate.model_validate({
            "name": name, "direction": source.direction.name.lower(),
            "space": {"params": params}, "fidelity": fidelity})
    except ValueError as error:
        raise ImportFailed(f"the study cannot be created: {error}") from None


# --- the space ----------------------------------------------------------------------------------

def _space(trials: list[Any]) -> tuple[list[dict[str, Any]], dict[str, tuple[str, list[Any]]],
                                       list[str]]:
    """Our params (in first-seen order), the inferred conditions and the params left out."""
    merged: dict[str, dict[str, Any]] = {}
    for trial in trials:
        for name, distribution in trial.distributions.items():
            spec = _param(name, distribution)
            merged[name] = spec if name not in merged else _union(merged[name], spec)
    conditions: dict[str, tuple[str, list[Any]]] = {}
    dropped: list[str] = []
    for name in merged:
        if all(name in t.params for t in trials):
            continue
        parent = _explaining_parent(name, merged, trials)
        if parent is None:
            dropped.append(name)
        else:
            conditions[name] = parent
    params = []
    for name, spec in merged.items():
        if name in dropped:
            continue
        if name in conditions:
            parent, values = conditions[name]
            spec = {**spec, "condition": {"parent": parent, "values": values}}
        params.append(spec)
    return params, conditions, dropped


def _param(name: str, distribution: Any) -> dict[str, Any]:
    kind = type(distribution).__name__
    if kind == "FloatDistribution":
        spec = {"name": name, "type": "float", "low": distribution.low,
                "high": distribution.high, "log": distribution.log}
        if distribution.step is not None:
            spec["step"] = distribution.step
        return spec
    if kind == "IntDistribution":
        spec = {"name": name, "type": "int", "low": distribution.low, "high": distribution.high,
                "log": distribution.log}
        if distribution.step != 1:
            spec["step"] = distribution.step
        return spec
    if kind == "CategoricalDistribution":
        bad = [c for c in distribution.choices if not isinstance(c, _CHOICE_TYPES)]
        if bad:
            raise ImportFailed(f"param {name!r}: choice {bad[0]!r} is not a string, number or "
                               "boolean, which a categorical here must be")
        return {"name": name, "type": "categorical", "choices": list(distribution.choices)}
    raise ImportFailed(f"param {name!r}: Optuna distribution {kind} has no counterpart here")


def _union(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """One param seen with several distributions: the union of the ranges (or choices)."""
    name = old["name"]
    if old["type"] != new["type"] or old.get("log") != new.get("log") \
            or old.get("step") != new.get("step"):
        raise ImportFailed(f"param {name!r} has incompatible distributions across trials "
                           f"({old} vs {new})")
    if old["type"] == "categorical":
        extra = [c for c in new["choices"] if not any(_same(c, o) for o in old["choices"])]
        return {**old, "choices": old["choices"] + extra}
    return {**old, "low": min(old["low"], new["low"]), "high": max(old["high"], new["high"])}


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _explaining_parent(name: str, params: dict[str, dict[str, Any]],
                       trials: list[Any]) -> tuple[str, list[Any]] | None:
    """A discrete param whose values say exactly when ``name`` is present (see the module)."""
    with_it = [t for t in trials if name in t.params]
    without = [t for t in trials if name not in t.params]
    candidates = sorted((p for p in params.values() if p["name"] != name
                         and p["type"] in ("categorical", "int")),
                        key=lambda p: p["type"] != "categorical")  # stable: space order kept
    for parent in candidates:
        key = parent["name"]
        if not all(key in t.params for t in with_it):
            continue
        present = _distinct(t.params[key] for t in with_it)
        absent = _distinct(t.params[key] for t in without if key in t.params)
        if len(present) <= 1024 and not any(_same(a, p) for a in absent for p in present):
            return key, present
    return None


def _distinct(values: Any) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if not any(_same(value, seen) for seen in out):
            out.append(value)
    return out


# --- the trials -----------------------------------------------------------------------------------

def _fidelity(trials: list[Any]) -> dict[str, Any] | None:
    steps = [s for t in trials for s, v in t.intermediate_values.items() if math.isfinite(v)]
    if not steps:
        return None
    low, high = min(steps), max(steps)
    if high > MAX_STEP:
        raise ImportFailed(f"intermediate steps go up to {high}; at most {MAX_STEP} can be "
                           "recorded here")
    return {"name": "step", "min": low, "max": max(high, low + 1)}


def _item(trial: Any, dropped: list[str]) -> FinishedTrialIn:
    curve = sorted((int(s), float(v)) for s, v in trial.intermediate_values.items()
                   if math.isfinite(v))
    state, value, reason = _STATES[trial.state.name], trial.value, None
    if state == "complete" and (value is None or not math.isfinite(value)):
        state, value, reason = "failed", None, f"imported from Optuna: value {value}"
    if state == "stopped" and not curve:
        state, reason = "failed", "imported from Optuna: pruned without an intermediate value"
    body: dict[str, Any] = {
        "params": {k: v for k, v in trial.params.items() if k not in dropped},
        "state": state, "intermediate": curve, "user_attrs": dict(trial.user_attrs),
        "started_at": _utc(trial.datetime_start), "completed_at": _utc(trial.datetime_complete),
    }
    if state == "complete":
        body["value"] = float(value)
    if reason is not None:
        body["reason"] = reason
    try:
        return FinishedTrialIn.model_validate(body)
    except ValueError as error:
        raise ImportFailed(f"Optuna trial {trial.number}: {error}") from None


def _utc(moment: datetime | None) -> datetime | None:
    """Optuna stores naive local times: read them as local, keep them as UTC."""
    if moment is None:
        return None
    return moment.astimezone(UTC)


__all__ = ["OPTUNA_MISSING", "ImportFailed", "ImportReport", "import_optuna"]
