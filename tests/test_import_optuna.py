"""`dyesp import-optuna` against real Optuna studies in a SQLite Optuna storage: the space is
mapped (log, step, int, categorical, conditional params), finished trials are recorded with their
curves, and the result serves as a transfer prior. On the service's SQLite and PostgreSQL."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from service.db import key_queries, study_queries
from service.db.models import Owner
from service.db.session import transaction
from service.errors import Conflict
from service.optuna_import import ImportFailed, import_optuna
from service.usecases import study_lifecycle

optuna = pytest.importorskip("optuna")


def conditional_objective(trial) -> float:
    """Optuna's idiom for a conditional space: params suggested only under a parent's value."""
    classifier = trial.suggest_categorical("classifier", ["svc", "forest"])
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5, step=0.1)
    if classifier == "svc":
        c = trial.suggest_float("svc_c", 1e-3, 1e3, log=True)
        loss = abs(math.log10(c)) + lr
    else:
        depth = trial.suggest_int("depth", 2, 32, log=True)
        loss = 1.0 / depth + lr
    for step in range(1, 4):
        trial.report(loss + 1.0 / step, step)
        if trial.number % 5 == 4 and step == 2:
            raise optuna.TrialPruned()
    if trial.number % 7 == 6:
        raise ValueError("a failing trial")
    trial.set_user_attr("note", f"t{trial.number}")
    return loss + dropout


@pytest.fixture
def optuna_storage(tmp_path) -> str:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="svm-or-forest", storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.set_user_attr("dataset", "iris")
    study.optimize(conditional_objective, n_trials=30, catch=(ValueError,))
    study.enqueue_trial({"classifier": "svc", "lr": 0.01, "dropout": 0.0, "svc_c": 1.0})  # waiting
    return storage


def test_a_conditional_study_is_imported_with_its_trials_and_curves(app, api,
                                                                   optuna_storage) -> None:
    ctx = app.state.context
    with transaction(ctx.sessions) as session:
        owner_id = key_queries.get_or_create_owner(session, f"importer-{id(api)}").id
    report = import_optuna(ctx, owner_id, optuna_storage, "svm-or-forest", into="imported")
    source = optuna.load_study(study_name="svm-or-forest", storage=optuna_storage)
    finished = [t for t in source.trials if t.state.is_finished()]
    assert sum(report.by_state.values()) == len(finished) == 30
    assert report.skipped_unfinished == 1 and report.dropped_params == []
    assert report.conditions == {"svc_c": ("classifier", ["svc"]),
                                 "depth": ("classifier", ["forest"])}
    with ctx.sessions() as session:
        study = study_lifecycle.find_study(session, owner_id, report.study_id)
        space = {p["name"]: p for p in study.space["params"]}
        assert study.name == "imported" and study.direction == "minimize"
        assert study.user_attrs == {"dataset": "iris"}
        assert study.fidelity == {"name": "step", "min": 1, "max": 3}
    assert space["lr"] == {"name": "lr", "type": "float", "low": 1e-4, "high": 0.1, "log": True}
    assert space["dropout"]["step"] == 0.1
    assert space["depth"] == {"name": "depth", "type": "int", "low": 2, "high": 32, "log": True,
                              "condition": {"parent": "classifier", "values": ["forest"]}}
    assert space["svc_c"]["condition"] == {"parent": "classifier", "values": ["svc"]}
    # through the API: every finished Optuna trial, in order, with its state, value and curve
    headers = {"Authorization": f"Bearer {key_for(app, owner_id)}"}
    got = api.get(f"/v1/studies/{report.study_id}/trials", params={"limit": 100},
                  headers=headers).json()["trials"]
    expected_states = {"COMPLETE": "complete", "PRUNED": "stopped", "FAIL": "failed"}
    assert [t["state"] for t in got] == [expected_states[t.state.name] for t in finished]
    for mine, theirs in zip(got, finished, strict=True):
        assert mine["params"] == theirs.params
        assert mine["intermediate"] == [[s, v] for s, v in sorted(
            theirs.intermediate_values.items())]
        if theirs.state.name == "COMPLETE":
            assert mine["value"] == theirs.value
            assert mine["user_attrs"] == {"note": f"t{theirs.number}"}
        if theirs.state.name == "PRUNED":
            assert mine["value"] == theirs.intermediate_values[max(theirs.intermediate_values)]
    # the imported study is a transfer prior for a new one
    warm = api.post("/v1/studies", headers=headers, json={
        "name": "warm", "space": {"params": list(space.values())},
        "transfer_from": [report.study_id]})
    assert warm.status_code == 201, warm.text
    asked = api.post(f"/v1/studies/{warm.json()['id']}/ask", headers=headers, json={}).json()
    assert asked["trials"][0]["proposal"]["strategy"] == "transfer"


def key_for(app, owner_id: int) -> str:
    with transaction(app.state.context.sessions) as session:
        owner = session.get(Owner, owner_id)
        return key_queries.create_key(session, owner.name, "import-test").secret


def test_a_param_no_discrete_param_explains_is_left_out_and_reported(app, api,
                                                                     tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'threshold.db'}"
    study = optuna.create_study(study_name="threshold", storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=2))

    def objective(trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if x > 0.5:  # a float threshold: no condition of ours can say this
            return x + trial.suggest_float("extra", 0.0, 1.0)
        return x

    study.optimize(objective, n_trials=12)
    ctx = app.state.context
    with transaction(ctx.sessions) as session:
        owner_id = key_queries.get_or_create_owner(session, f"threshold-{id(api)}").id
    report = import_optuna(ctx, owner_id, storage, "threshold")
    assert report.dropped_params == ["extra"] and report.by_state == {"complete": 12}
    with ctx.sessions() as session:
        imported = study_lifecycle.find_study(session, owner_id, report.study_id)
        assert [p["name"] for p in imported.space["params"]] == ["x"]
        assert imported.direction == "maximize"


def test_a_name_already_taken_fails_and_creates_nothing(app, api, optuna_storage) -> None:
    ctx = app.state.context
    with transaction(ctx.sessions) as session:
        owner_id = key_queries.get_or_create_owner(session, f"taken-{id(api)}").id
    import_optuna(ctx, owner_id, optuna_storage, "svm-or-forest")
    with pytest.raises(Conflict):
        import_optuna(ctx, owner_id, optuna_storage, "svm-or-forest")
    with pytest.raises(ImportFailed, match="no Optuna study 'nope'"):
        import_optuna(ctx, owner_id, optuna_storage, "nope")
    with ctx.sessions() as session:
        assert study_queries.count_studies(session, owner_id) == 1


def test_the_command_imports_into_the_local_owner(tmp_path, optuna_storage) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "import-optuna", "--storage", optuna_storage,
         "--study", "svm-or-forest", "--into", "from-optuna"], capture_output=True, text=True,
        env={"DYESP_DATABASE_URL": url, "PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr
    assert "into study" in result.stdout and "'from-optuna' of owner 'local'" in result.stdout
    assert "condition inferred: 'svc_c' is active when 'classifier' is one of ['svc']" \
        in result.stdout
    again = subprocess.run(
        [sys.executable, "-m", "service.cli", "import-optuna", "--storage", optuna_storage,
         "--study", "svm-or-forest", "--into", "from-optuna"], capture_output=True, text=True,
        env={"DYESP_DATABASE_URL": url, "PATH": "/usr/bin"})
    assert again.returncode == 1 and "already have a study called 'from-optuna'" in again.stderr

