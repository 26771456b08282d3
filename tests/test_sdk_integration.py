"""The real SDK against the real app in-process (starlette's TestClient injected as http_client).

`client_factory` (tests/conftest.py) returns a `dyesp_client.Client` with a fresh API key, so each
test sees only its own studies.
"""

from __future__ import annotations

import threading
import time

import pytest
from dyesp_client import APIError, Client, Infeasible, Trial

SPACE = [
    {"name": "depth", "type": "int", "low": 1, "high": 4},
    {"name": "width_3", "type": "int", "low": 16, "high": 256, "log": True,
     "condition": {"parent": "depth", "values": [3, 4]}},
    {"name": "activation", "type": "categorical", "choices": ["relu", "gelu", "tanh"]},
    {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5},
]


def objective(trial: Trial) -> float:
    params = trial.params
    return (params["lr"] - 0.01) ** 2 + params["dropout"] + 0.1 * params["depth"]


def test_create_ask_tell_round_trip(client_factory) -> None:
    with client_factory() as client:
        study = client.create_study("round-trip", SPACE, seed=3)
        assert study.direction == "minimize" and study.seed == 3
        assert [p["name"] for p in study.space["params"]] == [p["name"] for p in SPACE]
        trial = study.ask()
        assert trial.state == "running" and trial.number == 0
        assert ("width_3" in trial.params) == (trial.params["depth"] >= 3)
        told = trial.tell(0.5)
        assert told is trial and trial.state == "complete" and trial.value == 0.5
        assert trial.completed_at is not None
        (stored,) = study.trials()
        assert stored.id == trial.id and stored.value == 0.5
        assert client.get_study(study.id).trials_by_state.get("complete") == 1


def test_space_may_be_given_as_a_dict(client_factory) -> None:
    with client_factory() as client:
        study = client.create_study("dict-space", {"params": SPACE}, direction="maximize")
        assert study.direction == "maximize"


def test_optimize_with_two_workers_completes_n_distinct_trials(client_factory) -> None:
    with client_factory() as client:
        study = client.create_study("optimize", SPACE, seed=1)
        seen: list[int] = []
        lock = threading.Lock()

        def fn(trial: Trial) -> float:
            with lock:
                seen.append(trial.id)
            return objective(trial)

        best = study.optimize(fn, n_trials=12, n_workers=2, show_progress=False)
        trials = study.trials()
        assert len(trials) == 12 and len(set(seen)) == 12
        assert {t.state for t in trials} == {"complete"}
        assert sorted(t.number for t in trials) == list(range(12))
        assert best is not None and best.value == min(t.value for t in trials)


def test_optimize_records_failed_and_infeasible_and_goes_on(client_factory) -> None:
    with client_factory() as client:
        study = client.create_study("outcomes", SPACE)

        def fn(trial: Trial) -> float:
            if trial.number == 1:
                raise RuntimeError("data loader crashed")
            if trial.number == 2:
                raise Infeasible("out of memory")
            return objective(trial)

        study.optimize(fn, n_trials=4, show_progress=False, catch=(RuntimeError,))
        states = {t.number: (t.state, t.reason) for t in study.trials()}
        assert states[1] == ("failed", "RuntimeError('data loader crashed')")
        assert states[2] == ("infeasible", "out of memory")
        assert [states[n][0] for n in (0, 3)] == ["complete", "complete"]


def test_reask_with_the_same_client_id_returns_the_running_trial(client_factory) -> None:
    # What a retried ask does: the request reached the server but the answer was lost.
    with client_factory() as client:
        study = client.create_study("reask", SPACE)
        (first,) = study._ask(1, "worker-a")
        (again,) = study._ask(1, "worker-a")
        assert again.id == first.id and again.params == first.params
        assert study.ask().id != first.id  # a plain ask is a new ask
        first.tell(1.0)
        (fresh,) = study._ask(1, "worker-a")
        assert fresh.id != first.id


def test_two_plain_asks_hand_out_two_trials(client_factory) -> None:
    with client_factory() as client:
        study = client.create_study("two-asks", SPACE)
        a, b = study.ask(), study.ask()
        assert a.id != b.id
        assert len({t.id for t in study.ask(3)}) == 3


def test_invalid_space_raises_api_error_naming_the_field(client_factory) -> None:
    bad = [dict(SPACE[3], low=0.1, high=0.001), *SPACE[:3]]
    with client_factory() as client, pytest.raises(APIError) as caught:
        client.create_study("bad", bad)
    error = caught.value
    assert error.status == 422
    assert any(e.field == "space.params[0].high" for e in error.errors), error.errors
    assert "low <= high" in str(error)


def test_unknown_study_is_a_404_api_error(client_factory) -> None:
    with client_factory() as client, pytest.raises(APIError) as caught:
        client.get_study("0" * 32)
    assert caught.value.status == 404


