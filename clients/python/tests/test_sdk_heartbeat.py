"""Heartbeats: running trials are kept alive in the background, and only while running."""

from __future__ import annotations

import threading
import time

from dyesp_client._heartbeat import Heartbeat


def wait_until(condition, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_a_running_trial_heartbeats_until_told(make_client, fake_server) -> None:
    client = make_client(heartbeat_interval=0.02)
    trial = client.create_study("hb", [{"name": "x", "type": "float", "low": 0, "high": 1}]).ask()
    assert wait_until(lambda: fake_server.count("heartbeat") >= 3)
    trial.tell(1.0)
    after_tell = fake_server.count("heartbeat")
    time.sleep(0.1)
    assert fake_server.count("heartbeat") - after_tell <= 1  # at most one beat was in flight
    assert trial._key not in client._heartbeat


def test_beats_come_well_within_the_study_timeout(make_client, fake_server) -> None:
    client = make_client(heartbeat_interval=30.0)
    study = client.create_study("hb", [{"name": "x", "type": "float", "low": 0, "high": 1}],
                                heartbeat_timeout_s=0.06)
    study.ask()
    assert wait_until(lambda: fake_server.count("heartbeat") >= 2, timeout=1.0)


def test_heartbeats_stop_when_the_server_says_the_trial_is_not_running(
        make_client, fake_server) -> None:
    client = make_client(heartbeat_interval=0.02)
    study = client.create_study("hb", [{"name": "x", "type": "float", "low": 0, "high": 1}])
    trial = study.ask()
    fake_server.inject("heartbeat", 409)
    assert wait_until(lambda: trial._key not in client._heartbeat)


def test_a_failing_beat_is_retried_next_time(make_client, fake_server) -> None:
    client = make_client(heartbeat_interval=0.02)
    study = client.create_study("hb", [{"name": "x", "type": "float", "low": 0, "high": 1}])
    trial = study.ask()
    fake_server.inject("heartbeat", 500)
    assert wait_until(lambda: fake_server.count("heartbeat") >= 3)
    assert trial._key in client._heartbeat


def test_no_heartbeats_when_disabled(make_client, fake_server) -> None:
    client = make_client(heartbeat_interval=None)
    client.create_study("hb", [{"name": "x", "type": "float", "low": 0, "high": 1}]).ask()
    time.sleep(0.05)
    assert fake_server.count("heartbeat") == 0


def test_closing_the_client_stops_heartbeats(make_client, fake_server) -> None:
    client = make_client(heartbeat_interval=0.02)
    client.create_study("hb", [{"name": "x", "type": "float", "low": 0, "high": 1}]).ask(3)
    assert wait_until(lambda: fake_server.count("heartbeat") >= 3)
    client.close()
    stopped = fake_server.count("heartbeat")
    time.sleep(0.1)
    assert fake_server.count("heartbeat") == stopped


def test_one_thread_serves_many_trials_and_exits_when_idle() -> None:
    beats: dict[str, int] = {"a": 0, "b": 0}

    def beat(key: str):
        def run() -> bool:
            beats[key] += 1
            return beats[key] < 3  # stop after three beats
        return run

    before = threading.active_count()
    heartbeat = Heartbeat()
    heartbeat.add("a", 0.01, beat("a"))
    heartbeat.add("b", 0.01, beat("b"))
    assert threading.active_count() == before + 1
    assert wait_until(lambda: heartbeat._thread is None)
    assert beats == {"a": 3, "b": 3}
    heartbeat.add("a", 0.01, beat("a"))  # a later trial starts a fresh thread
    assert wait_until(lambda: heartbeat._thread is None)
    heartbeat.close()


def test_an_exception_in_a_beat_does_not_kill_the_thread() -> None:
    calls = []

    def flaky() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("network hiccup")
        return len(calls) < 3

    heartbeat = Heartbeat()
    heartbeat.add("a", 0.01, flaky)
    assert wait_until(lambda: len(calls) == 3)
    heartbeat.close()
