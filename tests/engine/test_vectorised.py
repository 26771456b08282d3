"""The engine's batched helpers (issue 16: per-candidate work in numpy) against their scalar
definitions: the same positions, the same domains, the same activity rules."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.encoding import (
    encoder_for,
    from_unit,
    from_units,
    neighbours,
    ordinal_positions,
    to_unit,
    to_units,
)
from service.engine.history import SeenOverlay, seen_keys
from service.engine.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    SearchSpace,
    config_key,
)
from service.engine.strategies.parzen import DensityRatio
from tests.engine.conftest import SPACES, make_history

NUMERIC = [FloatParam("x", -5.0, 5.0), FloatParam("lr", 1e-5, 1e-1, log=True),
           FloatParam("q", 0.0, 1.0, step=0.1), IntParam("n", 1, 64, log=True),
           IntParam("d", 0, 30, step=3), FloatParam("flat", 2.0, 2.0)]


@pytest.mark.parametrize("param", NUMERIC, ids=lambda p: p.name)
def test_unit_maps_agree_with_the_scalar_ones(param) -> None:
    rng = np.random.default_rng(0)
    values = np.array([param.sample(rng) for _ in range(300)], dtype=float)
    np.testing.assert_allclose(to_units(param, values), [to_unit(param, v) for v in values],
                               rtol=0, atol=1e-12)
    units = np.concatenate([rng.uniform(-0.2, 1.2, 300), [0.0, 1.0, 0.5]])
    batched = from_units(param, units)
    scalar = np.array([from_unit(param, u) for u in units], dtype=float)
    # the same grid point, up to a rounding tie decided by the last bit of a logarithm
    assert np.mean(np.isclose(batched, scalar, rtol=1e-9, atol=1e-12)) > 0.99
    assert ((batched >= param.low) & (batched <= param.high)).all()
    if isinstance(param, IntParam):
        assert (((batched - param.low) % param.step) == 0).all()


@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_neighbours_are_valid_moved_and_follow_activity(space_name: str) -> None:
    space = SPACES[space_name]
    rng = np.random.default_rng(1)
    centres = [space.sample(rng) for _ in range(40)]
    steps = rng.uniform(0.01, 0.6, size=len(centres))
    moved = neighbours(encoder_for(space), centres, steps, np.random.default_rng(2))
    assert len(moved) == len(centres)
    for centre, config in zip(centres, moved, strict=True):
        assert space.validate_config(config) == config  # valid, activity included
        assert config != centre  # at least one value always changes
        assert list(config) == [p.name for p in space.params if p.name in config]  # space order


def test_small_steps_stay_near_and_large_steps_go_further() -> None:
    space = SPACES["float_only"]
    encoder = encoder_for(space)
    centre = {"x": 0.5, "y": 0.1}
    rng = np.random.default_rng(3)

    def distances(step: float) -> np.ndarray:
        moved = neighbours(encoder, [centre] * 200, [step] * 200, rng)
        return np.linalg.norm(encoder.encode_many(moved) - encoder.encode(centre), axis=1)

    small, large = distances(0.02), distances(0.3)
    assert small.max() <= 0.02 + 1e-9  # a step is at most its length (clipping only shortens)
    assert np.median(large) > 5 * np.median(small)


def test_an_ordinal_choice_moves_to_the_nearest_position_and_a_nominal_one_rarely() -> None:
    space = SearchSpace.from_dict({"params": [
        {"name": "lr", "type": "categorical", "choices": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]},
        {"name": "act", "type": "categorical", "choices": ["relu", "gelu", "tanh"]},
        {"name": "x", "type": "float", "low": 0.0, "high": 1.0}]})
    centre = {"lr": 1e-2, "act": "relu", "x": 0.5}
    moved = neighbours(encoder_for(space), [centre] * 400, [0.05] * 400,
                       np.random.default_rng(4))
    lr = space["lr"]
    assert isinstance(lr, CategoricalParam) and ordinal_positions(lr) is not None
    assert {m["lr"] for m in moved} <= {1e-3, 1e-2, 1e-1}  # never two notches at this step
    flips = np.mean([m["act"] != "relu" for m in moved])
    assert 0.0 < flips < 0.2  # probability min(1, 2|d|) with |d| <= 0.05


def test_a_moved_parent_activates_and_drops_children() -> None:
    space = SPACES["mixed_conditional"]
    centre = {"x": 0.0, "n": 8, "kind": "a", "a_rate": 0.01}
    moved = neighbours(encoder_for(space), [centre] * 300, [1.5] * 300, np.random.default_rng(5))
    kinds = {m["kind"] for m in moved}
    assert kinds == {"a", "b", "c"}
    for m in moved:
        assert ("a_rate" in m) == (m["kind"] == "a") and ("b_depth" in m) == (m["kind"] == "b")


def test_encode_many_marks_inactive_params_and_matches_one_at_a_time() -> None:
    space = SPACES["mixed_conditional"]
    encoder = encoder_for(space)
    configs = [space.sample(np.random.default_rng(i)) for i in range(30)]
    batch = encoder.encode_many(configs)
    np.testing.assert_array_equal(batch, np.stack([encoder.encode(c) for c in configs]))
    bit, where = encoder.active_bit["a_rate"], encoder.slices["a_rate"].start
    for config, row in zip(configs, batch, strict=True):
        assert row[bit] == (1.0 if "a_rate" in config else 0.0)
        if "a_rate" not in config:
            assert row[where] == 0.5
    assert encoder.encode_many([]).shape == (0, encoder.dim)


@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_encode_many_matches_the_scalar_definition(space_name: str) -> None:
    """Each row: a categorical's one-hot position, a number's ``to_unit``, 0.5 for an inactive
    number, and the active bit of a conditional param, however the pool mixes activity."""
    space = SPACES[space_name]
    encoder = encoder_for(space)
    configs = [space.sample(np.random.default_rng(i)) for i in range(40)]
    for configs_ in (configs, [c for c in configs if len(c) == len(space.params)][:5],
                     [c for c in configs if len(c) < len(space.params)][:5]):
        expected = np.zeros((len(configs_), encoder.dim))
        for row, config in zip(expected, configs_, strict=True):
            for param in space.params:
                where = encoder.slices[param.name]
                if param.name in encoder.active_bit:
                    row[encoder.active_bit[param.name]] = float(param.name in config)
                if isinstance(param, CategoricalParam):
                    if param.name in config:
                        row[where.start + param.index(config[param.name])] = 1.0
                else:
                    row[where.start] = (to_unit(param, config[param.name])
                                        if param.name in config else 0.5)
        np.testing.assert_array_equal(encoder.encode_many(configs_), expected)


def test_indices_agree_with_index_whatever_the_value_types() -> None:
    """True is not 1, "1" is not 1, 1.0 is 1: the batched lookup keeps ``index``'s rules."""
    param = CategoricalParam("c", ("1", 1, True, 2.5, "relu", False, 0))
    values = ["1", 1, 1.0, True, 0, False, "relu", 2.5, np.int64(1), np.float64(2.5), 0.0]
    assert param.indices(values) == [param.index(v) for v in values] == [
        0, 1, 1, 2, 6, 5, 4, 3, 1, 3, 6]
    assert param.indices(iter(["relu", True])) == [4, 2]
    for absent in (["gelu"], ["relu", 2], [[1]], ["relu", {"a": 1}]):
        with pytest.raises(ValueError):
            param.indices(absent)


