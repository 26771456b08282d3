"""DyespSampler: real Optuna studies searched by the real app (in-process, SQLite and PostgreSQL).

Each test runs unchanged define-by-run Optuna code with ``sampler=DyespSampler(...)`` and checks
both sides: Optuna's storage records the trials as it always does, and the service study received
the same configurations and results, proposed by its engine.
"""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

optuna = pytest.importorskip("optuna")

from dyesp_client import Client, Study  # noqa: E402
from dyesp_client.optuna import (  # noqa: E402
    STUDY_ATTR,
    TRIAL_ATTR,
    DyespSampler,
    service_study_name,
    to_service_value,
)
from optuna.trial import TrialState  # noqa: E402

from tests.conftest import new_key  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def make_sampler(http, app) -> Callable[..., DyespSampler]:
    """Samplers of one owner (one API key), each on its own Client, as separate processes
    would be."""
    key = new_key(app)
    clients: list[Client] = []

    def make(**kwargs: object) -> DyespSampler:
        client = Client("http://testserver", api_key=key, http_client=http,
                        heartbeat_interval=None)
        clients.append(client)
        return DyespSampler(client=client, **kwargs)  # type: ignore[arg-type]

    yield make
    for client in clients:
        client.close()


def service_studies(sampler: DyespSampler, optuna_name: str) -> list[Study]:
    return [s for s in sampler.client.list_studies()
            if s.name.startswith(f"optuna/{optuna_name}/")]


def current_service_study(sampler: DyespSampler, study) -> Study:
    attrs = study._storage.get_study_system_attrs(study._study_id)
    return sampler.client.get_study(attrs[STUDY_ATTR]["id"])


def assert_told_as_evaluated(sampler: DyespSampler, study) -> dict[int, object]:
    """Every finished Optuna trial is linked to a service trial holding the values it used and
    its outcome; returns the service trials by Optuna trial number."""
    out = {}
    by_study: dict[str, dict[int, object]] = {}
    for trial in study.get_trials(deepcopy=False):
        link = trial.system_attrs[TRIAL_ATTR]
        if link["study_id"] not in by_study:
            service = sampler.client.get_study(link["study_id"])
            by_study[link["study_id"]] = {t.id: t for t in service.trials()}
        told = by_study[link["study_id"]][link["id"]]
        for name, value in trial.params.items():
            if name in told.params:
                expected = to_service_value(trial.distributions[name], value)
                assert told.params[name] == pytest.approx(expected), (trial.number, name)
        if trial.state == TrialState.COMPLETE:
            assert (told.state, told.value) == ("complete", trial.value)
        elif trial.state == TrialState.PRUNED:
            assert told.state == "stopped"
        else:
            assert told.state == "failed"
        out[trial.number] = told
    return out


def mixed_objective(trial) -> float:
    x = trial.suggest_float("x", -5.0, 5.0)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5, step=0.1)
    width = trial.suggest_int("width", 16, 256, log=True)
    layers = trial.suggest_int("layers", 1, 9, step=2)
    optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
    norm = trial.suggest_categorical("norm", [None, "batch", True, 3, 0.5])  # None: by repr
    return ((x - 2.0) ** 2 + abs(math.log10(lr) + 2) + dropout + abs(math.log2(width / 64))
            + 0.1 * layers + (optimizer == "sgd") + (norm is None))


def test_a_plain_space_is_searched_by_the_engine(make_sampler) -> None:
    sampler = make_sampler(seed=0)
    study = optuna.create_study(study_name="plain", sampler=sampler)
    study.optimize(mixed_objective, n_trials=14)

    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 14
    (service,) = service_studies(sampler, "plain")  # the space never grew: one service study
    assert service.direction == "minimize"
    assert {p["name"] for p in service.space["params"]} == {
        "x", "lr", "dropout", "width", "layers", "optimizer", "norm"}
    told = assert_told_as_evaluated(sampler, study)
    assert {t.study.id for t in told.values()} == {service.id}
    assert service.refresh().trials_by_state.get("complete") == 14
    # trial 0 discovered the space (sampled independently, then recorded); the engine proposed
    # the others, past its initial design
    strategies = [told[n].proposal["strategy"] for n in range(1, 14)]
    assert all(s for s in strategies)
    assert set(strategies) - {"initial"}, strategies
    for number in range(1, 14):  # the Optuna trial took the engine's values
        trial = study.trials[number]
        assert trial.system_attrs[TRIAL_ATTR]["params"] == told[number].params


def test_maximize_maps_to_a_maximizing_service_study(make_sampler) -> None:
    sampler = make_sampler(seed=1)
    study = optuna.create_study(study_name="up", direction="maximize", sampler=sampler)
    study.optimize(lambda t: -abs(t.suggest_float("x", 0, 1) - 0.3), n_trials=3)
    (service,) = service_studies(sampler, "up")
    assert service.direction == "maximize"
    assert service.refresh().best_trial.value == study.best_value
    assert sampler.service_study(study).id == service.id


