"""Liveness (`/healthz`) and Prometheus metrics (`/metrics`)."""

from __future__ import annotations

import threading
from concurrent.futures import Future

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from service.api.problems import RETRY_AFTER_S
from service.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="health", response_model=Health)
def health(request: Request) -> JSONResponse:
    state = request.app.state
    database = "ok" if _probe_of(request.app).reachable() else "unreachable"
    body = Health(status="ok" if database == "ok" else "degraded", database=database,
                  retraining=state.retrainer.mode,
                  auth="on" if state.settings.auth_enabled else "off")
    if database == "ok":
        return JSONResponse(body.model_dump())
    return JSONResponse(body.model_dump(), status_code=503,
                        headers={"Retry-After": RETRY_AFTER_S})


class DatabaseProbe:
    """``SELECT 1`` with a deadline of its own, so a hung database reads as "unreachable" in
    seconds instead of holding the health check as long as the database hangs. The query runs
    in a daemon thread that may outlive the deadline; at most one runs at a time (later checks
    wait on it), so polling a hung database costs one thread, not one per poll."""

    def __init__(self, sessions: sessionmaker[Session], deadline_s: float) -> None:
        self.sessions = sessions
        self.deadline_s = deadline_s
        self._lock = threading.Lock()
        self._running: Future[None] | None = None

    def reachable(self) -> bool:
        with self._lock:
            if self._running is None or self._running.done():
                self._running = Future()
                threading.Thread(target=self._select_one, args=(self._running,),
                                 name="dyesp-health-probe", daemon=True).start()
            running = self._running
        try:
            running.result(timeout=self.deadline_s)
        except Exception:  # an error or no answer in time: "unreachable" either way
            return False
        return True

    def _select_one(self, outcome: Future[None]) -> None:
        try:
            with self.sessions() as session:
                session.execute(text("SELECT 1"))
        except Exception as error:
            outcome.set_exception(error)
        else:
            outcome.set_result(None)


_probe_lock = threading.Lock()


def _probe_of(app: FastAPI) -> DatabaseProbe:
    """The app's probe, made on first use. Its deadline: a new connection's connect timeout plus
    a second for the query, and well inside the request deadline so /healthz answers with its
    own body."""
    with _probe_lock:
        probe = getattr(app.state, "database_probe", None)
        if probe is None:
            settings = app.state.settings
            deadline_s = min(settings.db_connect_timeout_s + 1.0, settings.request_timeout_s / 2)
            probe = app.state.database_probe = DatabaseProbe(app.state.context.sessions,
                                                             deadline_s)
        return probe


@router.get("/metrics", operation_id="metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(request.app.state.telemetry.exposition(), media_type=CONTENT_TYPE_LATEST)
