"""Route of the pruner resource: its active version, measured trust and retraining history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.api.deps import MAX_OFFSET, ContextDep, CurrentOwner, SessionDep, StudyId
from service.schemas import Problem, PrunerReport
from service.usecases import study_lifecycle

router = APIRouter(prefix="/v1/studies/{study_id}", tags=["pruner"],
                   responses={401: {"model": Problem}, 404: {"model": Problem}})


@router.get("/pruner", operation_id="get_pruner")
def get_pruner(study_id: StudyId, owner: CurrentOwner, ctx: ContextDep, session: SessionDep,
               request: Request, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> PrunerReport:
    """Versions are paged newest first and never carry their weights."""
    return study_lifecycle.pruner_report(ctx, session, owner, study_id, offset, limit,
                                         retraining=request.app.state.retrainer.mode)