def conditional_objective(trial) -> float:
    if trial.suggest_categorical("model", ["a", "b"]) == "a":
        x = trial.suggest_float("x", 0.0, 1.0)
        return (x - 0.3) ** 2
    depth = trial.suggest_int("depth", 1, 6)
    return 0.5 + 0.01 * depth


def test_a_conditional_space_grows_and_the_new_study_transfers(make_sampler) -> None:
    sampler = make_sampler(seed=3)
    study = optuna.create_study(study_name="cond", sampler=sampler)
    study.enqueue_trial({"model": "a", "x": 0.9})  # only branch a at first
    study.optimize(conditional_objective, n_trials=16)

    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 16
    services = sorted(service_studies(sampler, "cond"), key=lambda s: s.created_at)
    assert len(services) >= 2  # branch b's param appeared later: a new space
    first, last = services[0], current_service_study(sampler, study)
    assert {p["name"] for p in first.space["params"]} == {"model", "x"}
    assert {p["name"] for p in last.space["params"]} == {"model", "x", "depth"}
    assert last.transfer is not None and first.id in last.transfer["sources"]
    told = assert_told_as_evaluated(sampler, study)
    # the newest study proposed both branches' params and the objective used what it asked
    proposed_by_last = [n for n, t in told.items() if t.study.id == last.id]
    assert proposed_by_last
    for number in proposed_by_last:
        trial = study.trials[number]
        if "x" in trial.params and "x" in told[number].params:
            assert trial.params["x"] == told[number].params["x"]


def test_two_processes_sharing_an_rdb_storage_share_one_service_study(make_sampler,
                                                                      tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="shared", storage=storage)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            study = optuna.load_study(study_name="shared", storage=storage,
                                      sampler=make_sampler(seed=seed))
            study.optimize(mixed_objective, n_trials=5)
        except BaseException as error:  # surfaced below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    reader = make_sampler()
    study = optuna.load_study(study_name="shared", storage=storage)  # as optuna-dashboard reads
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 10
    (service,) = service_studies(reader, "shared")  # unique names: the later create loaded it
    assert current_service_study(reader, study).id == service.id
    told = assert_told_as_evaluated(reader, study)
    assert {t.study.id for t in told.values()} == {service.id}
    assert service.refresh().trials_by_state == {"complete": 10}


def test_a_pruned_trial_is_stopped_with_its_curve(make_sampler) -> None:
    sampler = make_sampler(seed=4)
    study = optuna.create_study(study_name="pruned", sampler=sampler,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2))

    def objective(trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        bad = trial.number >= 2 and trial.number % 2 == 1  # far worse than the median
        value = 0.0
        for step in range(4):
            value = x + (100.0 + step if bad else 0.0)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=6)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert [t.number for t in pruned] == [3, 5]
    told = assert_told_as_evaluated(sampler, study)
    for trial in pruned:
        service_trial = told[trial.number]
        curve = sorted(trial.intermediate_values.items())
        assert service_trial.curve() == curve
        assert (service_trial.value, service_trial.last_step) == (curve[-1][1], curve[-1][0])
        assert "MedianPruner" in service_trial.reason


def test_a_failing_objective_fails_its_service_trial(make_sampler) -> None:
    sampler = make_sampler(seed=5)
    study = optuna.create_study(study_name="failing", sampler=sampler)

    def objective(trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number == 2:
            raise ValueError("loader crashed")
        if trial.number == 3:
            return float("nan")
        return x

    study.optimize(objective, n_trials=5, catch=(ValueError,))
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL,
                      TrialState.COMPLETE]
    told = assert_told_as_evaluated(sampler, study)
    assert told[2].state == told[3].state == "failed" and told[2].reason
    (service,) = service_studies(sampler, "failing")
    assert "running" not in service.refresh().trials_by_state

    with pytest.raises(KeyError):  # not caught by Optuna: raised, and nothing left running
        study.optimize(lambda t: {}[t.suggest_float("x", 0.0, 1.0)], n_trials=3)
    assert study.trials[-1].state == TrialState.FAIL
    assert service.refresh().trials_by_state.get("running", 0) == 0


def test_enqueued_trials_keep_their_values_and_are_recorded(make_sampler) -> None:
    sampler = make_sampler(seed=6)
    study = optuna.create_study(study_name="enqueued", sampler=sampler)
    study.enqueue_trial({"model": "a", "x": 0.5})  # discovers the space: recorded, not asked
    study.optimize(conditional_objective, n_trials=2)
    study.enqueue_trial({"model": "a", "x": 0.25})
    study.enqueue_trial({"model": "a"})  # partly fixed: x is sampled
    study.optimize(conditional_objective, n_trials=3)

    fixed, partial = study.trials[2], study.trials[3]
    assert fixed.params == {"model": "a", "x": 0.25}
    assert partial.params["model"] == "a"
    told = assert_told_as_evaluated(sampler, study)
    assert told[2].state == "complete" and told[2].params["x"] == 0.25
    assert told[3].params["x"] == partial.params["x"]
    # a fixed trial asks nothing: it is recorded (add_trial) as one finished trial, and no
    # proposal is made for it only to be failed, nor left waiting
    for number in (0, 2, 3):
        assert told[number].proposal["strategy"] == "imported", number
    assert told[4].proposal["strategy"] != "imported"
    everything = [t.state for s in service_studies(sampler, "enqueued") for t in s.trials()]
    assert everything == ["complete"] * 5


