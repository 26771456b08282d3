"""Fixtures of the storage tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import new_postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database of its own, on each backend: a migration test upgrades it to the
    revision before the one under test, writes the old shape of the data, then upgrades."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    with new_postgres_database("dyesp_mig") as url:
        yield url
