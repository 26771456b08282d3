"""Route of the pruner resource: its active version, measured trust and retraining history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from service import studies
from service.api.deps import MAX_OFFSET, ContextDep, CurrentOwner, SessionDep, StudyId
from service.db import pruners as pruner_queries
from service.engine.trust import measure_trust
from service.schemas import Problem, PrunerReport, PrunerVersionOut

router = APIRouter(prefix="/v1/studies/{study_id}", tags=["pruner"],
                   responses={401: {"model": Problem}, 404: {"model": Problem}})


@router.get("/pruner", operation_id="get_pruner")
def get_pruner(study_id: StudyId, owner: CurrentOwner, ctx: ContextDep, session: SessionDep,
               request: Request, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> PrunerReport:
    """Versions are paged newest first and never carry their weights."""
    study = studies.find_study(session, owner, study_id)
    rows, total = pruner_queries.version_page(session, study_id, offset, limit)
    history = ctx.cache.load(session, study_id, study.direction)
    return PrunerReport(
        active_version=pruner_queries.active_version(session, study_id),
        trust=measure_trust(history), n_pruned=pruner_queries.count_pruned(session, study_id),
        retraining=request.app.state.retrainer.mode,
        versions=[PrunerVersionOut(version=r.version, active=r.active, n_train=r.n_train,
                                   device=r.device, seconds=r.seconds, metrics=r.metrics or {},
                                   created_at=r.created_at) for r in rows],
        versions_total=total,
    )
