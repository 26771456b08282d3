"""The SDK's Optuna-parity calls against the real app in-process: load by name, load_if_exists,
user attributes, partial enqueue, add_trials, trials_dataframe and trials_csv."""

from __future__ import annotations

import pytest
from dyesp_client import APIError

SPACE = [
    {"name": "depth", "type": "int", "low": 1, "high": 4},
    {"name": "width_3", "type": "int", "low": 16, "high": 256, "log": True,
     "condition": {"parent": "depth", "values": [3, 4]}},
    {"name": "activation", "type": "categorical", "choices": ["relu", "gelu", "tanh"]},
    {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-1, "log": True},
]


def test_load_study_by_name_and_a_missing_name_is_a_404_naming_it(client_factory) -> None:
    with client_factory() as client:
        created = client.create_study("by-name", SPACE)
        assert client.load_study("by-name").id == created.id
        with pytest.raises(APIError) as missing:
            client.load_study("no-such")
        assert missing.value.status == 404 and "'no-such'" in str(missing.value)
        assert [e.field for e in missing.value.errors] == ["name"]


def test_create_with_a_taken_name_is_a_409_unless_load_if_exists(client_factory) -> None:
    with client_factory() as client:
        created = client.create_study("taken", SPACE, seed=1)
        with pytest.raises(APIError) as taken:
            client.create_study("taken", SPACE)
        assert taken.value.status == 409 and [e.field for e in taken.value.errors] == ["name"]
        # the same space written differently (reordered, defaults spelled out) is the same study
        respelled = [{**SPACE[3], "log": True, "step": None}, SPACE[2], SPACE[1],
                     {**SPACE[0], "step": 1}]
        loaded = client.create_study("taken", respelled, load_if_exists=True)
        assert loaded.id == created.id and loaded.seed == 1


@pytest.mark.parametrize(("changes", "words"), [
    ({"direction": "maximize"}, "direction is 'minimize', not 'maximize'"),
    ({"space": SPACE[:3]}, "param 'lr' only in the stored space"),
    ({"space": [*SPACE[:3], {**SPACE[3], "high": 1.0}]}, "param 'lr': high differs"),
    ({"space": [SPACE[0], SPACE[1], {**SPACE[2], "choices": ["relu"]}, SPACE[3]]},
     "param 'activation': choices differs"),
    ({"space": [SPACE[0], SPACE[1], {**SPACE[2], "cell": {"name": "c", "edge": [0, 1]}},
                SPACE[3]]}, "param 'activation': cell differs"),
])
def test_load_if_exists_refuses_a_study_that_differs(client_factory, changes: dict,
                                                     words: str) -> None:
    with client_factory() as client:
        client.create_study("differs", SPACE)
        with pytest.raises(ValueError, match="exists but differs") as error:
            client.create_study("differs", **{"space": SPACE, **changes}, load_if_exists=True)
        assert words in str(error.value)


def test_user_attrs_of_studies_and_trials(client_factory) -> None:
    with client_factory() as client:
        study = client.create_study("attrs", SPACE)
        study.set_user_attr("dataset", "cifar10")
        study.set_user_attr("budget", {"gpu_hours": 3})
        assert study.user_attrs == {"dataset": "cifar10", "budget": {"gpu_hours": 3}}
        study.set_user_attr("budget", None)
        assert client.load_study("attrs").user_attrs == {"dataset": "cifar10"}
        trial = study.ask()
        trial.set_user_attr("host", "gpu-3")
        trial.tell(1.0)
        trial.set_user_attr("note", [1, 2])
        assert trial.user_attrs == {"host": "gpu-3", "note": [1, 2]}
        (stored,) = study.trials()
        assert stored.user_attrs == {"host": "gpu-3", "note": [1, 2]}
        with pytest.raises(APIError) as error:
            trial.set_user_attr("k" * 129, 1)
        assert error.value.status == 422


def test_enqueue_with_values_fixed_and_skip_if_exists(client_factory) -> None:
    with client_factory() as client:
        study = client.create_study("partial", SPACE, seed=4)
        queued = study.enqueue({"lr": 0.001, "activation": "gelu"})
        assert queued.state == "waiting" and queued.params == {"activation": "gelu", "lr": 0.001}
        trial = study.ask()
        assert trial.id == queued.id and set(trial.params) >= {"depth", "activation", "lr"}
        assert (trial.params["lr"], trial.params["activation"]) == (0.001, "gelu")
        trial.tell(0.1)
        assert study.enqueue({"lr": 0.001, "activation": "gelu"}, skip_if_exists=True).id \
            == trial.id


