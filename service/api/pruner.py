"""Route of the pruner resource: its active version, measured trust and retraining history."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import func, select

from service import studies
from service.api.deps import ContextDep, CurrentOwner, SessionDep, StudyId
from service.db.models import PrunedCandidate, PrunerModel
from service.engine.pruner import measure_trust
from service.schemas import Problem, PrunerReport, PrunerVersionOut

router = APIRouter(prefix="/v1/studies/{study_id}", tags=["pruner"],
                   responses={401: {"model": Problem}, 404: {"model": Problem}})


@router.get("/pruner", operation_id="get_pruner")
def get_pruner(study_id: StudyId, owner: CurrentOwner, ctx: ContextDep, session: SessionDep,
               request: Request) -> PrunerReport:
    study = studies.find_study(session, owner, study_id)
    rows = list(session.scalars(select(PrunerModel).where(PrunerModel.study_id == study_id)
                                .order_by(PrunerModel.version.desc())))
    n_pruned = session.scalar(select(func.count()).select_from(PrunedCandidate)
                              .where(PrunedCandidate.study_id == study_id)) or 0
    history = ctx.cache.load(session, study_id, study.direction)
    active = next((r.version for r in rows if r.active), None)
    return PrunerReport(
        active_version=active, trust=measure_trust(history), n_pruned=n_pruned,
        retraining=request.app.state.retrainer.mode,
        versions=[PrunerVersionOut(version=r.version, active=r.active, n_train=r.n_train,
                                   device=r.device, seconds=r.seconds, metrics=r.metrics or {},
                                   created_at=r.created_at) for r in rows],
    )
