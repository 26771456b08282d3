"""propose: determinism, distinct batches, exhaustion, the pruner's say, and quality on
toy problems against uniform random search."""

from __future__ import annotations

import numpy as np

from service.engine.history import History, Observation, ProposalInfo, TrialState, seen_keys
from service.engine.optimizer import Optimizer
from service.engine.propose import propose
from service.engine.space import SearchSpace, config_key, enumerate_configs
from tests.engine.conftest import SPACES, DistanceModel, make_history, toy_loss


def test_same_seed_and_history_give_the_same_decision() -> None:
    space = SPACES["mixed_conditional"]
    history = make_history(space, 25, running=2)
    a = propose(space, history, 3, seed=11)
    assert a == propose(space, history, 3, seed=11)
    assert a.proposals != propose(space, history, 3, seed=12).proposals


def test_a_batch_is_distinct_and_untried() -> None:
    space = SPACES["categorical_only"]
    history = make_history(space, 30, running=3)
    decision = propose(space, history, 8, seed=0)
    keys = [config_key(p.params) for p in decision.proposals]
    assert len(set(keys)) == 8 and not set(keys) & seen_keys(history)


def test_a_batch_spreads_out_on_a_continuous_space() -> None:
    """Pending-aware: the picks of one batch are not clumped around the incumbent."""
    space = SPACES["float_only"]
    history = make_history(space, 30)
    xs = np.array([[p.params["x"], np.log10(p.params["y"])]
                   for p in propose(space, history, 8, seed=0).proposals])
    gaps = [np.linalg.norm(xs[i] - xs[j]) for i in range(8) for j in range(i)]
    assert min(gaps) > 1e-3 and np.median(gaps) > 0.05


def test_initial_design_is_a_latin_hypercube_across_asks() -> None:
    space = SPACES["float_only"]
    opt = Optimizer(space, seed=5)
    xs = []
    for _ in range(4):  # one by one, as separate workers would ask
        s = opt.ask()
        assert s.proposal.strategy == "initial"
        xs.append(s.params["x"])
        opt.tell(s, 0.0)
    assert sorted(int(x * 4) for x in xs) == [0, 1, 2, 3]  # one point per stratum


def test_tiny_space_is_exhausted_then_the_best_is_repeated() -> None:
    space = SPACES["tiny"]
    opt = Optimizer(space, seed=0)
    keys = []
    for i in range(4):
        s = opt.ask()
        keys.append(config_key(s.params))
        opt.tell(s, float(i))
    assert len(set(keys)) == 4
    s = opt.ask()
    assert s.proposal.strategy == "repeat"
    assert config_key(s.params) == keys[0]


def test_exact_duplicates_are_avoided_until_a_small_grid_is_exhausted() -> None:
    space = SPACES["ordinal_grid"]
    size = len(enumerate_configs(space, 1000) or [])
    opt = Optimizer(space, seed=1)
    keys = set()
    for _ in range(size):
        s = opt.ask()
        keys.add(config_key(s.params))
        opt.tell(s, toy_loss(s.params))
    assert len(keys) == size


def test_every_proposal_records_why() -> None:
    space = SPACES["mixed_conditional"]
    opt = Optimizer(space, seed=0)
    for _ in range(30):
        s = opt.ask()
        assert s.proposal.strategy in {"initial", "random", "parzen", "local", "surrogate"}
        assert 0.0 <= s.proposal.exploration <= 1.0
        opt.tell(s, toy_loss(s.params))
    assert {s.proposal.strategy for s in [opt.ask()]} <= {"random", "parzen", "local",
                                                          "surrogate"}


def trusted_history(space: SearchSpace, model: DistanceModel, n: int = 30) -> History:
    """A history whose recorded predictions match the results: the pruner has earned trust."""
    rng = np.random.default_rng(0)
    trials = []
    encoder = model.encoder
    for i in range(n):
        params = space.sample(rng)
        goodness = float(model.predict(encoder.encode(params)[None, :])[0][0])
        trials.append(Observation(i, params, TrialState.COMPLETE, 1.0 - goodness,
                                  proposal=ProposalInfo("surrogate", 0.5, goodness)))
    return History("minimize", tuple(trials))


def test_a_trusted_pruner_discards_candidates_it_predicts_poor() -> None:
    space = SPACES["float_only"]
    model = DistanceModel(space, {"x": 0.9, "y": 5.0})
    history = trusted_history(space, model)
    decision = propose(space, history, 4, seed=0, pruner=model)  # type: ignore[arg-type]
    assert decision.pruned, "a trusted pruner must prune something"
    kept = [p.info.predicted for p in decision.proposals]
    assert all(v is not None for v in kept)
    assert min(kept) >= np.median([c.predicted for c in decision.pruned])  # type: ignore[type-var]