def test_a_pruned_enqueued_trial_is_recorded_with_its_whole_curve(make_sampler) -> None:
    sampler = make_sampler(seed=8)
    study = optuna.create_study(study_name="pruned-fixed", sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
    study.enqueue_trial({"x": 0.75})

    def objective(trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(150):  # more points than a proposal's reports carry (100)
            trial.report(x + 1.0 / (step + 1), step)
        raise optuna.TrialPruned()

    study.optimize(objective, n_trials=1)
    pruned = study.trials[1]
    assert pruned.state == TrialState.PRUNED
    recorded = assert_told_as_evaluated(sampler, study)[1]
    assert (recorded.state, recorded.params) == ("stopped", {"x": 0.75})
    assert recorded.proposal["strategy"] == "imported"
    curve = sorted(pruned.intermediate_values.items())
    assert len(curve) == 150 and recorded.curve() == curve
    assert (recorded.value, recorded.last_step) == (curve[-1][1], 149)
    assert "pruned by Optuna" in recorded.reason


def test_a_changed_range_falls_back_and_widens_the_space(make_sampler) -> None:
    sampler = make_sampler(seed=7)
    study = optuna.create_study(study_name="moved", sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=4)
    study.optimize(lambda t: t.suggest_float("x", 2.0, 3.0), n_trials=4)  # the code changed

    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 8
    assert all(2.0 <= t.params["x"] <= 3.0 for t in study.trials[4:])
    current = current_service_study(sampler, study)
    (x,) = current.space["params"]
    assert (x["low"], x["high"]) == (0.0, 3.0)
    told = assert_told_as_evaluated(sampler, study)
    # trial 4's proposal (from the 0..1 study) lay outside 2..3: it was failed, saying why, and
    # what the objective evaluated was recorded as a trial of its own
    first = service_studies(sampler, "moved")
    replaced = [t for s in first for t in s.trials(state="failed")]
    assert replaced and all("other values" in t.reason for t in replaced)
    assert told[4].proposal["strategy"] == "imported" and told[4].state == "complete"
    for service in first:
        assert set(service.refresh().trials_by_state) <= {"complete", "failed"}


def test_a_service_study_name_already_taken_is_loaded(make_sampler) -> None:
    first = make_sampler(seed=9)
    study = optuna.create_study(study_name="rerun", sampler=first)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
    (service,) = service_studies(first, "rerun")

    # the script run again (a fresh in-memory Optuna study): its create finds the name taken
    again = make_sampler(seed=9)
    rerun = optuna.create_study(study_name="rerun", sampler=again)
    rerun.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
    assert [s.id for s in service_studies(again, "rerun")] == [service.id]
    assert again.service_study(rerun).id == service.id
    assert service.refresh().trials_by_state == {"complete": 6}


def test_a_name_taken_by_another_space_is_left_alone(make_sampler, caplog) -> None:
    sampler = make_sampler(seed=10)
    params = [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]
    name = service_study_name("taken", "minimize", params)
    other = sampler.client.create_study(name, [{"name": "y", "type": "int", "low": 0,
                                                "high": 3}])
    study = optuna.create_study(study_name="taken", sampler=sampler)
    with caplog.at_level("WARNING", logger="dyesp_client"):
        study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)

    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3  # sampled independently
    assert sampler.service_study(study) is None
    assert other.refresh().trials_by_state == {}
    assert other.space["params"][0]["name"] == "y"
    assert name in caplog.text and "differs" in caplog.text


def test_multi_objective_studies_are_refused_clearly(make_sampler) -> None:
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=make_sampler())
    with pytest.raises(ValueError, match="single-objective studies only"):
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 0.0), n_trials=2)
    assert all(t.state == TrialState.FAIL for t in study.trials)


def test_the_sampler_pickles_when_built_from_a_url(make_sampler) -> None:
    sampler = DyespSampler("http://127.0.0.1:9", api_key="k", seed=3)
    copy = pickle.loads(pickle.dumps(sampler))
    assert copy.client.url == "http://127.0.0.1:9" and copy.client is not sampler.client
    copy.close()
    sampler.close()
    with pytest.raises(TypeError, match="injected client cannot be pickled"):
        pickle.dumps(make_sampler())


def test_the_sdk_imports_optuna_only_in_dyesp_client_optuna() -> None:
    code = "import sys, dyesp_client; print('optuna' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # this checkout's SDK
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip() == "False"
