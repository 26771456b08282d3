"""Routes of the engine's own state for a study: the pruner (active version, measured trust,
retraining history) and the early-stopping policy (how hard each rung cuts, and why)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.api.deps import MAX_OFFSET, ContextDep, CurrentOwner, SessionDep, StudyId
from service.schemas import (
    FidelityOut,
    Problem,
    PrunerReport,
    RungRuleOut,
    StoppingPolicyOut,
)
from service.usecases import reports, study_lifecycle

router = APIRouter(prefix="/v1/studies/{study_id}", tags=["pruner"],
                   responses={401: {"model": Problem}, 404: {"model": Problem}})


@router.get("/pruner", operation_id="get_pruner")
def get_pruner(study_id: StudyId, owner: CurrentOwner, ctx: ContextDep, session: SessionDep,
               request: Request, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> PrunerReport:
    """Versions are paged newest first and never carry their weights."""
    return study_lifecycle.pruner_report(ctx, session, owner, study_id, offset, limit,
                                         retraining=request.app.state.retrainer.mode)


@router.get("/stopping", operation_id="get_stopping_policy")
def get_stopping_policy(study_id: StudyId, owner: CurrentOwner,
                        session: SessionDep) -> StoppingPolicyOut:
    """Each rung's keep share and the evidence it was calibrated from (recalibrated after every
    tell of a trial that reported); no rules for a study without a fidelity."""
    fidelity, curves, policy = reports.stopping_policy(session, owner, study_id)
    return StoppingPolicyOut(
        fidelity=None if fidelity is None else FidelityOut(name=fidelity.name, min=fidelity.min,
                                                           max=fidelity.max),
        curves=curves,
        rules=[RungRuleOut(**{k: v for k, v in r.to_dict().items() if k != "anchors"})
               for r in policy.rules])
