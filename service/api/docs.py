"""API docs that work offline (the dashboard, ``service.dashboard``, is at `/` and `/ui`).

FastAPI's own `/docs` and `/redoc` load Swagger UI and ReDoc from a CDN, so on an offline or
air-gapped machine they render blank. Here the same pages (FastAPI's documented self-hosting
recipe) load the files fastapi-offline ships: a small MIT package, kept current with Swagger UI 5
and ReDoc 2, that depends on FastAPI alone. None of these routes needs a key, shows data, or
appears in the OpenAPI schema.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
_ASSETS = Path(fastapi_offline.__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add `/docs`, its OAuth2 redirect and `/redoc` to an app made with ``docs_url=None``
    and ``redoc_url=None``, and serve their assets under ``ASSETS_URL``."""
    app.mount(ASSETS_URL, StaticFiles(directory=_ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + redirect_url,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters)

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=root + openapi_url, title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False)  # offline: no font CDN either


def _root(request: Request) -> str:
    """The prefix a proxy mounts the app under (``--root-path``), so links work behind it."""
    return request.scope.get("root_path", "").rstrip("/")
