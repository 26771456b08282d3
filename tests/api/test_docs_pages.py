"""The dashboard's page shells and the API docs: no key needed, nothing fetched from another
host (they must render offline), and none of them in the OpenAPI schema."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

# What a page asks the browser to fetch: script sources, stylesheet and icon links, and the
# URLs Swagger UI and ReDoc are configured with in inline scripts.
_REFERENCES = re.compile(r"""(?:src|href)=["']([^"']+)["']"""
                         r"""|url["']?\s*[:=]\s*["']([^"']+)["']""")


def references(html: str) -> list[str]:
    return [a or b for a, b in _REFERENCES.findall(html)]


def test_home_redirects_to_the_dashboard_which_needs_no_key(http: TestClient) -> None:
    assert "authorization" not in http.headers  # the app runs with auth on
    home = http.get("/", follow_redirects=False)
    assert (home.status_code, home.headers["location"]) == (307, "/ui")
    response = http.get("/ui")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/docs" in references(response.text)
    assert not {"/", "/ui"} & set(http.get("/openapi.json").json()["paths"])


@pytest.mark.parametrize("page", ["/ui", "/ui/studies/abc", "/ui/studies/abc/engine",
                                  "/ui/studies/abc/map", "/ui/studies/abc/trials/3"])
def test_dashboard_pages_load_only_local_files_and_carry_no_data(http: TestClient,
                                                                 page: str) -> None:
    """A page is a shell (no key needed, no study data in it: its script reads /v1 with the
    key); everything it loads, Plotly included, comes from this server."""
    response = http.get(page)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    urls = references(response.text)
    assert any(url.endswith("plotly.min.js") for url in urls) == (page != "/ui")  # no plots there
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} fetches {url}"
        if url.endswith((".js", ".css", ".png")):
            asset = http.get(url)
            assert asset.status_code == 200 and asset.content, url


@pytest.mark.parametrize("page", ["/ui/studies/" + "x" * 65, "/ui/studies/abc/trials/-1"])
def test_dashboard_page_ids_are_checked_like_the_api(http: TestClient, page: str) -> None:
    assert http.get(page).status_code == 422


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_only_local_files(http: TestClient, page: str) -> None:
    response = http.get(page)
    assert response.status_code == 200
    urls = references(response.text)
    assert any(url.endswith(".js") for url in urls), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} fetches {url}"
    for url in urls:
        if url.endswith((".js", ".css", ".png", ".json")):
            asset = http.get(url)
            assert asset.status_code == 200, url
            assert asset.content, url
    assert "/docs" not in http.get("/openapi.json").json()["paths"]


def test_openapi_declares_the_bearer_key_on_the_routes_that_take_it(http: TestClient) -> None:
    schema = http.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {name for name, s in schemes.items()
            if (s["type"], s["scheme"].lower()) == ("http", "bearer")} == {"bearer"}
    secured = {(method, path) for path, operations in schema["paths"].items()
               for method, operation in operations.items()
               if {"bearer": []} in operation.get("security", [])}
    study_routes = {(method, path) for path, operations in schema["paths"].items()
                    if path.startswith("/v1/studies") for method in operations}
    assert study_routes and study_routes <= secured
    assert ("get", "/healthz") not in secured


def test_the_declared_scheme_changes_no_answer(http: TestClient) -> None:
    """Documentation only: a missing, malformed or unknown key is still our 401 problem."""
    for headers in ({}, {"Authorization": "Basic eDp5"}, {"Authorization": "Bearer nope"}):
        response = http.get("/v1/studies", headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
