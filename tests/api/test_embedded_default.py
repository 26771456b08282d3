"""The embedded default (SQLite on loopback) runs without keys; everything else requires one."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import MIXED_SPACE


def test_loopback_sqlite_default_needs_no_key(tmp_path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'e.db'}", auth="auto",
                        host="127.0.0.1", retrain_enabled=False)
    assert not settings.auth_enabled
    with TestClient(create_app(settings)) as api:
        assert api.get("/healthz").json()["auth"] == "off"
        study = api.post("/v1/studies", json={"name": "local", "space": MIXED_SPACE})
        assert study.status_code == 201
        trials = api.post(f"/v1/studies/{study.json()['id']}/ask").json()["trials"]
        assert len(trials) == 1


@pytest.mark.parametrize(("url", "host"), [
    ("postgresql+psycopg://x@127.0.0.1/db", "127.0.0.1"),
    ("sqlite:///x.db", "0.0.0.0"),
])
def test_auth_auto_is_on_off_the_embedded_loopback_default(url: str, host: str) -> None:
    assert Settings(database_url=url, auth="auto", host=host).auth_enabled


def test_auth_off_on_a_public_address_is_refused() -> None:
    with pytest.raises(ValueError, match=r"only allowed when bound to 127\.0\.0\.1"):
        create_app(Settings(auth="off", host="0.0.0.0"))
