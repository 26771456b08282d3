"""429 Too Many Requests: the server refused the request before it took effect (a rate limit, a
full ask queue), so every call may send it again, after the server's ``Retry-After``."""

from __future__ import annotations

import pytest

from dyesp_client import APIError, Client, RetryPolicy
from dyesp_client._retry import RETRY_STATUSES, Retryable, may_retry_status
from sdk_fakes import API_KEY, ScriptedHTTP, ScriptedResponse, problem, study_json, trial_json


def client_for(http: ScriptedHTTP, sleeps: list[float], retries: int = 3) -> Client:
    return Client("http://dyesp.test", api_key=API_KEY, http_client=http,
                  retries=RetryPolicy(retries=retries, sleep=sleeps.append))


def too_many(retry_after: str = "3") -> ScriptedResponse:
    return problem(429, "rate limit exceeded: requests of an owner are limited to 5 per 1 second",
                   **{"Retry-After": retry_after})


def test_a_429_is_retryable_for_every_call_that_may_retry() -> None:
    assert 429 in RETRY_STATUSES
    assert may_retry_status(429, Retryable.ALWAYS) and may_retry_status(429, Retryable.UNSENT)
    assert not may_retry_status(429, Retryable.NEVER)
    assert may_retry_status(503, Retryable.ALWAYS) and not may_retry_status(503, Retryable.UNSENT)
    assert not may_retry_status(409, Retryable.ALWAYS)


def test_a_read_is_retried_on_429_after_retry_after() -> None:
    sleeps: list[float] = []
    http = ScriptedHTTP(too_many("3"), too_many("1"), ScriptedResponse(200, study_json()))
    assert client_for(http, sleeps).get_study("s1").id == "s1"
    assert sleeps == [3.0, 1.0] and len(http.calls) == 3


def test_ask_and_tell_are_retried_on_429() -> None:
    sleeps: list[float] = []
    http = ScriptedHTTP(ScriptedResponse(200, study_json()),
                        too_many("2"), ScriptedResponse(200, {"trials": [trial_json()],
                                                              "candidates": []}),
                        too_many("2"), ScriptedResponse(200, trial_json(state="complete",
                                                                        value=0.5)))
    study = client_for(http, sleeps).get_study("s1")
    trial = study.ask()
    trial.tell(0.5)
    assert sleeps == [2.0, 2.0] and len(http.calls) == 5
    # The retried ask is the same request: same client_id, so it can never hand out two trials.
    asks = [kwargs["json"] for method, url, kwargs in http.calls if url.endswith("/ask")]
    assert asks[0] == asks[1]


def test_a_429_past_the_retries_raises_it() -> None:
    http = ScriptedHTTP(*[too_many()] * 3)
    with pytest.raises(APIError, match="rate limit exceeded") as caught:
        client_for(http, [], retries=2).get_study("s1")
    assert caught.value.status == 429 and len(http.calls) == 3


def test_create_study_is_retried_on_429_though_not_idempotent() -> None:
    http = ScriptedHTTP(too_many("1"), ScriptedResponse(201, study_json()))
    study = client_for(http, []).create_study(
        "toy", {"params": [{"name": "x", "type": "float", "low": 0, "high": 1}]})
    assert study.id == "s1" and len(http.calls) == 2
