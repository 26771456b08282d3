"""Admission control (service/admission.py): per-owner rate limits answered with 429 +
Retry-After, shared through Redis, failing open without it; and the fair gate in front of asks.

No assertion here depends on timing: the gate tests order threads with events and wait for the
gate's own counts, and limits are per hour so a window never rolls over during a test.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from service import admission
from service.admission import FairGate, RateLimiter
from service.app import create_app
from service.errors import TooManyRequests
from tests.conftest import MIXED_SPACE, REDIS_URL, make_settings, new_key, service_missing


@pytest.fixture(autouse=True)
def no_tarpit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals are answered at once in these tests (the hold-back has a test of its own)."""
    monkeypatch.setattr(admission, "REFUSAL_DELAY_S", 0.0)


@contextmanager
def client_for(database_url: str, **overrides: object) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(database_url, **overrides))) as client:
        yield client


def as_owner(client: TestClient, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key or new_key(client.app)}"}


def assert_too_many(response, *named: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    body = response.json()
    assert body["status"] == 429 and body["title"] == "Too Many Requests"
    for text in named:
        assert text in body["detail"], body["detail"]


def create_study(client: TestClient, headers: dict[str, str]) -> str:
    response = client.post("/v1/studies", headers=headers,
                           json={"name": "limited", "space": MIXED_SPACE, "seed": 1})
    assert response.status_code == 201, response.text
    return response.json()["id"]


# --- rate limits -------------------------------------------------------------------------------

def test_past_the_limit_an_owner_gets_429_and_others_do_not(database_url: str) -> None:
    with client_for(database_url, rate_limit="5/hour") as client:
        flooder, other = as_owner(client), as_owner(client)
        for _ in range(5):
            assert client.get("/v1/studies", headers=flooder).status_code == 200
        assert_too_many(client.get("/v1/studies", headers=flooder),
                        "5 per 1 hour", "DYESP_RATE_LIMIT")
        assert_too_many(client.post("/v1/studies", headers=flooder, json={}))  # any /v1 route
        assert client.get("/v1/studies", headers=other).status_code == 200
        assert client.get("/healthz").status_code == 200  # not an owner's request


def test_all_keys_of_one_owner_share_its_limit(database_url: str) -> None:
    with client_for(database_url, rate_limit="2/hour") as client:
        owner = f"owner-{uuid.uuid4().hex[:8]}"
        first, second = as_owner(client, new_key(client.app, owner)), \
            as_owner(client, new_key(client.app, owner))
        assert client.get("/v1/studies", headers=first).status_code == 200
        assert client.get("/v1/studies", headers=second).status_code == 200
        assert_too_many(client.get("/v1/studies", headers=first), "DYESP_RATE_LIMIT")


def test_an_empty_limit_turns_it_off(database_url: str) -> None:
    with client_for(database_url, rate_limit="", ask_rate_limit="") as client:
        assert not client.app.state.rate_limiter.enabled
        headers = as_owner(client)
        study = create_study(client, headers)
        for _ in range(12):
            assert client.post(f"/v1/studies/{study}/ask", headers=headers,
                               json={}).status_code == 200


def test_asks_count_under_the_ask_limit_and_every_limit(database_url: str) -> None:
    with client_for(database_url, rate_limit="", ask_rate_limit="2/hour") as client:
        headers = as_owner(client)
        study = create_study(client, headers)  # not an ask: not counted
        for _ in range(2):
            assert client.post(f"/v1/studies/{study}/ask", headers=headers,
                               json={}).status_code == 200
        assert_too_many(client.post(f"/v1/studies/{study}/ask", headers=headers, json={}),
                        "asks", "2 per 1 hour", "DYESP_ASK_RATE_LIMIT")
        assert client.get(f"/v1/studies/{study}/trials", headers=headers).status_code == 200
    with client_for(database_url, rate_limit="3/hour", ask_rate_limit="") as client:
        headers = as_owner(client)
        study = create_study(client, headers)
        assert client.post(f"/v1/studies/{study}/ask", headers=headers, json={}).status_code \
            == 200
        assert client.get(f"/v1/studies/{study}", headers=headers).status_code == 200
        assert_too_many(client.post(f"/v1/studies/{study}/ask", headers=headers, json={}),
                        "DYESP_RATE_LIMIT")


def test_refusals_are_held_back_in_the_event_loop(database_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "REFUSAL_DELAY_S", 0.05)
    limiter = RateLimiter("1/hour")
    limiter.hit("requests", 1)
    with pytest.raises(TooManyRequests) as refused:
        limiter.hit("requests", 1)
    assert refused.value.delay_s == 0.05
    gate = FairGate(capacity=1, max_waiters_per_owner=0)
    with gate.admit("A"), pytest.raises(TooManyRequests) as refused:
        gate.admit("B").__enter__()
    assert refused.value.delay_s == 0.05
    with client_for(database_url, rate_limit="1/hour") as client:  # the handler still answers
        headers = as_owner(client)
        assert client.get("/v1/studies", headers=headers).status_code == 200
        assert_too_many(client.get("/v1/studies", headers=headers))


def test_a_malformed_limit_is_refused_at_start() -> None:
    with pytest.raises(ValueError):
        RateLimiter("five a minute")


def redis_available() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as error:
        service_missing("Redis", error)


def test_redis_shares_counts_between_server_processes(database_url: str) -> None:
    redis_available()
    import redis

    prefix = f"dyesp-test-{uuid.uuid4().hex[:8]}"
    settings = make_settings(database_url, redis_url=REDIS_URL, rate_limit="3/hour")
    apps = [create_app(settings), create_app(settings)]  # two processes of one deployment
    for app in apps:
        app.state.rate_limiter = RateLimiter.from_settings(settings, key_prefix=prefix)
        assert app.state.rate_limiter.shared
    try:
        with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
            headers = as_owner(one)
            assert one.get("/v1/studies", headers=headers).status_code == 200
            assert two.get("/v1/studies", headers=headers).status_code == 200
            assert one.get("/v1/studies", headers=headers).status_code == 200
            assert_too_many(two.get("/v1/studies", headers=headers), "3 per 1 hour")
            assert_too_many(one.get("/v1/studies", headers=headers))
    finally:
        connection = redis.Redis.from_url(REDIS_URL)
        keys = list(connection.scan_iter(f"{prefix}:*"))
        if keys:
            connection.delete(*keys)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nobody listens once the socket is closed


def test_an_unreachable_redis_fails_open_and_says_so_once(
        database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    redis_url = f"redis://127.0.0.1:{closed_port()}/0"
    with caplog.at_level(logging.WARNING, logger="dyesp.admission"), \
            client_for(database_url, redis_url=redis_url, rate_limit="1/hour",
                       ask_rate_limit="1/hour", redis_timeout_s=0.5) as client:
        headers = as_owner(client)
        study = create_study(client, headers)
        for _ in range(3):
            assert client.get("/v1/studies", headers=headers).status_code == 200
            assert client.post(f"/v1/studies/{study}/ask", headers=headers,
                               json={}).status_code == 200
    warnings = [r for r in caplog.records if r.name == "dyesp.admission"]
    assert len(warnings) == 1 and "fail open" in warnings[0].getMessage()


# --- the fair gate -----------------------------------------------------------------------------

def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait for another thread to reach a state (not a timing assertion: the bound is generous
    and only turns a hang into a failure)."""
    pause = threading.Event()
    for _ in range(20_000):
        if condition():
            return
        pause.wait(0.001)
    raise AssertionError(f"never happened: {what}")


class Holder:
    """A thread that holds the gate for ``owner`` until ``release()`` (raising on the way out
    when ``fail``)."""

    def __init__(self, gate: FairGate, owner: str, fail: bool = False) -> None:
        self.entered, self._go = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, args=(gate, owner, fail))
        self.thread.start()
        assert self.entered.wait(10)

    def _run(self, gate: FairGate, owner: str, fail: bool) -> None:
        try:
            with gate.admit(owner):
                self.entered.set()
                self._go.wait(10)
                if fail:
                    raise RuntimeError("the engine failed")
        except RuntimeError:
            pass

    def release(self) -> None:
        self._go.set()
        self.thread.join(10)


def queue_waiter(gate: FairGate, owner: str, name: str, order: list[str],
                 hold: threading.Event | None = None) -> threading.Thread:
    """Start a thread that waits for the gate, records ``name`` when admitted and leaves (once
    ``hold`` is set, if given); return once it is queued."""
    before = gate.waiting(owner)

    def run() -> None:
        try:
            with gate.admit(owner):
                order.append(name)
                if hold is not None:
                    hold.wait(10)
        except TooManyRequests:
            order.append(f"refused {name}")

    thread = threading.Thread(target=run)
    thread.start()
    eventually(lambda: gate.waiting(owner) == before + 1, f"{name} queued")
    return thread


def test_waiters_are_admitted_round_robin_across_owners() -> None:
    gate = FairGate(capacity=1, max_waiters_per_owner=10, max_wait_s=30)
    order: list[str] = []
    holder = Holder(gate, "flooder")
    threads = [queue_waiter(gate, "flooder", f"A{i}", order) for i in range(1, 5)]
    threads.append(queue_waiter(gate, "victim", "B1", order))
    threads.append(queue_waiter(gate, "third", "C1", order))
    holder.release()
    for thread in threads:
        thread.join(10)
    # The victim came after four of the flooder's asks but waits behind one of them only.
    assert order == ["A1", "B1", "C1", "A2", "A3", "A4"]
    assert gate.running == 0 and gate.waiting() == 0


def test_an_owner_arriving_after_the_flooder_was_served_goes_next() -> None:
    gate = FairGate(capacity=1, max_waiters_per_owner=10, max_wait_s=30)
    order: list[str] = []
    holder, hold_a1 = Holder(gate, "flooder"), threading.Event()
    threads = [queue_waiter(gate, "flooder", "A1", order, hold=hold_a1)]
    threads += [queue_waiter(gate, "flooder", f"A{i}", order) for i in (2, 3)]
    holder.release()
    eventually(lambda: order == ["A1"], "A1 admitted")
    threads.append(queue_waiter(gate, "victim", "B1", order))  # the flooder just had its turn
    hold_a1.set()
    for thread in threads:
        thread.join(10)
    assert order == ["A1", "B1", "A2", "A3"]


def test_an_owner_past_its_waiter_cap_is_refused_at_once() -> None:
    gate = FairGate(capacity=1, max_waiters_per_owner=2, max_wait_s=30)
    order: list[str] = []
    holder = Holder(gate, "flooder")
    threads = [queue_waiter(gate, "flooder", f"A{i}", order) for i in (1, 2)]
    with pytest.raises(TooManyRequests, match="at most 2") as refused, gate.admit("flooder"):
        pass
    assert refused.value.retry_after >= 1 and refused.value.status == 429
    threads.append(queue_waiter(gate, "victim", "B1", order))  # another owner still queues
    holder.release()
    for thread in threads:
        thread.join(10)
    assert order == ["A1", "B1", "A2"] and gate.running == 0


def test_a_waiter_past_the_wait_bound_is_refused_and_leaves_no_trace() -> None:
    gate = FairGate(capacity=1, max_wait_s=0.01)
    holder = Holder(gate, "flooder")
    with pytest.raises(TooManyRequests, match="waited") as refused, gate.admit("victim"):
        pass
    assert refused.value.retry_after >= 1
    assert gate.waiting() == 0
    holder.release()
    assert gate.running == 0


def test_a_slot_is_released_when_the_holder_raises() -> None:
    gate = FairGate(capacity=1, max_wait_s=30)
    with pytest.raises(ValueError), gate.admit("A"):
        raise ValueError("engine error")
    assert gate.running == 0
    order: list[str] = []
    holder = Holder(gate, "A", fail=True)
    waiter = queue_waiter(gate, "B", "B1", order)
    holder.release()  # leaves by an exception: the slot passes to the waiter
    waiter.join(10)
    assert order == ["B1"] and gate.running == 0


def test_the_gate_never_admits_more_than_its_capacity() -> None:
    gate = FairGate(capacity=2, max_waiters_per_owner=100, max_wait_s=30)
    lock, inside, peak, done = threading.Lock(), [0], [0], []

    def work(owner: str) -> None:
        for _ in range(50):
            with gate.admit(owner):
                with lock:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                with lock:
                    inside[0] -= 1
        done.append(owner)

    threads = [threading.Thread(target=work, args=(f"o{i % 3}",)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(done) == 12 and peak[0] <= 2 and gate.running == 0 and gate.waiting() == 0


def test_a_disabled_gate_admits_everything() -> None:
    gate = FairGate(capacity=None)
    with gate.admit("A"), gate.admit("A"), gate.admit("A"):
        assert not gate.enabled
    with pytest.raises(ValueError, match="capacity >= 1"):
        FairGate(capacity=0)


def test_an_ask_refused_by_the_gate_is_a_429_and_takes_no_effect(database_url: str) -> None:
    with client_for(database_url) as client:
        client.app.state.context.engine_gate = gate = FairGate(capacity=1, max_waiters_per_owner=0)
        headers = as_owner(client)
        study = create_study(client, headers)
        holder = Holder(gate, "someone else")
        try:
            assert_too_many(client.post(f"/v1/studies/{study}/ask", headers=headers, json={}),
                            "waiting for the engine")
        finally:
            holder.release()
        assert client.get(f"/v1/studies/{study}/trials", headers=headers).json()["total"] == 0
        assert client.post(f"/v1/studies/{study}/ask", headers=headers, json={}).status_code \
            == 200


def test_the_server_has_threads_for_several_owners_full_queues(http: TestClient) -> None:
    """Every ask waiting at the gate holds a request thread: the app widens anyio's 40 so that
    three owners with full queues (a 16-worker client each) still leave threads for tells."""
    import anyio.to_thread

    tokens = http.portal.call(lambda: anyio.to_thread.current_default_thread_limiter()
                              .total_tokens)
    assert tokens == admission.REQUEST_THREADS
    held = 3 * (admission.MAX_WAITERS_PER_OWNER + admission.ASK_CONCURRENCY)
    assert tokens - held >= 8
    assert admission.MAX_WAITERS_PER_OWNER >= 16  # one process may hold most of 16 workers