def test_an_untrusted_pruner_prunes_nothing_but_still_records_predictions() -> None:
    space = SPACES["float_only"]
    model = DistanceModel(space, {"x": 0.9, "y": 5.0})
    history = make_history(space, 30)  # no predictions recorded: trust unknown
    decision = propose(space, history, 3, seed=0, pruner=model)  # type: ignore[arg-type]
    assert decision.pruned == ()
    assert all(p.info.predicted is not None for p in decision.proposals)
    off = propose(space, history, 3, seed=0, pruner=model,  # type: ignore[arg-type]
                  options={"pruner": False})  # type: ignore[arg-type]
    assert all(p.info.predicted is None for p in off.proposals)


def test_a_pruner_with_static_metrics_gets_them_from_metrics_fn() -> None:
    space = SPACES["float_only"]
    model = DistanceModel(space, {"x": 0.9, "y": 5.0}, metric_names=("params",))
    calls = []

    def metrics_fn(configs):
        calls.append(len(configs))
        return [{"params": 1.0} for _ in configs]

    history = make_history(space, 20)
    without = propose(space, history, 1, seed=0, pruner=model)  # type: ignore[arg-type]
    assert without.proposals[0].info.predicted is None  # cannot score without metrics
    with_fn = propose(space, history, 1, seed=0, pruner=model,  # type: ignore[arg-type]
                      metrics_fn=metrics_fn)
    assert calls and with_fn.proposals[0].info.predicted is not None


def infeasible_share(engine: bool, seed: int, n: int = 50) -> float:
    """Toy problem: x > 0.6 cannot train. Share of infeasible proposals after 15 trials."""
    space = SPACES["float_only"]
    opt = Optimizer(space, seed=seed)
    rng = np.random.default_rng(seed)
    bad = 0
    for i in range(n):
        params = opt.ask().params if engine else space.sample(rng)
        infeasible = params["x"] > 0.6
        if engine:
            number = len(opt.history.trials) - 1
            if infeasible:
                opt.tell(number, None, state="infeasible")
            else:
                opt.tell(number, abs(params["x"] - 0.4) + abs(np.log10(params["y"])))
        bad += infeasible and i >= 15
    return bad / (n - 15)


def test_infeasible_region_is_avoided_more_than_by_random_search() -> None:
    engine = np.mean([infeasible_share(True, s) for s in range(3)])
    random = np.mean([infeasible_share(False, s) for s in range(3)])
    assert engine < 0.5 * random


def smooth_loss(p: dict) -> float:
    """A smooth conditional toy: every param matters a little, no deceptive branch."""
    loss = (p["x"] - 1.0) ** 2 / 25 + (np.log2(p["n"]) - 3) ** 2 / 36
    loss += {"a": 0.0, "b": 0.3, "c": 0.6}[p["kind"]]
    if "a_rate" in p:
        loss += 0.3 * (np.log10(p["a_rate"]) + 1) ** 2 / 9
    if "b_depth" in p:
        loss += 0.1 * (p["b_depth"] - 2) ** 2
    return float(loss)


def test_never_worse_than_random_search_on_a_toy_function() -> None:
    space = SPACES["mixed_conditional"]
    engine_best, random_best = [], []
    for seed in range(4):
        opt = Optimizer(space, seed=seed)
        for _ in range(40):
            s = opt.ask()
            opt.tell(s, smooth_loss(s.params))
        engine_best.append(opt.best().value)  # type: ignore[union-attr]
        rng = np.random.default_rng(seed)
        random_best.append(min(smooth_loss(space.sample(rng)) for _ in range(40)))
    assert np.median(engine_best) < np.median(random_best)
    assert max(engine_best) <= max(random_best)


def test_an_untrusted_pruner_does_not_change_what_is_proposed() -> None:
    """The engine is never worse than its strategies alone: until the pruner earns trust, its
    predictions are recorded but steer nothing (here a model that is confidently wrong)."""
    space = SPACES["ordinal_grid"]
    history = make_history(space, 20)
    wrong = DistanceModel(space, {"lr": 1.0, "width": 16, "depth": 3})
    with_model = propose(space, history, 4, seed=3, pruner=wrong)  # type: ignore[arg-type]
    without = propose(space, history, 4, seed=3)
    assert [p.params for p in with_model.proposals] == [p.params for p in without.proposals]
