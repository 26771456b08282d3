"""Routes of the trial resource: ask, tell, heartbeat, report, enqueue, list, curve, export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from service.api.deps import (
    MAX_OFFSET,
    AskingOwner,
    ContextDep,
    CurrentOwner,
    SessionDep,
    StudyId,
    TrialId,
)
from service.api.views import trials_out, trials_out_of
from service.db import report_queries, trial_queries
from service.schemas import (
    AddTrialsRequest,
    AskRequest,
    AskResponse,
    CandidateOut,
    CurvePage,
    EnqueueRequest,
    Problem,
    ReportRequest,
    ReportResponse,
    TellRequest,
    TrialList,
    TrialOut,
    TrialPage,
    UserAttrsPatch,
)
from service.usecases import add_trials, ask_tell, reports, study_lifecycle, user_attrs

ERRORS = {401: {"model": Problem}, 404: {"model": Problem}, 409: {"model": Problem},
          422: {"model": Problem}, 503: {"model": Problem}}
router = APIRouter(prefix="/v1/studies/{study_id}", tags=["trials"], responses=ERRORS)
StateFilter = Literal["waiting", "running", "complete", "failed", "infeasible", "stopped"]


@router.post("/ask", operation_id="ask")
def ask(study_id: StudyId, owner: AskingOwner, ctx: ContextDep, request: Request,
        body: AskRequest | None = None) -> AskResponse:
    body = body or AskRequest()
    result = ask_tell.ask(ctx, owner, study_id, body.count, body.client_id, body.candidates)
    if result.coalesced:
        request.app.state.telemetry.coalesced.inc()
    return AskResponse(
        trials=trials_out_of(ctx, result.trials),
        candidates=[CandidateOut(token=c.token, params=c.params) for c in result.candidates],
        expires_at=result.expires_at)


@router.post("/trials", status_code=201, operation_id="enqueue_trial",
             responses={200: {"model": TrialOut,
                              "description": "the same configuration was already waiting"}})
def enqueue_trial(study_id: StudyId, body: EnqueueRequest, owner: CurrentOwner,
                  ctx: ContextDep, response: Response) -> TrialOut:
    trial, created = ask_tell.enqueue(ctx, owner, study_id, dict(body.params),
                                      skip_if_exists=body.skip_if_exists)
    if not created:
        response.status_code = 200
    return trials_out_of(ctx, [trial])[0]


@router.post("/trials:batch", status_code=201, operation_id="add_trials")
def add_finished_trials(study_id: StudyId, body: AddTrialsRequest, owner: CurrentOwner,
                        ctx: ContextDep, request: Request) -> TrialList:
    """Record trials that already ran elsewhere, finished, all or nothing (Optuna's
    ``add_trials``); the engine learns from them as from told trials."""
    trials = add_trials.add_trials(ctx, owner, study_id, body.trials)
    for trial in trials:
        request.app.state.telemetry.told.labels(trial.state).inc()
    return TrialList(trials=trials_out_of(ctx, trials))


@router.get("/trials", operation_id="list_trials")
def list_trials(study_id: StudyId, owner: CurrentOwner, session: SessionDep,
                state: StateFilter | None = None,
                offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> TrialPage:
    study_lifecycle.find_study(session, owner, study_id)
    rows, total = trial_queries.page(session, study_id, state, offset, limit)
    return TrialPage(trials=trials_out(session, rows), total=total, offset=offset, limit=limit)


@router.get("/trials.csv", operation_id="export_trials_csv",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def export_trials_csv(study_id: StudyId, owner: CurrentOwner,
                      ctx: ContextDep) -> StreamingResponse:
    with ctx.sessions() as session:
        study = study_lifecycle.find_study(session, owner, study_id)
        param_names = [p["name"] for p in study.space["params"]]
        metric_names = list(study.static_metrics or [])

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["number", "id", "state", "value", "reason", "strategy",
                         "created_at", "completed_at", "last_step",
                         *[f"params.{n}" for n in param_names],
                         *[f"metrics.{n}" for n in metric_names], "user_attrs"])
        with ctx.sessions() as session:
            for trial in trial_queries.iter_all(session, study_id):
                writer.writerow([
                    trial.number, trial.id, trial.state,
                    "" if trial.value is None else repr(trial.value),
                    csv_safe(trial.reason or ""),
                    csv_safe((trial.proposal or {}).get("strategy", "")),
                    trial.created_at.isoformat(),
                    trial.completed_at.isoformat() if trial.completed_at else "",
                    "" if trial.last_step is None else trial.last_step,
                    *[csv_safe(trial.params.get(n, "")) for n in param_names],
                    *[(trial.static_metrics or {}).get(n, "") for n in metric_names],
                    _json_cell(trial.user_attrs),
                ])
                if buffer.tell() > 64_000:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    filename = f"study-{study_id}.csv"
    return StreamingResponse(rows(), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _json_cell(attrs: dict | None) -> str:
    """user_attrs as one compact JSON cell: their keys differ between trials and are known only
    after reading them all, and the export streams in one pass (the SDK's trials_dataframe
    flattens them into ``user_attrs_<key>`` columns, as Optuna's does). ``{}`` starts no
    formula."""
    return json.dumps(attrs or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# OWASP "CSV injection": a cell a spreadsheet would run as a formula starts with one of these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """A text cell that a spreadsheet would evaluate gets a leading ``'`` (OWASP's advice), so
    ``=HYPERLINK(...)`` as a categorical choice or a reason shows as text. Numbers stay numbers:
    ``-0.5`` is a value, not a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


