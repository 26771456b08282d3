"""Fixtures of the system tests (real server processes, a private database cluster)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import service_missing
from tests.system.pg_cluster import Cluster, ClusterUnavailable, private_cluster


@pytest.fixture
def pg_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster the test may freeze, crash and restart."""
    try:
        with private_cluster() as cluster:
            yield cluster
    except ClusterUnavailable as error:
        service_missing("a private PostgreSQL cluster", error)