def test_tell_twice_via_sdk_is_idempotent_and_a_different_value_conflicts(client_factory) -> None:
    with client_factory() as client:
        study = client.create_study("idempotent", SPACE)
        trial = study.ask()
        trial.tell(0.25)
        first_completed = trial.completed_at
        trial.tell(0.25)
        assert trial.state == "complete" and trial.completed_at == first_completed
        with pytest.raises(APIError) as caught:
            trial.tell(0.5)
        assert caught.value.status == 409
        assert [t.value for t in study.trials()] == [0.25]


def test_best_follows_direction_and_is_none_before_results(client_factory) -> None:
    with client_factory() as client:
        study = client.create_study("best", SPACE, direction="maximize")
        assert study.best() is None
        for value, trial in zip([1.0, 3.0, 2.0], study.ask(3), strict=True):
            trial.tell(value)
        best = study.best()
        assert best is not None and best.value == 3.0 and best.number == 1
        assert study.n_trials == 3


def test_enqueue_then_ask_hands_out_the_enqueued_configuration(client_factory) -> None:
    params = {"depth": 3, "width_3": 64, "activation": "gelu", "lr": 0.01, "dropout": 0.1}
    with client_factory() as client:
        study = client.create_study("enqueue", SPACE)
        queued = study.enqueue(params)
        assert queued.state == "waiting"
        trial = study.ask()
        assert trial.id == queued.id and trial.params == params


def test_trials_follow_pages_and_filter_by_state(client_factory, monkeypatch) -> None:
    import dyesp_client._study

    monkeypatch.setattr(dyesp_client._study, "PAGE_SIZE", 2)
    with client_factory() as client:
        study = client.create_study("pages", SPACE)
        trials = study.ask(5)
        trials[0].fail()
        trials[1].infeasible("diverged")
        assert [t.number for t in study.trials()] == [0, 1, 2, 3, 4]
        assert [t.number for t in study.trials("running")] == [2, 3, 4]
        assert study.trials("infeasible")[0].reason == "diverged"


def test_list_and_delete_studies(client_factory) -> None:
    with client_factory() as client:
        keep = client.create_study("keep", SPACE)
        gone = client.create_study("gone", SPACE)
        assert {s.id for s in client.list_studies()} == {keep.id, gone.id}
        assert [s.id for s in client.list_studies(name="gone")] == [gone.id]
        client.delete_study(gone.id)
        assert [s.id for s in client.list_studies()] == [keep.id]


def test_heartbeats_keep_a_running_trial_alive(client_factory) -> None:
    with client_factory(heartbeat_interval=0.1) as client:
        study = client.create_study("beats", SPACE, heartbeat_timeout_s=0.6)
        alive = study.ask()
        time.sleep(1.2)  # twice the timeout: only the heartbeats keep it running
        study.ask()  # asks reap the silent trials of their study
        assert client.get_study(study.id).trials_by_state.get("failed", 0) == 0
        assert next(t for t in study.trials() if t.id == alive.id).state == "running"
        alive.tell(1.0)
        assert alive.state == "complete"


def test_a_trial_without_heartbeats_is_failed_by_the_server(client_factory) -> None:
    with client_factory(heartbeat_interval=None) as client:
        study = client.create_study("silent", SPACE, heartbeat_timeout_s=0.3)
        silent = study.ask()
        time.sleep(0.6)
        study.ask()
        state = next(t for t in study.trials() if t.id == silent.id)
        assert state.state == "failed" and state.reason == "heartbeat timeout"


def test_the_sdk_accepts_a_client_it_does_not_own(client_factory) -> None:
    client: Client = client_factory()
    client.close()  # leaves the injected TestClient open
    with client_factory() as other:
        assert other.list_studies() == []


def test_sdk_returns_enqueued_trials_of_a_metrics_study_alongside_picked_ones(
        client_factory) -> None:
    with client_factory() as client:
        study = client.create_study("zc2", [
            {"name": "depth", "type": "int", "low": 1, "high": 4}], static_metrics=["params"])
        enqueued = study.enqueue({"depth": 3})
        trials = study.ask(2, static_metrics=lambda p: {"params": float(p["depth"])})
        assert len(trials) == 2 and trials[0].id == enqueued.id
        assert trials[1].id != enqueued.id


def test_a_study_learns_from_earlier_ones_through_the_sdk(client_factory) -> None:
    client = client_factory()
    space = [{"name": "x", "type": "float", "low": 0.0, "high": 1.0},
             {"name": "op", "type": "categorical", "choices": ["a", "b"]}]

    def loss(t) -> float:
        return (t.params["x"] - 0.7) ** 2 + (0.0 if t.params["op"] == "b" else 0.5)

    earlier = client.create_study("earlier", space, seed=1)
    best = earlier.optimize(loss, n_trials=12)
    auto = client.create_study("auto", space, transfer_from="auto")
    assert auto.transfer is not None and auto.transfer["sources"] == [earlier.id]
    later = client.create_study("later", space, transfer_from=[earlier])
    first = later.ask()
    assert first.params == best.params and first.proposal["strategy"] == "transfer"
    first.tell(loss(first))
    assert later.refresh().transfer["prior_trials"] == 12
