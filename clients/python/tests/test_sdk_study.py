"""Study and Trial against the fake server: ask, tell, enqueue, paging, best, context manager."""

from __future__ import annotations

import pytest

from dyesp_client import APIError, Infeasible, Trial

SPACE = [{"name": "x", "type": "float", "low": -5.0, "high": 5.0},
         {"name": "act", "type": "categorical", "choices": ["relu", "gelu"]}]


@pytest.fixture
def study(make_client):
    return make_client(heartbeat_interval=None).create_study("toy", SPACE)


def test_study_attributes_come_from_the_server(study) -> None:
    assert (study.name, study.direction, study.n_trials) == ("toy", "minimize", 0)
    assert study.space == {"params": SPACE}
    assert study.created_at is not None and study.created_at.tzinfo is not None


def test_ask_returns_a_trial_and_ask_n_returns_a_list(study) -> None:
    trial = study.ask()
    assert isinstance(trial, Trial) and trial.state == "running" and trial.number == 0
    batch = study.ask(3)
    assert [t.number for t in batch] == [1, 2, 3]


def test_tell_fail_and_infeasible_record_outcomes(study, fake_server) -> None:
    a, b, c = study.ask(3)
    assert a.tell(1.5).state == "complete" and a.value == 1.5
    assert b.fail().state == "failed"
    assert c.infeasible("OOM").state == "infeasible" and c.reason == "OOM"
    assert fake_server.bodies("tell") == [{"value": 1.5}, {"state": "failed"},
                                          {"state": "infeasible", "reason": "OOM"}]


def test_tell_rejects_non_finite_values_before_sending(study, fake_server) -> None:
    trial = study.ask()
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite number"):
            trial.tell(bad)
    assert fake_server.count("tell") == 0 and trial.state == "running"


def test_tell_accepts_numpy_like_numbers(study, fake_server) -> None:
    class Scalar:
        def __float__(self) -> float:
            return 0.25

    study.ask().tell(Scalar())  # type: ignore[arg-type]
    assert fake_server.bodies("tell") == [{"value": 0.25}]


def test_a_conflicting_tell_is_a_409(study) -> None:
    trial = study.ask()
    trial.tell(1.0)
    trial.tell(1.0)
    with pytest.raises(APIError) as caught:
        trial.tell(2.0)
    assert caught.value.status == 409


def test_trials_follow_every_page(study, monkeypatch) -> None:
    import dyesp_client._study

    monkeypatch.setattr(dyesp_client._study, "PAGE_SIZE", 2)
    batch = study.ask(5)
    batch[0].tell(3.0)
    assert [t.number for t in study.trials()] == [0, 1, 2, 3, 4]
    assert [t.number for t in study.trials("running")] == [1, 2, 3, 4]
    assert [t.value for t in study.trials("complete")] == [3.0]


def test_best_is_none_before_results_then_follows_direction(make_client) -> None:
    study = make_client(heartbeat_interval=None).create_study("max", SPACE, direction="maximize")
    assert study.best() is None
    for value, trial in zip([1.0, 3.0, 2.0], study.ask(3), strict=True):
        trial.tell(value)
    best = study.best()
    assert best is not None and best.value == 3.0 and study.n_trials == 3


def test_enqueue_returns_a_waiting_trial_handed_out_next(study) -> None:
    queued = study.enqueue({"x": 0.0, "act": "gelu"})
    assert queued.state == "waiting"
    trial = study.ask()
    assert trial.id == queued.id and trial.params == {"x": 0.0, "act": "gelu"}


def test_context_manager_records_what_happened(study) -> None:
    with pytest.raises(RuntimeError), study.ask() as crashed:
        raise RuntimeError("loader died")
    assert crashed.state == "failed"
    with pytest.raises(Infeasible), study.ask() as too_big:
        raise Infeasible("OOM")
    assert too_big.state == "infeasible" and too_big.reason == "OOM"
    with study.ask() as abandoned:
        pass
    assert abandoned.state == "failed"
    with study.ask() as done:
        done.tell(0.1)
    assert done.state == "complete"


def test_refresh_and_repr(study) -> None:
    study.ask().tell(2.0)
    assert study.refresh().trials_by_state == {"complete": 1}
    assert "toy" in repr(study) and "complete" in repr(study.trials()[0])


def test_client_studies_list_get_and_delete(make_client) -> None:
    client = make_client(heartbeat_interval=None)
    a = client.create_study("a", SPACE)
    b = client.create_study("b", SPACE)
    assert {s.id for s in client.list_studies()} == {a.id, b.id}
    assert [s.id for s in client.list_studies(name="b")] == [b.id]
    assert client.get_study(a.id).name == "a"
    client.delete_study(a.id)
    with pytest.raises(APIError) as caught:
        client.get_study(a.id)
    assert caught.value.status == 404 and caught.value.errors[0].field == "study_id"


def test_invalid_space_error_names_the_field(make_client) -> None:
    with pytest.raises(APIError) as caught:
        make_client().create_study("empty", [])
    assert caught.value.status == 422 and caught.value.errors[0].field == "space.params"


def test_a_wrong_key_is_a_401(fake_server, make_client) -> None:
    client = make_client()
    client._headers["Authorization"] = "Bearer wrong"
    with pytest.raises(APIError) as caught:
        client.list_studies()
    assert caught.value.status == 401
