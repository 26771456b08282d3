"""The engine's own models: the GP behind the surrogate, and the local search's replayed state."""

from __future__ import annotations

import math

import numpy as np
from scipy import special
from scipy.linalg import solve_triangular

from service.engine import gp, stats
from service.engine.encoding import Encoder
from service.engine.history import History, Observation, ProposalInfo, TrialState
from service.engine.pruner import make_training_set
from service.engine.pruning import Scorer
from service.engine.space import SearchSpace
from service.engine.strategies import local, surrogate
from service.engine.strategies.base import Context
from service.engine.strategies.parzen import DensityRatio
from service.training import train_pruner
from tests.engine.conftest import SPACES, make_history
from tests.engine.test_cells import CELL


def test_gp_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((20, 3))
    y = stats.normal_scores(np.sin(4 * X[:, 0]) + X[:, 1])
    theta = np.array([-0.5, 0.2, 0.1, 0.3, -4.0])

    def objective(th: np.ndarray) -> float:
        lengthscales, signal, noise = np.exp(th[:-2]), np.exp(th[-2]), np.exp(th[-1])
        K = signal * gp._matern(X, X, lengthscales)[0] + (noise + 1e-6) * np.eye(20)
        chol = np.linalg.cholesky(K)
        value = -0.5 * y @ np.linalg.solve(K, y) - np.log(np.diag(chol)).sum()
        mu, sd = gp.LENGTHSCALE_PRIOR
        value -= 0.5 * (((th[:-2] - mu) / sd) ** 2).sum() + 0.5 * th[-2] ** 2
        mu, sd = gp.NOISE_PRIOR
        return float(value - 0.5 * ((th[-1] - mu) / sd) ** 2)

    numeric = [(objective(theta + e) - objective(theta - e)) / 2e-6 for e in np.eye(5) * 1e-6]
    np.testing.assert_allclose(gp._gradient(theta, X, X * X, y), numeric, rtol=1e-4, atol=1e-4)


def test_the_in_place_kernel_is_the_kernel_bit_for_bit() -> None:
    """Predictions use the in-place kernel, hyperparameter fits the one with its gradient
    factor: they must agree exactly, or proposals would change with the code path."""
    rng = np.random.default_rng(5)
    for n, m, d in [(400, 300, 12), (1, 7, 3), (60, 60, 20)]:
        X, Z, scales = rng.random((n, d)), rng.random((m, d)), rng.random(d) + 0.05
        assert np.array_equal(gp._matern_kernel(X, Z, scales), gp._matern(X, Z, scales)[0])
    X = rng.random((30, 4))  # the diagonal: distances that cancel to zero (or just below)
    assert np.array_equal(gp._matern_kernel(X, X, np.ones(4)), gp._matern(X, X, np.ones(4))[0])


def test_gp_learns_which_input_matters_and_ranks_held_out_points() -> None:
    rng = np.random.default_rng(1)
    X = rng.random((40, 4))
    loss = (X[:, 0] - 0.3) ** 2
    model = gp.fit(X, stats.normal_scores(loss))
    assert model.lengthscales[0] < model.lengthscales[1:].min()
    test = rng.random((200, 4))
    mean, std = model.predict(test)
    truth = (test[:, 0] - 0.3) ** 2
    rank_corr = np.corrcoef(np.argsort(np.argsort(mean)), np.argsort(np.argsort(truth)))[0, 1]
    assert rank_corr > 0.9
    assert model.predict(X[:1])[1][0] < std.mean()  # surer at a training point


