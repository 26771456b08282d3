"""Liveness (`/healthz`) and Prometheus metrics (`/metrics`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from service.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="health", response_model=Health)
def health(request: Request) -> JSONResponse:
    state = request.app.state
    try:
        with state.context.sessions() as session:
            session.execute(text("SELECT 1"))
        database = "ok"
    except Exception:  # any failure to reach the database is "unreachable" here
        database = "unreachable"
    body = Health(status="ok" if database == "ok" else "degraded", database=database,
                  retraining=state.retrainer.mode,
                  auth="on" if state.settings.auth_enabled else "off")
    return JSONResponse(body.model_dump(), status_code=200 if database == "ok" else 503)


@router.get("/metrics", operation_id="metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)
