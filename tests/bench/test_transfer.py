"""The transfer benchmark's wiring (benchmarks/transfer.py), on a tiny synthetic family.

Three synthetic "datasets" (a shifted bowl on a small grid, one of them maximised) stand in for a
family, so the test needs neither the benchmark tables, nor torch, nor the process pool: priors
come from the siblings only, the flipped prior negates them, runs stop at the target (runs with a
prior only after the last trust checkpoint), and tpe-warm's first trials are the enqueued prior
configurations.
"""

from __future__ import annotations

import json
import math
from functools import partial

import numpy as np
import pytest

from benchmarks import transfer as tr
from benchmarks.tasks import registry
from benchmarks.tasks.base import Task

FAMILY = "synthxfer"
NAMES = tuple(f"{FAMILY}/{d}" for d in ("a", "b", "c"))
SPACE = {"params": [
    {"name": "x", "type": "int", "low": 0, "high": 20},
    {"name": "k", "type": "categorical", "choices": ["p", "q", "r", "s"]},
]}


def _objective(shift: int, sign: float, params: dict) -> float:
    loss = (params["x"] - shift) ** 2 + {"p": 0, "q": 3, "r": 8, "s": 20}[params["k"]]
    return sign * loss


def _make(dataset: str) -> Task:
    shift, direction = {"a": (12, "minimize"), "b": (11, "minimize"), "c": (13, "maximize")}[
        dataset]
    sign = 1.0 if direction == "minimize" else -1.0
    return Task(name=f"{FAMILY}/{dataset}", space=SPACE, direction=direction,
                objective=partial(_objective, shift, sign), optimum=0.0,
                target=sign * 2.0, worst=sign * 420.0, median=sign * 60.0, n_configs=84)


@pytest.fixture(scope="module")
def priors(tmp_path_factory):
    """The family registered, and its prior runs in a temporary results folder. The pruner's
    trainer is off (torch-free and fast): the wiring under test does not depend on it."""
    from benchmarks.optimizers.dyesp import DyESP

    root = tmp_path_factory.mktemp("transfer")
    with pytest.MonkeyPatch.context() as mp:
        for name in NAMES:
            mp.setitem(registry.FACTORIES, name, partial(_make, name.split("/")[1]))
        mp.setattr(DyESP, "use_trainer", False)
        for name in NAMES:
            tr.compute_prior(str(root), name, prior_budget=15)
        yield root


def test_prior_comes_from_the_siblings_only(priors):
    left_out = NAMES[0]
    assert tr.siblings(left_out) == list(NAMES[1:])
    studies = tr.load_studies(priors, left_out, 15)
    assert [s[0] for s in studies] == list(NAMES[1:])
    for name, direction, configs, values in studies:
        with open(tr.prior_path(priors, name, 15)) as fh:
            rec = json.load(fh)
        assert rec["task"] == name and rec["method"] == tr.PRIOR_ENGINE_METHOD
        assert rec["seed"] == tr.PRIOR_SEED and len(values) == len(configs) == 15
        assert direction == rec["direction"] and values == rec["values"]
    from benchmarks.tasks import get_task

    _, _, facts = tr.make_method("dyesp-transfer", get_task(left_out), 0, priors, 15)
    assert facts["prior_studies"] == list(NAMES[1:])


def test_flipped_prior_negates_the_values(priors):
    plain = tr.load_studies(priors, NAMES[0], 15)
    flipped = tr.load_studies(priors, NAMES[0], 15, flip=True)
    for p, f in zip(plain, flipped, strict=True):
        assert f[0] == f"flipped:{p[0]}"
        assert f[1] == p[1] and f[2] == p[2]  # same direction and configurations
        assert f[3] == [-v for v in p[3]]


def test_runs_stop_at_the_target_and_prior_runs_record_trust(priors):
    pytest.importorskip("optuna")
    from benchmarks.tasks import get_task

    task = get_task(NAMES[0])
    for method in ("dyesp-cold", "dyesp-transfer", "dyesp-negative", "random"):
        for seed in (0, 1) if method == "dyesp-transfer" else (0,):
            tr.run_and_store(str(priors), NAMES[0], method, seed, 20, 15)
            with open(tr.run_file(priors, NAMES[0], method, seed, 20, 15)) as fh:
                rec = json.load(fh)
            ttt = rec["trials_to_target"]
            reached = [task.reached(v) for v in rec["values"]]
            if ttt is None:
                assert rec["n_trials"] == 20 and not any(reached)
            else:
                assert reached[ttt - 1] and not any(reached[:ttt - 1])
            if method in tr.TRUSTED:
                assert rec["n_trials"] == max(ttt or 0, 20)  # on to the last trust checkpoint
                assert set(rec["trust"]) == {"5", "10", "20"}
                assert all(v is None or -1.0 <= v <= 1.0 for v in rec["trust"].values())
                assert rec["strategies"][0] == "transfer"  # the prior's incumbent comes first
            else:
                assert ttt is None or rec["n_trials"] == ttt  # early stop
    summary = tr.summarise(priors, [NAMES[0]], ["dyesp-cold", "dyesp-transfer",
                                                "dyesp-negative", "random"], 2, 20, 15)
    s = summary[NAMES[0]]["methods"]
    assert s["dyesp-transfer"]["n_seeds"] == 2 and s["dyesp-cold"]["n_seeds"] == 1
    assert math.isfinite(s["dyesp-cold"]["ttt_median"])
    md = tr.build_report(priors, [NAMES[0]], list(tr.METHODS), 2, 20, 15)
    assert "Negative transfer never more than 20% worse" in md
    assert "What the trust signal did" in md
    # Cells with different seed counts are named (transfer ran 2 seeds here, the rest 1).
    assert f"seeds per cell: 1, except 2 for {NAMES[0]} dyesp-transfer." in md
    assert (priors / "transfer.json").exists()


def test_tpe_warm_starts_with_the_enqueued_prior_configurations(priors):
    pytest.importorskip("optuna")
    from benchmarks.tasks import get_task

    task = get_task(NAMES[0])
    studies = tr.load_studies(priors, NAMES[0], 15)
    warm = tr.warm_configs(task, studies)
    assert 1 <= len(warm) <= tr.WARM_TOP_K * len(studies)
    assert len({json.dumps(c, sort_keys=True) for c in warm}) == len(warm)  # deduplicated
    # Rank 1 of the first study leads; the maximised study's best is its largest value.
    _, _, configs, values = studies[0]
    assert warm[0] == configs[min(range(len(values)), key=lambda i: (values[i], i))]
    best_c = max(range(len(studies[1][3])), key=lambda i: (studies[1][3][i], -i))
    assert studies[1][2][best_c] in warm
    tr.run_and_store(str(priors), NAMES[0], "tpe-warm", 0, 40, 15)
    with open(tr.run_file(priors, NAMES[0], "tpe-warm", 0, 40, 15)) as fh:
        rec = json.load(fh)
    assert rec["enqueued"] == warm
    n = min(len(warm), rec["n_trials"])
    assert rec["params"][:n] == warm[:n]


def test_the_negative_over_cold_interval_brackets_the_ratio_of_medians():
    cold = [10, 12, 14, 16, 18, 20, 22, 24, 26, None]
    negative = [12, 15, 18, 20, 22, 24, 26, 28, 30, 32]
    lo, hi = tr.ratio_interval(negative, cold, 200)
    ratio = np.median(negative) / np.median([10, 12, 14, 16, 18, 20, 22, 24, 26, 201])
    assert lo <= ratio <= hi and lo < hi
    assert tr.ratio_interval(negative, cold, 200) == (lo, hi)  # seeded: the report is stable