@router.get("/trials/{trial_id}", operation_id="get_trial")
def get_trial(study_id: StudyId, trial_id: TrialId, owner: CurrentOwner,
              session: SessionDep) -> TrialOut:
    study_lifecycle.find_study(session, owner, study_id)
    return trials_out(session, [ask_tell.find_trial(session, study_id, trial_id)])[0]


@router.patch("/trials/{trial_id}", operation_id="update_trial")
def update_trial(study_id: StudyId, trial_id: TrialId, body: UserAttrsPatch,
                 owner: CurrentOwner, ctx: ContextDep) -> TrialOut:
    """Merge ``user_attrs`` into the trial's, running or finished (a null value deletes its key)."""
    trial = user_attrs.set_trial_attrs(ctx, owner, study_id, trial_id, body.user_attrs)
    return trials_out_of(ctx, [trial])[0]


@router.get("/trials/{trial_id}/curve", operation_id="get_curve")
def get_curve(study_id: StudyId, trial_id: TrialId, owner: CurrentOwner, session: SessionDep,
              offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
              limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> CurvePage:
    """The trial's reported [step, value] points in step order, one page at a time."""
    study_lifecycle.find_study(session, owner, study_id)
    ask_tell.find_trial(session, study_id, trial_id)
    points, total = report_queries.page(session, trial_id, offset, limit)
    return CurvePage(points=points, total=total, offset=offset, limit=limit)


@router.post("/trials/{trial_id}/report", operation_id="report")
def report(study_id: StudyId, trial_id: TrialId, body: ReportRequest, owner: CurrentOwner,
           ctx: ContextDep) -> ReportResponse:
    """An intermediate value (also a heartbeat); the answer says whether to stop the trial."""
    decision = reports.report(ctx, owner, study_id, trial_id, body.step, float(body.value))
    return ReportResponse(should_stop=decision.should_stop, reason=decision.reason)


@router.post("/trials/{trial_id}/tell", operation_id="tell")
def tell(study_id: StudyId, trial_id: TrialId, body: TellRequest, owner: CurrentOwner,
         ctx: ContextDep, request: Request) -> TrialOut:
    trial = ask_tell.tell(ctx, owner, study_id, trial_id, body)
    request.app.state.telemetry.told.labels(trial.state).inc()
    return trials_out_of(ctx, [trial])[0]


@router.post("/trials/{trial_id}/heartbeat", operation_id="heartbeat")
def heartbeat(study_id: StudyId, trial_id: TrialId, owner: CurrentOwner,
              ctx: ContextDep) -> TrialOut:
    return trials_out_of(ctx, [ask_tell.heartbeat(ctx, owner, study_id, trial_id)])[0]
