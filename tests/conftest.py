"""Fixtures: every API and storage test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from DYESP_TEST_POSTGRES_URL (default: the local server with trust auth). Each test
session creates its own database and drops it at the end. In CI (CI=true) an unreachable PostgreSQL
or Redis fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.app import create_app
from service.config import Settings
from service.db import key_queries
from service.db.session import transaction

POSTGRES_ADMIN_URL = os.environ.get(
    "DYESP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DYESP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_missing(what: str, error: Exception) -> None:
    message = f"{what} is unreachable: {error}"
    if IN_CI:
        pytest.fail(message + " (CI requires it)", pytrace=False)
    pytest.skip(message)


@contextmanager
def new_postgres_database(prefix: str) -> Iterator[str]:
    """A PostgreSQL database of its own (its URL), dropped afterwards; unreachable: see
    ``service_missing``."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        service_missing("PostgreSQL", error)
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with new_postgres_database("dyesp_test") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'dyesp.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def unique_name(prefix: str) -> str:
    """A study name no other study of the owner has (names are unique per owner)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_settings(database_url: str, **overrides: object) -> Settings:
    # Rate limits off unless a test sets them: in-process asks run near the default ask limit,
    # and the limits have tests of their own (tests/api/test_admission.py).
    values: dict[str, object] = dict(database_url=database_url, auth="on",
                                     retrain_enabled=False, reaper_interval_s=3600,
                                     rate_limit="", ask_rate_limit="")
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def app(settings: Settings):
    return create_app(settings)


@pytest.fixture
def http(app) -> Iterator[TestClient]:
    """A TestClient running the app's lifespan, with no credentials."""
    with TestClient(app) as client:
        yield client


def new_key(app, owner: str | None = None) -> str:
    with transaction(app.state.context.sessions) as session:
        return key_queries.create_key(session, owner or f"owner-{uuid.uuid4().hex[:8]}",
                                      "test").secret


@pytest.fixture
def api(http: TestClient, app) -> TestClient:
    """The same client, authenticated as a fresh owner (tests never see each other's studies)."""
    http.headers["Authorization"] = f"Bearer {new_key(app)}"
    return http


@pytest.fixture
def client_factory(http: TestClient, app):
    """The real SDK bound to the real app in-process."""
    from dyesp_client import Client

    def make(**kwargs: object) -> Client:
        return Client("http://testserver", api_key=new_key(app), http_client=http, **kwargs)

    return make


MIXED_SPACE = {"params": [
    {"name": "depth", "type": "int", "low": 1, "high": 4},
    {"name": "width_3", "type": "int", "low": 16, "high": 256, "log": True,
     "condition": {"parent": "depth", "values": [3, 4]}},
    {"name": "cell", "type": "categorical", "choices": ["conv3", "conv1", "skip", True, 7]},
    {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
]}


@pytest.fixture
def study(api: TestClient) -> dict:
    response = api.post("/v1/studies", json={"name": "mixed", "direction": "minimize",
                                             "space": MIXED_SPACE, "seed": 7})
    assert response.status_code == 201, response.text
    return response.json()
