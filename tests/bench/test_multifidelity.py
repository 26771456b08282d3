"""The early-stopping benchmark counts what its table claims: epochs as a user pays them.

The ledger is checked on a synthetic task (no extras needed): a stopped trial pays the epochs it
ran, a full one the maximum, a restart pays its whole budget again, the budget censors, and only
a full-fidelity value can reach the target. With the bench extras (onnxruntime, optuna; CI does
not install them) the LCBench curve is checked against the epoch-52 objective, and one tiny run
of dyesp-es and tpe-median goes through the command end to end.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.multifidelity.ledger import Ledger, RunOver
from benchmarks.multifidelity.tasks import MFTask, mf_task_names, top_value

SPACE = {"params": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]}


def _task(steps: tuple[int, ...] = (1, 2, 3, 4)) -> MFTask:
    # value = x * step / fmax: a config's curve rises to x at the maximum fidelity
    fmax = steps[-1]
    return MFTask(name="toy", space=SPACE, direction="maximize", fmin=steps[0], fmax=fmax,
                  steps=steps, target=0.9, top5=0.8,
                  value_fn=lambda p, s: p["x"] * s / fmax)


def test_a_stopped_trial_pays_the_steps_it_ran_and_a_full_one_the_maximum() -> None:
    ledger = Ledger(_task(), budget=100)
    run = ledger.start({"x": 0.85})  # would end in the top 5 % (0.85 >= 0.8), below the target
    run.advance(1)
    run.advance(2)
    run.stop()
    assert ledger.spent == 2
    full = ledger.start({"x": 0.1})
    full.advance(4)  # straight to the maximum: 4 epochs
    assert ledger.spent == 6
    s = ledger.summary()
    assert (s["n_trials"], s["n_stopped"], s["n_stopped_top5"], s["n_full"]) == (2, 1, 1, 1)
    assert not s["reached"] and s["epochs_to_target"] is None


def test_a_restart_pays_its_whole_budget_again() -> None:
    ledger = Ledger(_task(), budget=100)
    ledger.evaluate({"x": 0.5}, 2)
    ledger.evaluate({"x": 0.5}, 4)  # the same configuration, from scratch: 4 more, not 2
    assert ledger.spent == 6
    s = ledger.summary()
    assert (s["n_trials"], s["n_stopped"], s["n_evaluations"]) == (1, 0, 2)


def test_the_budget_censors_the_run() -> None:
    ledger = Ledger(_task(), budget=5)
    ledger.start({"x": 0.1}).advance(4)
    with pytest.raises(RunOver) as over:
        ledger.start({"x": 0.95}).advance(4)  # would reach the target, but 8 > 5
    assert not over.value.reached
    assert ledger.spent == 4 and ledger.summary()["epochs_to_target"] is None


def test_only_a_full_fidelity_value_reaches_the_target() -> None:
    task = _task(steps=(1, 4))
    task_high_early = MFTask(name="toy", space=SPACE, direction="maximize", fmin=1, fmax=4,
                             steps=(1, 4), target=0.9, top5=0.8,
                             value_fn=lambda p, s: 0.99 if s == 1 else p["x"])
    ledger = Ledger(task_high_early, budget=100)
    assert ledger.evaluate({"x": 0.5}, 1) == 0.99  # above the target at low fidelity: goes on
    run = ledger.start({"x": 0.5})
    assert run.advance(1) == 0.99
    run.advance(4)  # 0.5 at full fidelity: not reached
    with pytest.raises(RunOver) as over:
        ledger.start({"x": 0.95}).advance(4)
    assert over.value.reached
    assert ledger.epochs_to_target == ledger.spent == 1 + 4 + 4
    assert Ledger(task).task.nearest_step(2.4) == 1 and task.nearest_step(66.7) == 4


def test_hindsight_trains_only_improvements_and_stops_at_the_first_config_that_reaches() -> None:
    ledger = Ledger(_task(), budget=100)
    ledger.start({"x": 0.5}).advance(4)  # improves: 4
    ledger.start({"x": 0.3}).advance(4)  # does not: 1 in hindsight, 4 paid
    stopped = ledger.start({"x": 0.95})  # would have reached the target: stopped wrongly
    stopped.advance(1)
    stopped.stop()
    ledger.start({"x": 0.6}).advance(4)
    assert ledger.spent == 13
    assert ledger.summary()["hindsight_epochs_to_target"] == 4 + 1 + 4
    never = Ledger(_task(), budget=100)
    never.start({"x": 0.2}).advance(4)
    assert never.summary()["hindsight_epochs_to_target"] is None


def test_the_headroom_table_censors_at_the_budget_and_skips_older_records() -> None:
    from benchmarks.multifidelity.report import _hindsight_cell, summarise

    def rec(seed: int, epochs: int | None, hindsight: int | None) -> dict:
        return {"seed": seed, "reached": epochs is not None, "epochs_to_target": epochs,
                "n_trials": 1, "n_stopped": 0, "n_stopped_top5": 0, "n_full": 1,
                "wall_s": 0.1, "hindsight_epochs_to_target": hindsight}

    s = summarise([rec(0, 40, 10), rec(1, None, None), rec(2, 80, 20)], budget=100)
    assert s["hindsight_median"] == 20 and s["median"] == 80
    assert _hindsight_cell(s) == "20 (4.00x)"
    older = rec(3, 50, None)
    del older["hindsight_epochs_to_target"]
    assert summarise([rec(0, 40, 10), older], budget=100)["hindsight_median"] is None


def test_references_and_suites() -> None:
    import numpy as np

    values = np.arange(1000, dtype=float)
    assert top_value(values, "maximize", 0.05) == 950.0  # the 50th best
    assert top_value(values, "minimize", 0.005) == 4.0  # the 5th best
    assert "nb201/cifar10" in mf_task_names(None)
    assert mf_task_names("heldout,lcbench/3945") == mf_task_names("heldout")


def test_lcbench_curve_ends_at_the_epoch_52_objective() -> None:
    pytest.importorskip("onnxruntime")
    from benchmarks.tasks import lcbench

    if not (lcbench.data_dir() / "model.onnx").exists():
        pytest.skip("LCBench surrogate data not present")
    objective = lcbench.LCBenchObjective("189906")
    for row in lcbench.random_rows(5, seed=3):
        params = dict(zip(lcbench.INPUT_ORDER, row.tolist(), strict=True))
        curve = objective.curve(params)
        assert curve.shape == (lcbench.EPOCH,)
        assert objective.at_epoch(params, lcbench.EPOCH) == objective(params)
        assert objective.at_epoch(params, 1) != objective(params)


def test_a_tiny_run_of_dyesp_es_and_tpe_median_is_well_formed(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("optuna")
    pytest.importorskip("torch")
    from benchmarks.multifidelity.__main__ import main
    from benchmarks.tasks import lcbench

    if not (lcbench.data_dir() / "model.onnx").exists():
        pytest.skip("LCBench surrogate data not present")
    argv = ["--tasks", "lcbench/189906", "--methods", "dyesp-es,tpe-median", "--seeds", "1",
            "--budget-trainings", "4", "--jobs", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    for method in ("dyesp-es", "tpe-median"):
        path = tmp_path / "runs_mf" / "lcbench__189906" / method / "seed0_b208.json"
        rec = json.loads(path.read_text())
        assert rec["budget"] == 208 and 0 < rec["spent"] <= 208
        assert rec["reached"] == (rec["epochs_to_target"] is not None)
        assert rec["n_trials"] >= rec["n_stopped"] >= rec["n_stopped_top5"] >= 0
        assert rec["n_full"] >= 1 and rec["wall_s"] > 0
        if method == "dyesp-es":  # stop decisions are counted by rung, never as free text
            assert sum(rec["notes"].values()) == rec["n_stopped"]
            assert all(k.startswith("stop@") for k in rec["notes"])
    data = json.loads((tmp_path / "multifidelity.json").read_text())
    cell = data["tasks"]["lcbench/189906"]["methods"]["dyesp-es"]
    assert cell["n_seeds"] == 1 and set(cell["per_seed"]) == {"0"}
    assert "dyesp-es" in (tmp_path / "multifidelity.md").read_text()


def test_the_trial_in_flight_when_the_budget_ends_is_not_a_stopped_one() -> None:
    ledger = Ledger(_task(), budget=3)
    run = ledger.start({"x": 0.9})
    run.advance(1)
    run.advance(3)
    with pytest.raises(RunOver):
        run.advance(4)
    s = ledger.summary()
    assert (s["n_trials"], s["n_stopped"], s["n_full"], s["spent"]) == (1, 0, 0, 3)


def test_dehb_speaks_json_lines_and_is_charged_by_the_ledger() -> None:
    from benchmarks.multifidelity import mf_dehb

    if not mf_dehb.available():
        pytest.skip("no .venv-dehb (python -m benchmarks.multifidelity --setup-dehb)")
    task = _task(steps=(1, 2, 3, 4, 5, 6, 7, 8, 9))
    ledger = Ledger(task, budget=60)
    with pytest.raises(RunOver):
        mf_dehb.drive(task, ledger, seed=0)
    s = ledger.summary()
    assert s["n_evaluations"] >= 3 and 0 < s["spent"] <= 60
    assert s["n_trials"] >= s["n_stopped"]


def test_a_job_validating_every_fifth_step_reports_at_the_first_step_past_each_multiple() -> None:
    from benchmarks.multifidelity.methods import reported_steps

    lcbench_like = _task(tuple(range(1, 53)))
    assert reported_steps(lcbench_like, 5) == [*range(5, 51, 5), 52]
    assert reported_steps(lcbench_like, 1) == list(range(1, 53))
    two_fidelities = _task((12, 200))  # NAS-Bench-201: only 12 and 200 epochs exist
    assert reported_steps(two_fidelities, 5) == [12, 200]


def test_fresh_seeds_are_loaded_from_the_first_seed_on(tmp_path) -> None:
    from benchmarks.multifidelity.run import load_runs, run_path
    from benchmarks.runner import write_record

    for seed in (0, 1, 100, 101, 102):
        write_record(run_path(tmp_path, "lcbench/1", "dyesp-es", seed, 520),
                     {"seed": seed, "epochs_to_target": seed + 1})
    assert [r["seed"] for r in load_runs(tmp_path, "lcbench/1", "dyesp-es", 520, 2)] == [0, 1]
    fresh = load_runs(tmp_path, "lcbench/1", "dyesp-es", 520, 3, first_seed=100)
    assert [r["seed"] for r in fresh] == [100, 101, 102]
    assert load_runs(tmp_path, "lcbench/1", "dyesp-es", 104, 3, first_seed=100) == []  # budget