def test_gp_conditioned_on_more_rows_is_the_fit_on_all_of_them() -> None:
    rng = np.random.default_rng(2)
    X = rng.random((30, 3))
    y = stats.normal_scores((X[:, 0] - 0.4) ** 2 + 0.1 * X[:, 2])
    theta = gp.fit_hyperparameters(X, y, np.arange(3))
    extended = gp.fit(X[:24], y[:24], theta=theta).conditioned_on(X[24:], y[24:])
    whole = gp.fit(X, y, theta=theta)
    test = rng.random((50, 3))
    for got, want in zip(extended.predict(test), whole.predict(test), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


def test_a_kriging_believer_keeps_the_mean_and_collapses_the_uncertainty() -> None:
    rng = np.random.default_rng(3)
    X = rng.random((25, 2))
    model = gp.fit(X, stats.normal_scores((X[:, 0] - 0.5) ** 2))
    pending = np.array([[0.52, 0.5], [0.1, 0.9]])
    mean, std = model.predict(pending)
    believed = model.conditioned_on(pending, mean)
    mean_after, std_after = believed.predict(pending)
    np.testing.assert_allclose(mean_after, mean, atol=1e-3)
    assert (std_after < 0.5 * std).all()
    # a point far from the pending ones keeps its uncertainty
    far = np.array([[0.95, 0.05]])
    assert believed.predict(far)[1][0] > 0.9 * model.predict(far)[1][0]


def test_normal_scores_are_monotone_and_share_ties() -> None:
    scores = stats.normal_scores(np.array([3.0, 1.0, 2.0, 2.0, 1e9]))
    assert scores[1] < scores[2] == scores[3] < scores[0] < scores[4]
    assert scores[4] < 1.5  # a diverged run is just "the worst", not a million times worse


def test_magnitudes_are_kept_only_on_spaces_with_a_float() -> None:
    assert gp.keeps_magnitudes(SPACES["float_only"])
    assert gp.keeps_magnitudes(SPACES["mixed_conditional"])
    for grid in ("categorical_only", "ordinal_grid", "tiny"):
        assert not gp.keeps_magnitudes(SPACES[grid])
    stepped = SearchSpace.from_dict({"params": [
        {"name": "dropout", "type": "float", "low": 0.0, "high": 0.6, "step": 0.3},
        {"name": "units", "type": "int", "low": 16, "high": 512, "log": True}]})
    assert gp.keeps_magnitudes(stepped)  # a stepped float is still a quantity
    ints_and_numeric_choices = SearchSpace.from_dict({"params": [
        {"name": "lr", "type": "categorical", "choices": [1e-4, 1e-3, 0.5]},
        {"name": "units", "type": "int", "low": 16, "high": 512, "log": True}]})
    assert not gp.keeps_magnitudes(ints_and_numeric_choices)


def test_blended_targets_keep_the_ranks_and_add_the_magnitudes() -> None:
    losses = np.array([3.0, 1.0, 2.0, 2.0, 10.0, 1.5])
    normal = stats.normal_scores(losses)
    blended = gp.targets(SPACES["float_only"], normal, losses)
    np.testing.assert_array_equal(np.argsort(blended, kind="stable"),
                                  np.argsort(losses, kind="stable"))
    assert blended[2] == blended[3]  # ties stay tied
    # 10 is far worse than 3, and 3 a little worse than 2: the blend says so, the ranks do not
    assert (blended[4] - blended[0]) / (blended[0] - blended[2]) > \
        2 * (normal[4] - normal[0]) / (normal[0] - normal[2])
    rows = np.array([1, 4, 5])
    continuous = SPACES["float_only"]
    np.testing.assert_array_equal(gp.targets(continuous, normal[rows], losses, rows),
                                  gp.targets(continuous, normal, losses)[rows])
    same = np.full(4, 7.0)
    np.testing.assert_array_equal(gp.targets(continuous, stats.normal_scores(same), same),
                                  0.5 * stats.normal_scores(same))


def _ranking_after(space: SearchSpace, transform) -> np.ndarray:
    """The surrogate's GP ranking of a fixed pool after 20 trials told ``transform(toy loss)``."""
    rng = np.random.default_rng(5)
    configs = [space.sample(rng) for _ in range(20)]
    history = History("minimize", tuple(
        Observation(i, c, TrialState.COMPLETE, transform(_toy(c))) for i, c in enumerate(configs)))
    pool = [space.sample(rng) for _ in range(40)]
    return surrogate.gp_ranker(Encoder(space), history)(pool)


def _toy(config: dict) -> float:
    return sum((float(v) - 0.3) ** 2 for v in config.values())


def test_the_gp_reads_loss_magnitudes_on_spaces_with_a_float_only() -> None:
    """The same results under a monotone transform: on a grid of ints and choices the GP sees
    only their ranks, so its ranking is unchanged; with a float, stepped or not, the magnitudes
    move it."""
    def space_with(x: dict) -> SearchSpace:
        return SearchSpace.from_dict({"params": [
            {"name": "x", **x}, {"name": "y", "type": "int", "low": 0, "high": 10}]})

    grid = space_with({"type": "categorical", "choices": [i / 10 for i in range(11)]})
    stepped = space_with({"type": "float", "low": 0.0, "high": 1.0, "step": 0.1})
    continuous = space_with({"type": "float", "low": 0.0, "high": 1.0})
    cubed = lambda loss: loss ** 3  # noqa: E731 (strictly monotone: no two losses merge)
    np.testing.assert_array_equal(_ranking_after(grid, float), _ranking_after(grid, cubed))
    for space in (stepped, continuous):
        assert not np.allclose(_ranking_after(space, float), _ranking_after(space, cubed))


def local_history(outcomes: list[bool]) -> History:
    """A best-so-far trial, then local trials that improved (True) or not (False)."""
    space = SPACES["float_only"]
    trials = [Observation(0, {"x": 0.5, "y": 1.0}, TrialState.COMPLETE, 100.0,
                          proposal=ProposalInfo("initial", 1.0))]
    best = 100.0
    for i, improved in enumerate(outcomes, start=1):
        best = best - 1 if improved else best
        value = best if improved else 1000.0
        params = space.sample(np.random.default_rng(i))
        trials.append(Observation(i, params, TrialState.COMPLETE, value,
                                  proposal=ProposalInfo("local", 0.5)))
    return History("minimize", tuple(trials))


def test_log_expected_improvement_is_exact_far_into_the_tail() -> None:
    # Near the incumbent a confident GP puts z = (best - mean) / std far below 0, where EI's own
    # formula cancels (with the closed-form erf it drifted from about -4, negative in places).
    z = np.linspace(-3.0, 3.0, 61)
    plain = np.log(z * special.ndtr(z) + np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))
    np.testing.assert_allclose(gp._log_h(z), plain, rtol=1e-12)
    t = -np.geomspace(20.0, 1e4, 60)  # the asymptotic series pdf / z^2 (1 - 3/z^2 + 15/z^4 ...)
    series = 1 - 3 / t**2 + 15 / t**4 - 105 / t**6 + 945 / t**8 - 10395 / t**10
    expected = -0.5 * t * t - 0.5 * math.log(2 * math.pi) - 2 * np.log(-t) + np.log(series)
    np.testing.assert_allclose(gp._log_h(t), expected, rtol=1e-9)
    dense = np.linspace(-60.0, 6.0, 4001)
    assert np.all(np.diff(gp._log_h(dense)) > 0)  # EI grows with z: the ranking is never scrambled
    mean, std = np.array([0.3, 0.3, 2.0]), np.array([0.01, 0.02, 1e-6])
    log_ei = gp.log_expected_improvement(mean, std, best=0.2)
    np.testing.assert_allclose(log_ei, np.log(std) + gp._log_h((0.2 - mean) / std))
    assert np.isfinite(log_ei).all() and log_ei[1] > log_ei[0] > log_ei[2]
    far = -np.geomspace(1e6, 1e12, 200)  # where 1 + z * cdf / pdf rounds to 0: the asymptote
    np.testing.assert_allclose(gp._log_h(far), -0.5 * far * far - 0.5 * math.log(2 * math.pi)
                               - 2 * np.log(-far), rtol=1e-12)