@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_parzen_draws_are_valid_configurations_in_space_order(space_name: str) -> None:
    space = SPACES[space_name]
    ratio = DensityRatio(space, make_history(space, 25), exploration=0.5)
    drawn = ratio.sample(200, np.random.default_rng(6))
    assert len(drawn) == 200
    for config in drawn:
        assert space.validate_config(config) == config
        assert list(config) == [p.name for p in space.params if p.name in config]


def test_parzen_draws_concentrate_where_the_good_trials_are() -> None:
    space = SPACES["float_only"]
    history = make_history(space, 60)
    good = sorted(history.complete, key=lambda t: t.value)[:5]
    ratio = DensityRatio(space, history, exploration=0.0)
    encoder = encoder_for(space)
    drawn = encoder.encode_many(ratio.sample(300, np.random.default_rng(7)))
    centres = encoder.encode_many([t.params for t in good])
    uniform = encoder.encode_many([space.sample(np.random.default_rng(100 + i))
                                   for i in range(300)])

    def nearest(points: np.ndarray) -> float:
        return float(np.median(np.min(np.linalg.norm(
            points[:, None, :] - centres[None, :, :], axis=2), axis=1)))

    assert nearest(drawn) < 0.5 * nearest(uniform)


@pytest.mark.parametrize("value", [3, 3.0, 2.5, 1e-7 + 0.1, np.float32(0.25), np.int64(7),
                                   True, "conv", 2**60, 2**53, 2**53 + 1, -(2**53) - 1, -5,
                                   float("inf")])
def test_config_key_fast_paths_agree_with_the_general_rule(value) -> None:
    """The key canonicalises numbers through float and 12 significant digits, whatever the
    number's type; strings and booleans stay themselves."""
    (_name, key), = config_key({"v": value})
    if isinstance(value, bool | str):
        assert key is value
    else:
        number = float(value)
        assert key == (int(number) if number.is_integer() else float(f"{number:.12g}"))
        assert type(key) is (int if number.is_integer() else float)


def test_an_ask_adds_its_picks_over_the_history_keys_without_touching_them() -> None:
    space = SPACES["float_only"]
    history = make_history(space, 30)
    base = seen_keys(history)
    assert seen_keys(history) is base  # computed once per History object
    assert len(base) == len({config_key(t.params) for t in history.trials})
    overlay = SeenOverlay(base)
    assert overlay.frozen() is base
    pick = {"x": 0.123, "y": 4.56}
    overlay.add(config_key(pick))
    overlay.add(next(iter(base)))  # already there: not duplicated
    assert config_key(pick) in overlay and config_key(pick) not in base
    assert len(overlay) == len(base) + 1 and overlay.frozen() == base | {config_key(pick)}
