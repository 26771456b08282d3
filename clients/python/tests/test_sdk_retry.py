"""Retries: backoff policy, and which calls the client repeats on which failures."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import httpx2
import pytest

from dyesp_client import APIError, Client, ConnectionFailed, RetryPolicy
from dyesp_client._client import is_transport_error, was_not_sent
from dyesp_client._retry import parse_retry_after
from sdk_fakes import API_KEY, ScriptedHTTP, ScriptedResponse, problem, study_json, trial_json


class UpperBound(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def client_for(http: ScriptedHTTP, sleeps: list[float], retries: int = 3,
               url: str = "http://dyesp.test") -> Client:
    return Client(url, api_key=API_KEY, http_client=http,
                  retries=RetryPolicy(retries=retries, sleep=sleeps.append))


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(base_s=0.5, max_s=3.0, rng=UpperBound())
    assert [policy.delay(a) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_is_jittered_below_the_cap() -> None:
    policy = RetryPolicy(base_s=1.0, max_s=8.0, rng=random.Random(1))
    delays = [policy.delay(3) for _ in range(200)]
    assert all(0 <= d <= 8.0 for d in delays) and len(set(delays)) > 100


def test_retry_after_wins_over_backoff_but_is_capped() -> None:
    policy = RetryPolicy(max_retry_after_s=30.0)
    assert policy.delay(0, retry_after=2.0) == 2.0
    assert policy.delay(0, retry_after=3600.0) == 30.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 23, 10, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("Mon, 23 Nov 2026 10:00:05 GMT", now=now) == 5.0
    assert parse_retry_after("Mon, 23 Nov 2026 09:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_policy_states_what_must_hold() -> None:
    with pytest.raises(ValueError, match="`retries >= 0` must hold, got retries=-1"):
        RetryPolicy(retries=-1)


def test_get_is_retried_on_503_honouring_retry_after() -> None:
    sleeps: list[float] = []
    http = ScriptedHTTP(problem(503, **{"Retry-After": "2"}), problem(504),
                        ScriptedResponse(200, study_json()))
    study = client_for(http, sleeps).get_study("s1")
    assert study.id == "s1" and len(http.calls) == 3
    assert sleeps[0] == 2.0 and 0 <= sleeps[1] <= 0.5


def test_client_errors_are_never_retried() -> None:
    sleeps: list[float] = []
    for status in (400, 401, 404, 409, 422):
        http = ScriptedHTTP(problem(status, "study 's1' does not exist"))
        with pytest.raises(APIError) as caught:
            client_for(http, sleeps).get_study("s1")
        assert caught.value.status == status and len(http.calls) == 1
        assert "study 's1' does not exist" in str(caught.value)
    assert sleeps == []


def test_a_500_is_not_retried() -> None:
    http = ScriptedHTTP(problem(500, "internal database error"))
    with pytest.raises(APIError):
        client_for(http, []).get_study("s1")
    assert len(http.calls) == 1


def test_exhausted_retries_on_503_raise_the_last_problem() -> None:
    http = ScriptedHTTP(*[problem(503, "the database is unavailable")] * 3)
    with pytest.raises(APIError, match="database is unavailable") as caught:
        client_for(http, [], retries=2).get_study("s1")
    assert caught.value.status == 503 and len(http.calls) == 3


def test_connection_errors_are_retried_then_raise_connection_failed() -> None:
    sleeps: list[float] = []
    http = ScriptedHTTP(*[httpx2.ReadTimeout("slow")] * 4)
    with pytest.raises(ConnectionFailed, match="after 4 attempt") as caught:
        client_for(http, sleeps).list_studies()
    assert isinstance(caught.value.__cause__, httpx2.ReadTimeout)
    assert len(http.calls) == 4 and len(sleeps) == 3


def test_create_study_is_not_retried_once_the_request_may_have_arrived() -> None:
    for failure in (problem(503), problem(502), httpx2.ReadTimeout("slow"),
                    httpx2.RemoteProtocolError("reset")):
        http = ScriptedHTTP(failure)
        with pytest.raises((APIError, ConnectionFailed)):
            client_for(http, []).create_study("toy", [{"name": "x", "type": "float",
                                                       "low": 0, "high": 1}])
        assert len(http.calls) == 1


def test_create_study_is_retried_when_the_connection_was_never_made() -> None:
    http = ScriptedHTTP(httpx2.ConnectError("refused"), httpx2.ConnectTimeout("slow"),
                        ScriptedResponse(201, study_json()))
    space = {"params": [{"name": "x", "type": "float", "low": 0, "high": 1}]}
    study = client_for(http, []).create_study("toy", space, seed=3, heartbeat_timeout_s=60)
    assert study.name == "toy" and len(http.calls) == 3
    assert http.calls[0][2]["json"] == {"name": "toy", "direction": "minimize", "space": space,
                                        "seed": 3, "heartbeat_timeout_s": 60}


def test_a_retried_ask_resends_the_same_client_id() -> None:
    http = ScriptedHTTP(ScriptedResponse(200, study_json()), httpx2.ReadTimeout("lost answer"),
                        problem(503), ScriptedResponse(200, {"trials": [trial_json()]}))
    client = client_for(http, [])
    client.heartbeat_interval = None
    trial = client.get_study("s1").ask()
    ids = [call[2]["json"]["client_id"] for call in http.calls[1:]]
    assert trial.id == 1 and len(ids) == 3 and len(set(ids)) == 1
    assert ids[0].startswith(client.client_id)


def test_separate_asks_send_different_client_ids() -> None:
    http = ScriptedHTTP(ScriptedResponse(200, study_json()),
                        ScriptedResponse(200, {"trials": [trial_json(id=1)]}),
                        ScriptedResponse(200, {"trials": [trial_json(id=2)]}))
    client = client_for(http, [])
    client.heartbeat_interval = None
    study = client.get_study("s1")
    study.ask()
    study.ask()
    assert http.calls[1][2]["json"]["client_id"] != http.calls[2][2]["json"]["client_id"]


def test_tell_is_retried_on_gateway_errors() -> None:
    told = trial_json(state="complete", value=0.5)
    http = ScriptedHTTP(ScriptedResponse(200, study_json()),
                        ScriptedResponse(200, {"trials": [trial_json()]}),
                        problem(502), httpx2.ReadError("reset"), ScriptedResponse(200, told))
    client = client_for(http, [])
    client.heartbeat_interval = None
    trial = client.get_study("s1").ask().tell(0.5)
    assert trial.state == "complete" and len(http.calls) == 5
    assert [c[2]["json"] for c in http.calls[2:]] == [{"value": 0.5}] * 3


def test_enqueue_is_not_retried_on_503() -> None:
    http = ScriptedHTTP(ScriptedResponse(200, study_json()), problem(503))
    with pytest.raises(APIError):
        client_for(http, []).get_study("s1").enqueue({"x": 1.0})
    assert len(http.calls) == 2


def test_requests_carry_the_key_and_join_the_base_url() -> None:
    http = ScriptedHTTP(ScriptedResponse(200, {"studies": []}), ScriptedResponse(204))
    client = client_for(http, [], url="http://dyesp.test/prefix/")
    assert client.list_studies(name="a b") == []
    client.delete_study("s/1")
    (method, url, kwargs), (method2, url2, _) = http.calls
    assert (method, url) == ("GET", "http://dyesp.test/prefix/v1/studies")
    assert kwargs["params"] == {"name": "a b", "offset": 0, "limit": 100}
    assert kwargs["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert kwargs["headers"]["User-Agent"].startswith("dyesp-client/")
    assert (method2, url2) == ("DELETE", "http://dyesp.test/prefix/v1/studies/s%2F1")


def test_without_a_key_no_authorization_is_sent() -> None:
    http = ScriptedHTTP(ScriptedResponse(200, {"studies": []}))
    Client("http://dyesp.test", http_client=http).list_studies()
    assert "Authorization" not in http.calls[0][2]["headers"]


def test_an_injected_client_is_left_open_and_an_owned_one_is_closed() -> None:
    http = ScriptedHTTP()
    with Client("http://dyesp.test", http_client=http):
        pass
    assert not http.closed
    owned = Client("http://dyesp.test")
    owned.close()
    assert owned._http.is_closed  # type: ignore[attr-defined]


def test_exceptions_of_plain_httpx_are_recognised_by_name() -> None:
    # An injected client may be plain httpx: same exception names, different classes.
    transport = type("TransportError", (Exception,), {"__module__": "httpx._exceptions"})
    connect = type("ConnectError", (transport,), {"__module__": "httpx._exceptions"})
    read = type("ReadError", (transport,), {"__module__": "httpx._exceptions"})
    assert is_transport_error(connect()) and was_not_sent(connect())
    assert is_transport_error(read()) and not was_not_sent(read())
    assert not is_transport_error(ValueError("a bug in the app"))


def test_exceptions_from_the_app_itself_propagate_untouched() -> None:
    http = ScriptedHTTP(RuntimeError("bug in the app under test"))
    with pytest.raises(RuntimeError, match="bug in the app"):
        client_for(http, []).list_studies()
    assert len(http.calls) == 1


def test_an_unreachable_server_raises_connection_failed_through_httpx2() -> None:
    sleeps: list[float] = []
    client = Client("http://127.0.0.1:9", retries=RetryPolicy(retries=2, sleep=sleeps.append),
                    timeout=2.0)  # port 9 (discard): nothing listens, the connection is refused
    with client, pytest.raises(ConnectionFailed) as caught:
        client.list_studies()
    assert isinstance(caught.value.__cause__, httpx2.ConnectError) and len(sleeps) == 2
