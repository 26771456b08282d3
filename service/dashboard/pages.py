"""Routes of the dashboard's pages and assets; ``/`` redirects to ``/ui``.

Pages are Jinja2 templates filled only with ids from the URL and the mount prefix (no study
data, so no key is needed to fetch them). Plotly.js is served from the ``plotly`` pip package's
own copy: no CDN, no vendored file, works offline.
"""

from __future__ import annotations

from pathlib import Path

import plotly
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from service.api.deps import StudyId, TrialId

_HERE = Path(__file__).parent
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
STATIC_URL = "/ui/static"
# Assets change only with a release: cached by the browser for a day.
_CACHE = {"Cache-Control": "public, max-age=86400"}

templates = Jinja2Templates(directory=_HERE / "templates")
router = APIRouter(include_in_schema=False)


def _page(request: Request, template: str, **ids: object) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    return templates.TemplateResponse(request, template,
                                      {"root": root, "static": root + STATIC_URL, **ids},
                                      headers={"Cache-Control": "no-store"})


@router.get("/")
async def home(request: Request) -> RedirectResponse:
    return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + "/ui",
                            status_code=307)


@router.get("/ui")
async def studies_page(request: Request) -> HTMLResponse:
    return _page(request, "studies.html", page="studies")


@router.get("/ui/studies/{study_id}")
async def study_page(request: Request, study_id: StudyId) -> HTMLResponse:
    return _page(request, "study.html", page="study", study_id=study_id)


@router.get("/ui/studies/{study_id}/engine")
async def engine_page(request: Request, study_id: StudyId) -> HTMLResponse:
    return _page(request, "engine.html", page="engine", study_id=study_id)


@router.get("/ui/studies/{study_id}/map")
async def map_page(request: Request, study_id: StudyId) -> HTMLResponse:
    return _page(request, "map.html", page="map", study_id=study_id)


@router.get("/ui/studies/{study_id}/trials/{trial_id}")
async def trial_page(request: Request, study_id: StudyId, trial_id: TrialId) -> HTMLResponse:
    return _page(request, "trial.html", page="trial", study_id=study_id, trial_id=trial_id)


@router.get(STATIC_URL + "/plotly.min.js")
async def plotly_js() -> FileResponse:
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers=_CACHE)


def install(app: FastAPI) -> None:
    """Add the pages, ``/`` and the dashboard's own script and style sheet to ``app``."""
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=_HERE / "static"), name="dashboard-static")