def test_the_log_ei_gradient_matches_finite_differences() -> None:
    """``polish`` climbs this gradient: it must be log EI's, at points far from the data, next
    to them and on one of them (where the kernel's distance has no derivative of its own)."""
    rng = np.random.default_rng(3)
    X = rng.random((25, 4))
    model = gp.fit(X, stats.normal_scores(np.sin(3 * X[:, 0]) + X[:, 1] ** 2))
    best = float(model.y.min())
    points = np.vstack([rng.random((6, 4)), X[:2] + 1e-3, X[2:3]])
    values, gradient = model.log_expected_improvement_with_gradient(points, best)
    np.testing.assert_allclose(values, gp.log_expected_improvement(*model.predict(points), best),
                               rtol=1e-10)
    numeric = np.zeros_like(points)
    for j, e in enumerate(np.eye(4) * 1e-6):
        up, _ = model.log_expected_improvement_with_gradient(points + e, best)
        down, _ = model.log_expected_improvement_with_gradient(points - e, best)
        numeric[:, j] = (up - down) / 2e-6
    np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-4)


def test_the_gps_triangular_solve_is_scipys_bit_for_bit() -> None:
    """``GP._solve`` calls LAPACK as ``solve_triangular`` does, to skip its wrapper: any other
    order of operations would change proposals in the last bits, so it must be exactly scipy's,
    for a C-ordered factor (what ``fit`` builds) and a Fortran-ordered one."""
    rng = np.random.default_rng(5)
    model = gp.fit(rng.random((30, 3)), rng.standard_normal(30))
    b = rng.standard_normal((8, 30)).T
    for chol in (model.chol, np.asfortranarray(model.chol)):
        copy = gp.GP(model.X, model.y, model.alpha, chol, model.lengthscales, model.signal,
                     model.noise)
        for trans in (0, 1):
            expected = solve_triangular(chol, b, lower=True, trans=trans, check_finite=False)
            assert np.array_equal(copy._solve(b, trans), expected)


