"""Rows -> response models, so routes never hand an ORM object to the client."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.db import study_queries, trial_queries
from service.db.models import Study, Trial
from service.schemas import ProposalOut, StudyOut, TransferOut, TrialOut


def trial_out(trial: Trial) -> TrialOut:
    return TrialOut(
        id=trial.id, number=trial.number, study_id=trial.study_id, state=trial.state,
        params=trial.params, value=trial.value, reason=trial.reason,
        static_metrics=trial.static_metrics or {},
        proposal=ProposalOut(**trial.proposal) if trial.proposal else None,
        created_at=trial.created_at, started_at=trial.started_at,
        heartbeat_at=trial.heartbeat_at, completed_at=trial.completed_at,
    )


def studies_out(session: Session, studies: list[Study]) -> list[StudyOut]:
    counts = study_queries.state_counts(session, [s.id for s in studies])
    out = []
    for study in studies:
        best = trial_queries.best(session, study.id, study.direction)
        by_state = counts[study.id]
        out.append(StudyOut(
            id=study.id, name=study.name, direction=study.direction, space=study.space,
            seed=study.seed, heartbeat_timeout_s=study.heartbeat_timeout_s,
            static_metrics=list(study.static_metrics or []), created_at=study.created_at,
            n_trials=sum(by_state.values()), trials_by_state=by_state,
            best_trial=trial_out(best) if best is not None else None,
            transfer=TransferOut(sources=list(study.transfer_from)) if study.transfer_from
            else None,
        ))
    return out
