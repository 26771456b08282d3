"""Routes of a study's insights: the bounded summaries the dashboard draws (any client may read
them). Each answer's size is set by its limits, never by the study's size."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AfterValidator

from service.api.deps import MAX_OFFSET, ContextDep, CurrentOwner, SessionDep, StudyId
from service.api.routes.trials import StateFilter
from service.api.views import trials_out
from service.db import trial_queries
from service.schemas import (
    MAX_INSIGHT_POINTS,
    CurvesInsight,
    HistoryInsight,
    MapInsight,
    ParamsInsight,
    Problem,
    TrialPage,
    reject_unstorable,
)
from service.usecases import insights, study_lifecycle

router = APIRouter(prefix="/v1/studies/{study_id}/insights", tags=["insights"],
                   responses={401: {"model": Problem}, 404: {"model": Problem},
                              422: {"model": Problem}})
Points = Annotated[int, Query(ge=10, le=MAX_INSIGHT_POINTS)]
Filters = None | list[Annotated[str, AfterValidator(reject_unstorable)]]


@router.get("/history", operation_id="get_history_insight")
def get_history(study_id: StudyId, owner: CurrentOwner, ctx: ContextDep, session: SessionDep,
                max_points: Points = 2000) -> HistoryInsight:
    """Finished trials' values (a stride sample past ``max_points``), the best-so-far line, and
    per-bin strategy mix, credit and exploration degree over the study's life."""
    return insights.history(ctx, session, owner, study_id, max_points)


@router.get("/params", operation_id="get_params_insight")
def get_params(study_id: StudyId, owner: CurrentOwner, ctx: ContextDep, session: SessionDep,
               max_points: Points = 1000) -> ParamsInsight:
    """A sample of complete trials' parameters and values, and each parameter's importance."""
    return insights.parameters(ctx, session, owner, study_id, max_points)


@router.get("/curves", operation_id="get_curves_insight")
def get_curves(study_id: StudyId, owner: CurrentOwner, ctx: ContextDep, session: SessionDep,
               best: Annotated[int, Query(ge=0, le=50)] = 15,
               recent: Annotated[int, Query(ge=0, le=50)] = 10) -> CurvesInsight:
    """Intermediate curves of the best trials that reported and of the newest ones."""
    return insights.curves(ctx, session, owner, study_id, best, recent)


@router.get("/map", operation_id="get_architecture_map")
def get_map(study_id: StudyId, owner: CurrentOwner, ctx: ContextDep, session: SessionDep,
            max_points: Points = 1500) -> MapInsight:
    """Evaluated configurations in 2-D by their distance in the engine's encoding, with pruned
    candidates, clusters and the best region."""
    return insights.architecture_map(ctx, session, owner, study_id, max_points)


@router.get("/trials", operation_id="query_trials")
def query_trials(study_id: StudyId, owner: CurrentOwner, ctx: ContextDep, session: SessionDep,
                 state: StateFilter | None = None,
                 sort: Literal["number", "-number", "value", "-value"] = "number",
                 range_: Annotated[Filters, Query(alias="range", max_length=64, description=(
                     "name:low:high, a numeric parameter's inclusive range (repeatable)"))] = None,
                 choice: Annotated[Filters, Query(max_length=64, description=(
                     "name:choice, a categorical parameter's value (repeatable)"))] = None,
                 offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
                 limit: Annotated[int, Query(ge=1, le=200)] = 50) -> TrialPage:
    """The trials table: filtered by state and parameters, sorted, paged on the server."""
    study = study_lifecycle.find_study(session, owner, study_id)
    ranges, choices = insights.table_filters(ctx.spaces.get(study), range_ or [], choice or [])
    rows, total = trial_queries.filtered_page(
        session, study_id, state=state, ranges=ranges, choices=choices,
        sort=sort.lstrip("-"), descending=sort.startswith("-"), offset=offset, limit=limit)
    return TrialPage(trials=trials_out(session, rows), total=total, offset=offset, limit=limit)