def test_polish_climbs_log_ei_along_numbers_only() -> None:
    """Polished candidates score at least as well as where they started (on a continuous space
    nothing is snapped away from the point reached), some move, all stay in the space with the
    same active params, and no categorical changes: the gradient only moves numbers."""
    space = SPACES["mixed_conditional"]
    rng = np.random.default_rng(4)
    configs = [space.sample(rng) for _ in range(12)]
    history = History("minimize", tuple(
        Observation(i, c, TrialState.COMPLETE, _toy({"x": c["x"] / 5}))
        for i, c in enumerate(configs)))
    ranker = surrogate.gp_ranker(Encoder(space), history)
    starts = [space.sample(rng) for _ in range(8)]
    polished = ranker.polish(starts)
    assert len(polished) == len(starts)
    for before, after in zip(starts, polished, strict=True):
        assert space.validate_config(after) == after
        assert after.keys() == before.keys()
        assert after["kind"] == before["kind"]
    assert any(after != before for before, after in zip(starts, polished, strict=True))
    floats = SPACES["float_only"]
    configs = [floats.sample(rng) for _ in range(10)]
    history = History("minimize", tuple(
        Observation(i, c, TrialState.COMPLETE, _toy(c)) for i, c in enumerate(configs)))
    ranker = surrogate.gp_ranker(Encoder(floats), history)
    starts = [floats.sample(rng) for _ in range(8)]
    polished = ranker.polish(starts)
    assert np.all(ranker(polished) >= ranker(starts) - 1e-9)
    assert np.sum(ranker(polished) > ranker(starts) + 1e-6) >= 4
    assert ranker.polish([]) == []


def test_local_step_grows_on_success_and_shrinks_on_stall() -> None:
    space = SPACES["float_only"]
    start = local.replay(space, local_history([])).step
    assert local.replay(space, local_history([True, True])).step > start
    stalled = local.replay(space, local_history([False] * local.patience(space)))
    assert stalled.step < start


def test_local_search_restarts_when_the_step_collapses() -> None:
    space = SPACES["float_only"]
    state = local.replay(space, local_history([False] * (local.patience(space) * 12)))
    assert state.restarts >= 1 and state.converged
    assert state.step >= local.STEP_MIN


def test_the_gp_ranks_the_first_pick_after_the_initial_design() -> None:
    """From ``GP_MIN_TRIALS`` (3) results the surrogate ranks by the GP's expected improvement;
    below it, by the Parzen ratio (a GP of two points is its prior)."""
    space = SPACES["float_only"]
    rng = np.random.default_rng(2)
    pool = [space.sample(rng) for _ in range(30)]
    for n, by_gp in ((2, False), (3, True), (4, True)):
        configs = [space.sample(rng) for _ in range(n)]
        history = History("minimize", tuple(
            Observation(i, c, TrialState.COMPLETE, _toy(c)) for i, c in enumerate(configs)))
        ratio = DensityRatio(space, history, 0.5)
        context = Context(Encoder(space))
        rank = surrogate.SurrogateStrategy._own_ranker(
            context, ratio, surrogate.SurrogateStrategy._model(context, history))
        gp_scores = surrogate.gp_ranker(Encoder(space), history)(pool)
        assert np.array_equal(rank(pool), gp_scores) is by_gp, n
        assert np.array_equal(rank(pool), ratio.score(pool)) is not by_gp, n


def test_a_shared_encoding_ranks_exactly_as_encoding_apart() -> None:
    """The surrogate encodes a batch once for the GP and the pruner (``encoded``): on spaces
    with conditional params, ordinal grids and cells, both must score exactly as when each
    encodes the batch itself, or sharing would change proposals."""
    spaces = [SPACES["mixed_conditional"], SPACES["ordinal_grid"], CELL]
    for space in spaces:
        encoder = Encoder(space)
        history = make_history(space, 40, seed=4)
        rank = surrogate.gp_ranker(encoder, history)
        scorer = Scorer(train_pruner(make_training_set(encoder, history, ()), device="cpu"),
                        encoder, None)
        rng = np.random.default_rng(6)
        pool = [space.sample(rng) for _ in range(90)]
        encoded = encoder.encode_many(pool)
        assert np.array_equal(rank(pool, encoded), rank(pool))
        for shared, apart in zip(scorer(pool, encoded), scorer(pool), strict=True):
            assert np.array_equal(shared, apart)
        # the check can fail: a wrong encoding changes both scores
        wrong = encoder.encode_many(pool[::-1])
        assert not np.array_equal(rank(pool, wrong), rank(pool))
        assert not np.array_equal(scorer(pool, wrong)[0], scorer(pool)[0])


def test_the_gp_features_are_built_once_per_encoder() -> None:
    first, other = Encoder(SPACES["mixed_conditional"]), Encoder(SPACES["mixed_conditional"])
    features = surrogate._features_of(first)
    assert surrogate._features_of(first) is features
    assert features.encoder is first
    assert surrogate._features_of(other) is not features
    assert surrogate._features_of(other).encoder is other
    configs = [SPACES["mixed_conditional"].sample(np.random.default_rng(i)) for i in range(5)]
    assert np.array_equal(features(configs), gp.Features(first)(configs))
