"""Routes of the study resource."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import AfterValidator

from service.api.deps import MAX_OFFSET, ContextDep, CurrentOwner, SessionDep, StudyId
from service.api.views import studies_out, trials_out
from service.db import study_queries, trial_queries
from service.errors import NotFound
from service.schemas import (
    Problem,
    StudyCreate,
    StudyList,
    StudyOut,
    TrialOut,
    UserAttrsPatch,
    reject_unstorable,
)
from service.usecases import study_lifecycle, user_attrs

ERRORS = {401: {"model": Problem}, 404: {"model": Problem}, 422: {"model": Problem}}
router = APIRouter(prefix="/v1/studies", tags=["studies"], responses=ERRORS)


@router.post("", status_code=201, operation_id="create_study")
def create_study(body: StudyCreate, owner: CurrentOwner, ctx: ContextDep,
                 session: SessionDep) -> StudyOut:
    study = study_lifecycle.create_study(ctx, owner, body)
    return studies_out(session, [study])[0]


@router.get("", operation_id="list_studies")
def list_studies(owner: CurrentOwner, session: SessionDep,
                 name: Annotated[str | None, Query(max_length=256),
                                 AfterValidator(reject_unstorable)] = None,
                 search: Annotated[str | None, Query(max_length=256, description=(
                     "part of the name, any case")), AfterValidator(reject_unstorable)] = None,
                 order: Literal["created", "-created"] = "created",
                 offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> StudyList:
    rows, total = study_queries.list_studies(session, owner, name, offset, limit, search,
                                             newest_first=order == "-created")
    return StudyList(studies=studies_out(session, rows), total=total, offset=offset, limit=limit)


@router.get("/{study_id}", operation_id="get_study")
def get_study(study_id: StudyId, owner: CurrentOwner, session: SessionDep,
              ctx: ContextDep) -> StudyOut:
    study = study_lifecycle.find_study(session, owner, study_id)
    out = studies_out(session, [study])[0]
    if study.transfer_from:
        out.transfer = study_lifecycle.transfer_status(ctx, session, study)
    return out


@router.patch("/{study_id}", operation_id="update_study")
def update_study(study_id: StudyId, body: UserAttrsPatch, owner: CurrentOwner, ctx: ContextDep,
                 session: SessionDep) -> StudyOut:
    """Merge ``user_attrs`` into the study's (a null value deletes its key)."""
    study = user_attrs.set_study_attrs(ctx, owner, study_id, body.user_attrs)
    return studies_out(session, [study])[0]


@router.delete("/{study_id}", status_code=204, operation_id="delete_study")
def delete_study(study_id: StudyId, owner: CurrentOwner, ctx: ContextDep) -> Response:
    study_lifecycle.delete_study(ctx, owner, study_id)
    return Response(status_code=204)


@router.get("/{study_id}/best", operation_id="get_best_trial")
def get_best_trial(study_id: StudyId, owner: CurrentOwner, session: SessionDep) -> TrialOut:
    study = study_lifecycle.find_study(session, owner, study_id)
    best = trial_queries.best(session, study.id, study.direction)
    if best is None:
        raise NotFound(f"study {study_id!r} has no complete trial yet")
    return trials_out(session, [best])[0]