def test_add_trial_and_add_trials_record_finished_trials(client_factory) -> None:
    with client_factory() as client:
        study = client.create_study("import", SPACE, fidelity={"name": "epoch", "min": 1,
                                                               "max": 9})
        one = study.add_trial({"depth": 1, "activation": "relu", "lr": 0.01}, 0.4,
                              intermediate=[(1, 0.9), (3, 0.5)], user_attrs={"from": "x"})
        assert one.state == "complete" and one.value == 0.4 and one.last_step == 3
        assert one.user_attrs == {"from": "x"} and one.intermediate == [(1, 0.9), (3, 0.5)]
        many = study.add_trials([
            {"params": {"depth": 2, "activation": "gelu", "lr": 0.001}, "state": "failed"},
            {"params": {"depth": 1, "activation": "tanh", "lr": 0.002}, "state": "stopped",
             "intermediate": [[1, 0.8]]}])
        assert [t.number for t in many] == [1, 2] and many[1].value == 0.8
        with pytest.raises(APIError) as bad:
            study.add_trials([{"params": {"depth": 1, "activation": "relu", "lr": 0.01},
                               "value": 1.0}, {"params": {"depth": 1}, "value": 1.0}])
        assert bad.value.status == 422 and bad.value.errors[0].field.startswith("trials[1]")
        assert len(study.trials()) == 3  # the bad request recorded nothing


def test_trials_dataframe_is_shaped_like_optunas(client_factory) -> None:
    pandas = pytest.importorskip("pandas")
    with client_factory() as client:
        study = client.create_study("frame", SPACE)
        done = study.ask()
        done.set_user_attr("host", "gpu-1")
        done.tell(0.25)
        study.add_trial({"depth": 3, "width_3": 64, "activation": "relu", "lr": 0.01},
                        state="stopped", intermediate=[(1, 0.7)])
        study.ask()  # running
        frame = study.trials_dataframe()
        params = sorted({n for t in study.trials() for n in t.params})
        assert list(frame.columns) == ["number", "value", "datetime_start", "datetime_complete",
                                       "duration", *[f"params_{n}" for n in params],
                                       "user_attrs_host", "state"]
        assert list(frame["number"]) == [0, 1, 2]
        assert list(frame["state"]) == ["COMPLETE", "PRUNED", "RUNNING"]
        assert frame["value"][0] == 0.25 and frame["value"][1] == 0.7
        assert frame["user_attrs_host"][0] == "gpu-1" and pandas.isna(frame["user_attrs_host"][1])
        assert frame["params_width_3"][1] == 64
        assert frame["duration"][0] == frame["datetime_complete"][0] - frame["datetime_start"][0]
        assert pandas.isna(frame["datetime_complete"][2])
        assert list(study.trials_dataframe(attrs=("number", "state")).columns) == \
            ["number", "state"]


def test_trials_dataframe_without_pandas_says_how_to_install_it() -> None:
    import subprocess
    import sys

    code = ("import sys; sys.modules['pandas'] = None\n"
            "from dyesp_client._frames import _pandas\n"
            "try:\n    _pandas()\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "pip install 'dyesp-client[pandas]'" in out


def test_trials_csv_downloads_the_export_to_a_path_or_a_file(client_factory, tmp_path) -> None:
    import csv
    import io
    import json

    with client_factory() as client:
        study = client.create_study("csv", SPACE)
        for i in range(3):
            trial = study.ask()
            trial.set_user_attr("note", f"é{i}")
            trial.tell(float(i))
        path = tmp_path / "trials.csv"
        study.trials_csv(path)
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        assert [r["value"] for r in rows] == ["0.0", "1.0", "2.0"]
        assert json.loads(rows[2]["user_attrs"]) == {"note": "é2"}
        text = io.StringIO()
        study.trials_csv(text)
        assert text.getvalue() == path.read_bytes().decode("utf-8")
        missing = client.get_study(study.id)
        client.delete_study(study.id)
        with pytest.raises(APIError) as gone:
            missing.trials_csv(io.BytesIO())
        assert gone.value.status == 404
