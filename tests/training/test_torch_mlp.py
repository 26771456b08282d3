"""Training the pruner with torch: it learns rankings, fine-tunes, and exports what numpy runs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from service.engine.encoding import Encoder  # noqa: E402
from service.engine.history import History, Observation, TrialState  # noqa: E402
from service.engine.pruner import (  # noqa: E402
    PrunerModel,
    TrainingSet,
    featurize,
    make_training_set,
)
from service.engine.space import SearchSpace  # noqa: E402
from service.engine.stats import rank_goodness  # noqa: E402
from service.training import TrainOptions, evaluate, train_pruner  # noqa: E402
from service.training.torch_mlp import predict_torch  # noqa: E402


def synthetic(n: int, seed: int, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Rows in [0, 1]^d and a smooth, non-linear objective of them (higher is better)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    f = np.sin(3 * X[:, 0]) + 4 * (X[:, 1] - 0.5) ** 2 + X[:, 2] * X[:, 3] - X[:, 4]
    return X, f


def training_set(X: np.ndarray, f: np.ndarray, fingerprint: str = "fp") -> TrainingSet:
    return TrainingSet(X, rank_goodness(-f), fingerprint, (), len(f))


@pytest.fixture(scope="module")
def data():
    """The first 150 rows, the first 200 (150 + 50 new results) and 500 held out."""
    X, f = synthetic(700, seed=1)
    return training_set(X[:150], f[:150]), training_set(X[:200], f[:200]), \
        training_set(X[200:], f[200:])


@pytest.fixture(scope="module")
def first(data):
    return train_pruner(data[0], device="cpu", seed=0)


def test_learns_a_known_ranking_on_held_out_rows(first, data):
    assert evaluate(first, data[2])["spearman"] > 0.8


def test_training_is_deterministic_for_a_seed_on_cpu(first, data):
    again = train_pruner(data[0], device="cpu", seed=0)
    for a, b in zip(first.members, again.members, strict=True):
        for (Wa, ba), (Wb, bb) in zip(a, b, strict=True):
            np.testing.assert_array_equal(Wa, Wb)
            np.testing.assert_array_equal(ba, bb)
    other = train_pruner(data[0], device="cpu", seed=1)
    assert not np.array_equal(other.members[0][0][0], first.members[0][0][0])


def test_members_differ_so_the_spread_is_an_uncertainty(first, data):
    _, std = first.predict(data[2].X)
    assert std.mean() > 1e-3


def test_fine_tuning_starts_from_the_previous_model(first, data):
    grown = data[1]
    # Zero steps: a fine-tuned model is the previous one, a scratch model is a random init.
    warm0 = train_pruner(grown, first, device="cpu", steps=0)
    cold0 = train_pruner(grown, None, device="cpu", steps=0)
    held_out = data[2]
    np.testing.assert_allclose(warm0.predict(held_out.X)[0], first.predict(held_out.X)[0],
                               atol=1e-5)
    assert evaluate(warm0, held_out)["spearman"] > evaluate(cold0, held_out)["spearman"] + 0.3
    # Its default schedule is shorter than a scratch one and ends as good.
    options = TrainOptions()
    assert options.finetune_steps < options.steps
    warm = train_pruner(grown, first, device="cpu")
    cold = train_pruner(grown, None, device="cpu")
    assert evaluate(warm, held_out)["spearman"] > evaluate(cold, held_out)["spearman"] - 0.02


def test_fingerprint_mismatch_trains_from_scratch(first, data):
    other = TrainingSet(data[0].X, data[0].y, "another-layout", (), data[0].n_trials)
    from_mismatch = train_pruner(other, first, device="cpu", steps=0, seed=3)
    from_nothing = train_pruner(other, None, device="cpu", steps=0, seed=3)
    np.testing.assert_array_equal(from_mismatch.members[0][0][0], from_nothing.members[0][0][0])
    assert from_mismatch.fingerprint == "another-layout"


def test_numpy_inference_equals_the_torch_forward(first, data):
    mean, std = first.predict(data[2].X)
    per_member = predict_torch(first, data[2].X)
    np.testing.assert_allclose(mean, per_member.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(std, per_member.std(axis=0), atol=1e-5)


def test_bytes_round_trip_of_a_trained_model_predicts_identically(first, data):
    again = PrunerModel.from_bytes(first.to_bytes())
    np.testing.assert_array_equal(again.predict(data[2].X)[0], first.predict(data[2].X)[0])


def test_torch_threads_are_capped_and_restored(data):
    before = torch.get_num_threads()
    seen = []
    original = torch.set_num_threads
    try:
        torch.set_num_threads = lambda n: (seen.append(n), original(n))[1]
        train_pruner(data[1], device="cpu", steps=2, threads=1)
    finally:
        torch.set_num_threads = original
    assert seen[0] == 1 and torch.get_num_threads() == before


def test_refuses_too_few_rows_and_labels_outside_the_unit_interval():
    with pytest.raises(ValueError, match="at least 2"):
        train_pruner(TrainingSet(np.zeros((1, 3)), np.zeros(1), "fp", (), 1), device="cpu")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_pruner(TrainingSet(np.zeros((3, 3)), np.array([0, 2.0, 1]), "fp", (), 3),
                     device="cpu")


def test_learns_from_static_metrics_of_a_history():
    """End to end through the engine's features: the objective is a hidden function of a static
    metric, so only a model that reads the metric can rank configurations."""
    space = SearchSpace.from_dict({"params": [
        {"name": "op", "type": "categorical", "choices": ["a", "b", "c"]},
        {"name": "x", "type": "float", "low": 0.0, "high": 1.0}]})
    encoder = Encoder(space)
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(260)]
    proxy = 10 ** rng.uniform(2, 7, size=260)  # heavy-tailed, like a parameter count
    value = np.log10(proxy) + 0.1 * rng.normal(size=260)
    trials = tuple(Observation(i, c, TrialState.COMPLETE, float(v), {"params": float(p)})
                   for i, (c, v, p) in enumerate(zip(configs[:60], value, proxy, strict=False)))
    ts = make_training_set(encoder, History("maximize", trials[:30]), ("params",))
    model = train_pruner(ts, device="cpu")
    X = featurize(encoder, configs[60:], [{"params": float(p)} for p in proxy[60:]], ("params",))
    held_out = TrainingSet(X, rank_goodness(-value[60:]), ts.fingerprint, ("params",), 200)
    assert evaluate(model, held_out)["spearman"] > 0.9
    # More results move the metric's robust centre and scale; fine-tuning rewrites the first
    # layer so the previous model computes the same function before its first step.
    grown = make_training_set(encoder, History("maximize", trials), ("params",))
    warm0 = train_pruner(grown, model, device="cpu", steps=0)
    assert not np.allclose(warm0.x_mean, model.x_mean)
    np.testing.assert_allclose(warm0.predict(X)[0], model.predict(X)[0], atol=1e-5)
