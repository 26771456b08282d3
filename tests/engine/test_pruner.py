"""The pruner's numpy side: features, labels, the exported model, trust and the prune decision."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from service.engine.encoding import Encoder
from service.engine.history import (
    History,
    Observation,
    ProposalInfo,
    PrunedCandidate,
    TrialState,
)
from service.engine.pruner import (
    FEATURE_CLIP,
    PrunerModel,
    feature_fingerprint,
    featurize,
    fit_scaling,
    make_training_set,
    standardize,
)
from service.engine.pruning import prune_mask
from service.engine.space import SearchSpace
from service.engine.stats import rank_goodness, spearman
from service.engine.trust import measure_trust

SPACE = SearchSpace.from_dict({"params": [
    {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
    {"name": "op", "type": "categorical", "choices": ["conv", "pool", "skip"]},
]})
ENCODER = Encoder(SPACE)
METRICS = ("params", "latency")


def history_of(values, direction="minimize", states=None, predicted=None, metrics=None):
    trials = []
    for i, value in enumerate(values):
        state = states[i] if states else TrialState.COMPLETE
        info = ProposalInfo("random", 0.5, None if predicted is None else predicted[i])
        trials.append(Observation(i, {"x": i / max(1, len(values)), "op": "conv"}, state,
                                  value if state is TrialState.COMPLETE else None,
                                  metrics=(metrics[i] if metrics else {}), proposal=info))
    return History(direction, tuple(trials))


def tiny_model(n_features: int, seed: int = 0, members: int = 3) -> PrunerModel:
    rng = np.random.default_rng(seed)
    sizes = [n_features, 8, 8, 1]
    layers = tuple(
        tuple((rng.normal(size=(a, b)).astype(np.float32),
               rng.normal(size=b).astype(np.float32))
              for a, b in itertools.pairwise(sizes))
        for _ in range(members))
    return PrunerModel(layers, np.full(n_features, 0.5), np.full(n_features, 0.5), "fp",
                       (), 12)


# --- features --------------------------------------------------------------------------------

def test_featurize_appends_signed_log_metrics_and_missing_bits():
    configs = [{"x": 0.5, "op": "pool"}, {"x": 0.0, "op": "skip"}, {"x": 1.0, "op": "conv"}]
    metrics = [{"params": 1e6, "latency": -3.0}, {"params": 10.0}, {}]
    X = featurize(ENCODER, configs, metrics, METRICS)
    assert X.shape == (3, ENCODER.dim + 2 * len(METRICS))
    np.testing.assert_allclose(X[:, :ENCODER.dim], ENCODER.encode_many(configs))
    values, missing = X[:, ENCODER.dim:ENCODER.dim + 2], X[:, ENCODER.dim + 2:]
    np.testing.assert_allclose(values[0], [np.log1p(1e6), -np.log1p(3.0)])
    assert values[1, 0] == pytest.approx(np.log1p(10.0)) and np.isnan(values[1, 1])
    assert np.isnan(values[2]).all()
    np.testing.assert_array_equal(missing, [[0, 0], [0, 1], [1, 1]])


def test_featurize_without_metrics_marks_every_metric_missing():
    X = featurize(ENCODER, [{"x": 0.5, "op": "pool"}], None, METRICS)
    assert np.isnan(X[0, ENCODER.dim:ENCODER.dim + 2]).all()
    np.testing.assert_array_equal(X[0, ENCODER.dim + 2:], [1, 1])
    assert featurize(ENCODER, [{"x": 0.5, "op": "pool"}], None, ()).shape == (1, ENCODER.dim)


def test_featurize_refuses_metrics_of_another_length():
    with pytest.raises(ValueError, match="len\\(metrics\\) == len\\(configs\\)"):
        featurize(ENCODER, [{"x": 0.5, "op": "pool"}], [{}, {}], METRICS)


def test_feature_fingerprint_follows_layout_and_metric_names():
    base = feature_fingerprint(ENCODER, METRICS)
    assert base == feature_fingerprint(Encoder(SPACE), list(METRICS))
    assert base != feature_fingerprint(ENCODER, ("latency", "params"))
    assert base != feature_fingerprint(ENCODER, ())
    other = SearchSpace.from_dict({"params": [{"name": "x", "type": "float", "low": 0, "high": 2}]})
    assert base != feature_fingerprint(Encoder(other), METRICS)


def test_scaling_is_robust_to_sentinels_and_maps_missing_to_the_centre():
    column = np.concatenate([np.linspace(-33.0, -32.0, 50), [-1e8, -np.inf, np.nan]])
    X = np.stack([np.full(column.size, 1.0), column, np.isnan(column).astype(float)], axis=1)
    center, scale = fit_scaling(X, n_metrics=1)
    assert center[0] == 0.5 and scale[0] == 0.5 and center[2] == 0.5
    assert -33.0 < center[1] < -32.0 and scale[1] < 1.0  # the -1e8 sentinel did not swamp it
    Z = standardize(X, center, scale)
    assert np.abs(Z).max() <= FEATURE_CLIP
    assert Z[-1, 1] == 0.0 and Z[-2, 1] == -FEATURE_CLIP and Z[-3, 1] == -FEATURE_CLIP
    assert spearman(Z[:50, 1], column[:50]) == pytest.approx(1.0)


# --- labels ----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(20))
def test_the_sorted_labels_are_the_labels_sorted_bit_for_bit(seed: int) -> None:
    from service.engine.stats import sorted_rank_goodness

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 60))
    losses = rng.choice([-1.0, -0.0, 0.0, 0.5, 2.0], n) if seed % 2 else rng.normal(size=n)
    expected = np.sort(rank_goodness(losses))
    got = sorted_rank_goodness(losses[np.argsort(losses, kind="stable")])
    assert got.tobytes() == expected.tobytes()


def test_rank_goodness_gives_best_one_worst_zero_and_ties_a_shared_rank():
    np.testing.assert_allclose(rank_goodness(np.array([0.3, 0.1, 0.9, 0.1])),
                               [1 / 3, 5 / 6, 0.0, 5 / 6])
    assert rank_goodness(np.array([1.0])).tolist() == [0.5]


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_training_set_ranks_by_direction_and_puts_infeasible_last(direction):
    states = [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.INFEASIBLE,
              TrialState.FAILED, TrialState.RUNNING, TrialState.COMPLETE]
    metrics = [{"params": 100.0}, {"params": 200.0, "latency": 1.0}, {}, {}, {}, {}]
    history = history_of([3.0, 1.0, None, None, None, 2.0], direction, states, metrics=metrics)
    history = History(direction, history.trials,
                      (PrunedCandidate({"x": 0.9, "op": "skip"}, 0.01),))
    ts = make_training_set(ENCODER, history, METRICS)
    assert ts.n_trials == 4 and ts.X.shape == (4, ENCODER.dim + 4)
    expected = [0.0, 1.0, 0.0, 0.5] if direction == "minimize" else [1.0, 0.0, 0.0, 0.5]
    np.testing.assert_allclose(ts.y, expected)  # trials 0, 1, 2 (infeasible), 5
    assert ts.fingerprint == feature_fingerprint(ENCODER, METRICS)
    assert ts.metric_names == METRICS
    assert ts.X[0, ENCODER.dim] == pytest.approx(np.log1p(100.0))


# --- the exported model ----------------------------------------------------------------------

def test_model_round_trips_through_bytes_without_pickle():
    model = tiny_model(ENCODER.dim + 4)
    X = featurize(ENCODER, [SPACE.sample(np.random.default_rng(i)) for i in range(20)],
                  [{"params": float(i)} for i in range(20)], METRICS)
    data = model.to_bytes()
    again = PrunerModel.from_bytes(data)
    for a, b in zip(model.predict(X), again.predict(X), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (again.fingerprint, again.metric_names, again.n_train) == ("fp", (), 12)
    np.load(__import__("io").BytesIO(data), allow_pickle=False)  # a plain npz archive


def test_predict_returns_goodness_in_unit_interval_with_ensemble_spread():
    model = tiny_model(ENCODER.dim)
    X = ENCODER.encode_many([SPACE.sample(np.random.default_rng(i)) for i in range(30)])
    mean, std = model.predict(X)
    assert mean.shape == std.shape == (30,)
    assert ((mean >= 0) & (mean <= 1)).all() and (std > 0).any()


def test_predict_names_the_expected_width():
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        tiny_model(4).predict(np.zeros((2, 5)))


def test_the_engine_side_never_imports_torch():
    code = ("import sys, service.engine.pruner, service.engine.propose; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- trust and pruning -----------------------------------------------------------------------

def test_spearman_matches_known_values():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(a, a ** 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.ones(5)) == 0.0
    assert spearman(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0, 4.0])) == \
        pytest.approx(0.9486833, abs=1e-6)


def test_trust_is_none_until_enough_trials_had_a_prediction():
    values = list(range(10))
    predicted = [None] * 5 + [0.1 * i for i in range(5)]
    assert measure_trust(history_of(values, predicted=predicted)) is None


def test_trust_is_the_rank_correlation_of_predictions_with_results():
    values = [float(v) for v in range(12)]  # minimize: lower trial numbers are better
    good = [1.0 - 0.05 * i for i in range(12)]
    assert measure_trust(history_of(values, predicted=good)) == pytest.approx(1.0)
    bad = [0.05 * i for i in range(12)]
    assert measure_trust(history_of(values, predicted=bad)) == pytest.approx(-1.0)
    assert measure_trust(history_of(values, "maximize", predicted=bad)) == pytest.approx(1.0)


def test_trust_uses_only_the_most_recent_window():
    values = [float(v) for v in range(30)]
    # The first 20 predictions were wrong, the last 10 right.
    predicted = [0.05 * i for i in range(20)] + [1.0 - 0.05 * i for i in range(10)]
    history = history_of(values, predicted=predicted)
    assert measure_trust(history, window=10) == pytest.approx(1.0)
    assert measure_trust(history, window=30) < 0


def test_trust_counts_infeasible_trials_as_worst():
    states = [TrialState.COMPLETE] * 6 + [TrialState.INFEASIBLE] * 2
    values = [float(v) for v in range(6)] + [None, None]
    predicted = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.1, 0.1]
    assert measure_trust(history_of(values, states=states, predicted=predicted)) > 0.9


def observed(n=40):
    return history_of([float(v) for v in range(n)])


@pytest.mark.parametrize("trust", [None, -0.5, 0.0, 0.2])
def test_prune_mask_keeps_everything_at_low_trust(trust):
    predicted = np.linspace(0.0, 1.0, 50)
    assert prune_mask(predicted, observed(), trust, 0.5).all()


def test_prune_mask_keeps_everything_while_history_is_short():
    assert prune_mask(np.linspace(0, 1, 20), observed(5), 0.9, 0.5).all()


def test_prune_mask_discards_below_the_trust_scaled_quantile():
    predicted = np.linspace(0.0, 1.0, 101)
    full = prune_mask(predicted, observed(), 0.9, 0.5)
    assert not full[:45].any() and full[55:].all()
    half = prune_mask(predicted, observed(), 0.4, 0.5)  # half the say: the 0.25 quantile
    assert half.sum() > full.sum()
    assert not half[:20].any() and half[30:].all()


def test_prune_mask_never_empties_the_pool_and_keeps_the_best_predicted():
    predicted = np.array([0.01, 0.03, 0.02, 0.0, 0.04, 0.05, 0.01, 0.02])
    keep = prune_mask(predicted, observed(), 1.0, 0.9)
    assert keep.sum() == 2 and keep[5] and keep[4]
    single = prune_mask(np.array([0.0]), observed(), 1.0, 0.9)
    assert single.tolist() == [True]


def test_prune_mask_is_optimistic_with_spread_and_keeps_nan():
    predicted = np.array([0.2, 0.2, np.nan, 0.9])
    assert prune_mask(predicted, observed(), 1.0, 0.5).tolist() == [False, False, True, True]
    keep = prune_mask(predicted, observed(), 1.0, 0.5, std=np.array([0.4, 0.0, 0.0, 0.0]))
    assert keep.tolist() == [True, False, True, True]


def test_prune_mask_refuses_a_quantile_outside_the_unit_interval():
    with pytest.raises(ValueError, match="0 <= quantile <= 1"):
        prune_mask(np.zeros(3), observed(), 0.9, 1.5)
