"""Record trials that already ran elsewhere (Optuna's ``add_trial(s)``; ``dyesp import-optuna``).

All or nothing: every item is checked before anything is written, and all are written in one
transaction under the study's row lock, so a 422 leaves the study as it was. They enter the study's
history exactly like told trials (the same rows, stamped with the lock's revision, their curves
as reports), so the engine, the stopping policy and the pruner learn from them.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.db import report_queries, study_queries, trial_queries
from service.db.history import study_fidelity
from service.db.models import Study, Trial, utcnow
from service.db.session import transaction
from service.engine.early_stopping import Fidelity
from service.engine.space import SpaceError
from service.errors import Invalid, NotFound
from service.schemas import MAX_IMPORT_POINTS, MAX_IMPORT_TRIALS, FinishedTrialIn
from service.usecases import reports, user_attrs
from service.usecases.context import UseCaseContext

IMPORTED = {"strategy": "imported", "exploration": 0.0, "predicted": None}


def add_trials(ctx: UseCaseContext, owner_id: int, study_id: str,
               items: list[FinishedTrialIn]) -> list[Trial]:
    """Record ``items`` as finished trials with the next trial numbers; return them in order."""
    if len(items) > MAX_IMPORT_TRIALS:
        raise Invalid("trials", f"at most {MAX_IMPORT_TRIALS} per request, got {len(items)}")
    points = sum(len(item.intermediate) for item in items)
    if points > MAX_IMPORT_POINTS:
        raise Invalid("trials", f"at most {MAX_IMPORT_POINTS} intermediate points per request, "
                                f"got {points}")
    now = utcnow()
    with transaction(ctx.sessions) as session:
        lock = study_queries.lock_study(session, owner_id, study_id)
        if lock is None:
            raise NotFound(f"study {study_id!r} does not exist", "study_id")
        study = lock.study
        rows = [_checked(ctx, study, i, item) for i, item in enumerate(items)]
        numbers = study_queries.take_numbers(session, study_id, lock, len(items))
        trials = []
        for number, item, (params, attrs) in zip(numbers, items, rows, strict=True):
            value = item.value if item.state != "stopped" else item.intermediate[-1][1]
            completed = item.completed_at or now
            trials.append(trial_queries.add_trial(
                session, study_id, number, state=item.state, params=params,
                value=None if value is None else float(value), reason=item.reason,
                static_metrics={k: float(v) for k, v in item.static_metrics.items()},
                proposal=dict(IMPORTED), revision=lock.revision, user_attrs=attrs,
                created_at=item.started_at or completed, started_at=item.started_at or completed,
                completed_at=completed,
                last_step=item.intermediate[-1][0] if item.intermediate else None))
        session.flush()  # the ids the curves hang on
        _add_curves(session, study_id, study_fidelity(study), trials, items)
    if points:  # new finished curves: how far each rung predicts the finals may have changed
        reports.recalibrate(ctx, study_id)
    ctx.told(study_id, lock.revision, len(items))
    return trials


def _checked(ctx: UseCaseContext, study: Study, i: int,
             item: FinishedTrialIn) -> tuple[dict, dict]:
    """The item's configuration (coerced) and user attributes, or an Invalid naming
    ``trials[i]...``: a configuration must be whole and valid, as a told trial's is."""
    try:
        params = ctx.spaces.get(study).validate_config(item.params)
    except SpaceError as error:
        raise Invalid(f"trials[{i}].{error.field}", error.reason) from None
    declared = set(study.static_metrics or [])
    for name in item.static_metrics:
        if name not in declared:
            raise Invalid(f"trials[{i}].static_metrics.{name}",
                          f"is not declared by the study (declared: {sorted(declared)})")
    fidelity = study_fidelity(study)
    for step, _ in item.intermediate:
        if fidelity is not None and not fidelity.min <= step <= fidelity.max:
            raise Invalid(f"trials[{i}].intermediate",
                          f"steps must be within the study's fidelity {fidelity.name!r} "
                          f"[{fidelity.min}, {fidelity.max}], got {step}")
    attrs = user_attrs.merged({}, item.user_attrs, field=f"trials[{i}].user_attrs")
    return params, attrs


def _add_curves(session: Session, study_id: str, fidelity: Fidelity | None,
                trials: list[Trial], items: list[FinishedTrialIn]) -> None:
    """The items' curves, each report with the rung it reached (``Fidelity.rung_points``: the
    rungs the same reports sent one by one would have recorded)."""
    rows = []
    for trial, item in zip(trials, items, strict=True):
        rungs = ({step: rung for rung, step, _ in fidelity.rung_points(item.intermediate)}
                 if fidelity is not None else {})
        rows += [{"study_id": study_id, "trial_id": trial.id, "step": step, "value": float(value),
                  "reason": None, "rung": rungs.get(step)} for step, value in item.intermediate]
    report_queries.add_many(session, rows)
