"""Fixtures for SDK tests that need no server (the fakes live in sdk_fakes.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest

from dyesp_client import Client, RetryPolicy
from sdk_fakes import API_KEY, FakeServer, SleepRecorder


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def fake_server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def make_client(fake_server: FakeServer,
                sleeps: SleepRecorder) -> Iterator[Callable[..., Client]]:
    """Clients bound to the fake server through httpx2.MockTransport, with instant retries."""
    made: list[Client] = []
    http = httpx2.Client(transport=httpx2.MockTransport(fake_server.handle))

    def make(**kwargs: Any) -> Client:
        kwargs.setdefault("retries", RetryPolicy(retries=3, sleep=sleeps))
        client = Client("http://dyesp.test", api_key=API_KEY, http_client=http, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
    http.close()
