"""Rows -> response models, so routes never hand an ORM object to the client."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.db import report_queries, study_queries, trial_queries
from service.db.models import Study, Trial
from service.schemas import (
    CURVE_IN_TRIAL,
    FidelityOut,
    ProposalOut,
    StudyOut,
    TransferOut,
    TrialOut,
)
from service.usecases.context import UseCaseContext


def trials_out_of(ctx: UseCaseContext, trials: list[Trial]) -> list[TrialOut]:
    """``trials_out`` for a route without a session: one is opened only when a trial reported."""
    if all(t.last_step is None for t in trials):
        return [trial_out(t) for t in trials]
    with ctx.sessions() as session:
        return trials_out(session, trials)


def trials_out(session: Session, trials: list[Trial]) -> list[TrialOut]:
    """Trial objects with the tail of their curves, read in one query (none when no trial of the
    list reported yet, as for freshly asked ones)."""
    reported = [t.id for t in trials if t.last_step is not None]
    curves = report_queries.tails(session, reported, CURVE_IN_TRIAL) if reported else {}
    return [trial_out(t, curves.get(t.id, [])) for t in trials]


def trial_out(trial: Trial, curve: list[tuple[int, float]] | None = None) -> TrialOut:
    """A trial object; ``curve`` is the tail of its curve (``trials_out`` reads it)."""
    return TrialOut(
        id=trial.id, number=trial.number, study_id=trial.study_id, state=trial.state,
        params=trial.params, value=trial.value, reason=trial.reason,
        static_metrics=trial.static_metrics or {},
        proposal=ProposalOut(**trial.proposal) if trial.proposal else None,
        created_at=trial.created_at, started_at=trial.started_at,
        heartbeat_at=trial.heartbeat_at, completed_at=trial.completed_at,
        last_step=trial.last_step, intermediate=list(curve or []),
        user_attrs=trial.user_attrs or {},
    )


def studies_out(session: Session, studies: list[Study]) -> list[StudyOut]:
    ids = [s.id for s in studies]
    counts = study_queries.state_counts(session, ids)
    activity = trial_queries.last_activity(session, ids)
    out = []
    for study in studies:
        best = trial_queries.best(session, study.id, study.direction)
        by_state = counts[study.id]
        out.append(StudyOut(
            id=study.id, name=study.name, direction=study.direction, space=study.space,
            seed=study.seed, heartbeat_timeout_s=study.heartbeat_timeout_s,
            static_metrics=list(study.static_metrics or []), created_at=study.created_at,
            n_trials=sum(by_state.values()), trials_by_state=by_state,
            best_trial=trials_out(session, [best])[0] if best is not None else None,
            transfer=TransferOut(sources=list(study.transfer_from)) if study.transfer_from
            else None,
            fidelity=FidelityOut(**study.fidelity) if study.fidelity else None,
            deterministic=study.deterministic, user_attrs=study.user_attrs or {},
            revision=study.revision, last_activity=activity.get(study.id),
        ))
    return out
