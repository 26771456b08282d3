"""Cell annotations: their validation, the structure features of hand-made cells, and that a
space without them encodes, fingerprints and proposes exactly as before."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.engine import gp
from service.engine.cells import CellGraph
from service.engine.encoding import Encoder
from service.engine.optimizer import Optimizer
from service.engine.pruner import PrunerModel, feature_fingerprint, featurize, fit_scaling
from service.engine.space import MAX_ENCODED_WIDTH, SearchSpace, SpaceError
from service.engine.strategies import STRATEGIES
from tests.engine.test_strategies import run

OPS = ["skip", "none", "conv3", "conv1", "pool"]
EDGES = [(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)]  # NAS-Bench-201's order


def nb201(cell: bool = True, **extra: Any) -> dict[str, Any]:
    return {"params": [
        {"name": f"e{a}{b}", "type": "categorical", "choices": list(OPS),
         **({"cell": {"name": "c", "edge": [a, b], "zero": "none", **extra}} if cell else {})}
        for a, b in EDGES]}


CELL = SearchSpace.from_dict(nb201())
PLAIN = SearchSpace.from_dict(nb201(cell=False))


def config(*ops: str) -> dict[str, str]:
    return {f"e{a}{b}": op for (a, b), op in zip(EDGES, ops, strict=True)}


def blocks(row: np.ndarray) -> dict[str, list[float]]:
    """A feature row of the NB201 cell split into its four kinds, by operation name."""
    k = len(OPS)
    return {"share": row[:k].tolist(), "pure": row[k:2 * k].tolist(),
            "on_live": row[2 * k:3 * k].tolist(), "live": row[3 * k:].tolist()}


# --- features of hand-made cells ---------------------------------------------------------------

def test_all_skip_cell_has_every_path_pure_and_live() -> None:
    got = blocks(Encoder(CELL).structure([config(*["skip"] * 6)])[0])
    assert got["share"] == [1, 0, 0, 0, 0]
    assert got["pure"] == [1, 0, 0, 0, 0]  # the 4 paths 1-4, 1-2-4, 1-3-4, 1-2-3-4
    # skips carried: 1 + 2 + 2 + 3 = 8 over 4 live paths, over the longest path's 3 edges
    assert got["on_live"] == pytest.approx([8 / 12, 0, 0, 0, 0])
    assert got["live"] == [1.0]


def test_cell_of_zeros_is_dead() -> None:
    got = blocks(Encoder(CELL).structure([config(*["none"] * 6)])[0])
    assert got["share"] == [0, 1, 0, 0, 0] and got["pure"] == [0, 1, 0, 0, 0]
    assert got["on_live"] == [0, 0, 0, 0, 0] and got["live"] == [0.0]


def test_mixed_cell_counts_operations_on_its_live_paths() -> None:
    # 1-2 conv3, 1-3 none, 1-4 skip, 2-3 pool, 2-4 conv3, 3-4 conv1: live paths are
    # 1-4 (skip), 1-2-4 (conv3, conv3) and 1-2-3-4 (conv3, pool, conv1); 1-3-4 goes through none
    got = blocks(Encoder(CELL).structure([config("conv3", "none", "skip", "pool", "conv3",
                                                 "conv1")])[0])
    assert got["share"] == pytest.approx([1 / 6, 1 / 6, 2 / 6, 1 / 6, 1 / 6])
    assert got["pure"] == pytest.approx([1 / 4, 0, 1 / 4, 0, 0])  # 1-4 skip; 1-2-4 conv3
    assert got["on_live"] == pytest.approx(np.array([1, 0, 3, 1, 1]) / (3 * 3))
    assert got["live"] == pytest.approx([3 / 4])


def test_an_inactive_edge_connects_nothing() -> None:
    spec = nb201()
    spec["params"].insert(0, {"name": "shortcut", "type": "categorical", "choices": [True, False]})
    spec["params"][3]["condition"] = {"parent": "shortcut", "values": [True]}  # edge 1 -> 4
    space = SearchSpace.from_dict(spec)
    off = {**config(*["skip"] * 6), "shortcut": False}
    del off["e14"]
    got = blocks(Encoder(space).structure([off])[0])
    assert got["share"] == pytest.approx([5 / 6, 0, 0, 0, 0])
    assert got["pure"] == pytest.approx([3 / 4, 0, 0, 0, 0])
    assert got["live"] == pytest.approx([3 / 4])


def test_two_cells_have_one_block_each_in_space_order() -> None:
    spec = nb201()
    for p in nb201()["params"]:
        spec["params"].append({**p, "name": "r" + p["name"], "choices": ["none", "skip"],
                               "cell": {**p["cell"], "name": "reduce"}})
    encoder = Encoder(SearchSpace.from_dict(spec))
    cfg = {**config(*["conv3"] * 6), **{"r" + k: "skip" for k in config(*OPS[:1] * 6)}}
    X = encoder.structure([cfg])
    assert encoder.structure_dim == X.shape[1] == 3 * 5 + 1 + 3 * 2 + 1
    assert X[0, 16:18].tolist() == [0.0, 1.0]  # the reduce cell: all skip, none of its zero


def test_graph_of_a_large_cell_stays_in_the_unit_interval() -> None:
    edges = [(a, b) for a in range(16) for b in range(a + 1, 16)]  # 120 edges, C(14, k) paths
    graph = CellGraph(edges, n_ops=8, zero=0)
    ops = np.random.default_rng(0).integers(-1, 8, size=(50, len(edges)))
    X = graph.features(ops)
    assert graph.n_paths == 2.0**14 and graph.longest == 15
    assert X.shape == (50, 25) and np.isfinite(X).all() and (X >= 0).all() and (X <= 1).all()


# --- layout, fingerprints, models ---------------------------------------------------------------

def test_plain_space_keeps_its_encoding_and_fingerprints() -> None:
    plain, cell = Encoder(PLAIN), Encoder(CELL)
    # the values main computed before cells existed: stored pruner weights still apply
    assert plain.fingerprint == "ae03a9b9975d46a5"
    assert feature_fingerprint(plain, ("params",)) == "bb37470d221aac53"
    assert plain.structure_dim == 0 and plain.structure([config(*OPS[:1] * 6)]).shape == (1, 0)
    assert cell.dim == plain.dim and cell.fingerprint != plain.fingerprint
    configs = [config(*OPS[:1] * 6), config("conv3", "none", "skip", "pool", "conv3", "conv1")]
    np.testing.assert_array_equal(cell.encode_many(configs), plain.encode_many(configs))


def test_pruner_features_put_the_structure_between_encoding_and_metrics() -> None:
    encoder = Encoder(CELL)
    configs = [config(*["skip"] * 6), config(*["none"] * 6)]
    X = featurize(encoder, configs, [{"params": 10.0}, {}], ("params",))
    d, s = encoder.dim, encoder.structure_dim
    assert X.shape == (2, d + s + 2)
    np.testing.assert_array_equal(X[:, d:d + s], encoder.structure(configs))
    assert X[0, d + s] == pytest.approx(np.log1p(10.0)) and X[1, -1] == 1.0
    center, scale = fit_scaling(X, 1)
    assert (center[:d + s] == 0.5).all() and (scale[:d + s] == 0.5).all()


def test_a_model_for_the_plain_layout_never_applies_to_the_cell_layout() -> None:
    plain = Encoder(PLAIN)
    n = plain.dim
    layer = ((np.zeros((n, 1)), np.zeros(1)),)
    model = PrunerModel((layer,), np.full(n, 0.5), np.full(n, 0.5),
                        feature_fingerprint(plain, ()), (), 10)
    assert model.applies_to(plain, ()) and not model.applies_to(Encoder(CELL), ())


def test_gp_features_add_one_lengthscale_per_kind_of_structure_column() -> None:
    with_cells, without = gp.Features(Encoder(CELL)), gp.Features(Encoder(CELL), structure=False)
    configs = [config(*["skip"] * 6)]
    assert with_cells.dim == without.dim + 16 == with_cells(configs).shape[1]
    assert len(with_cells.groups) == with_cells.dim
    assert with_cells.groups.max() == without.groups.max() + 4
    np.testing.assert_array_equal(without.groups, gp.Features(Encoder(PLAIN)).groups)
    np.testing.assert_array_equal(without(configs), gp.Features(Encoder(PLAIN))(configs))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_proposes_valid_cells(name: str) -> None:
    optimizer = Optimizer(CELL, seed=0)
    for _ in range(12):
        s = optimizer.ask()
        optimizer.tell(s, float(sum(v == "conv3" for v in s.params.values())))
    out = run(STRATEGIES[name], CELL, optimizer.history, 3)
    assert len(out) == 3 and all(CELL.validate_config(c) == c for c in out)


# --- validation ------------------------------------------------------------------------------

def _error(spec: dict[str, Any]) -> SpaceError:
    with pytest.raises(SpaceError) as caught:
        SearchSpace.from_dict(spec)
    return caught.value


def _edit(i: int, **changes: Any) -> dict[str, Any]:
    spec = nb201()
    spec["params"][i].update(changes)
    return spec


def _cell(i: int, **changes: Any) -> dict[str, Any]:
    spec = nb201()
    spec["params"][i]["cell"] = {**spec["params"][i]["cell"], **changes}
    return spec


@pytest.mark.parametrize(("spec", "field", "words"), [
    (_cell(0, edge=[2, 1]), "space.params[0].cell.edge", "`from < to` must hold"),
    (_cell(0, edge=[1, 1]), "space.params[0].cell.edge", "`from < to` must hold"),
    (_cell(1, edge=[1, 64]), "space.params[1].cell.edge[1]", "0..63"),
    (_cell(1, edge=[-1, 2]), "space.params[1].cell.edge[0]", "0..63"),
    (_cell(1, edge=[1, True]), "space.params[1].cell.edge[1]", "node number"),
    (_cell(1, edge=[1, 2, 3]), "space.params[1].cell.edge", "two node numbers"),
    (_cell(2, zero="zero"), "space.params[2].cell.zero", "one of the param's choices"),
    (_cell(2, zero="skip"), "space.params[2].cell.zero", "share one zero"),
    (_cell(3, zero=None), "space.params[3].cell.zero", "share one zero"),
    (_cell(3, edge=[1, 2]), "space.params[3].cell.edge", "already 'e12'"),
    (_cell(4, name=""), "space.params[4].cell.name", "non-empty"),
    (_cell(4, colour="red"), "space.params[4].cell.colour", "not a field"),
    (_edit(5, cell="c"), "space.params[5].cell", "must be an object"),
    (_edit(5, choices=OPS[::-1]), "space.params[5].choices", "same choices in the same order"),
    (_edit(5, choices=[*OPS, "conv5"]), "space.params[5].choices", "same choices"),
    ({"params": [{"name": "w", "type": "int", "low": 1, "high": 4,
                  "cell": {"name": "c", "edge": [0, 1]}}]}, "space.params[0].cell",
     "not a field of a int param"),
    ({"params": [{"name": f"p{i}", "type": "categorical", "choices": ["a", "b"],
                  "cell": {"name": f"c{i}", "edge": [0, 1]}} for i in range(17)]},
     "space.params[16].cell.name", "at most 16 cells"),
    ({"params": [{"name": f"p{a}_{b}", "type": "categorical", "choices": ["a", "b"],
                  "cell": {"name": "c", "edge": [a, b]}}
                 for a in range(17) for b in range(a + 1, 17)][:129]},
     "space.params[128].cell", "at most 128 edges"),
])
def test_bad_annotation_is_refused_naming_the_field(spec: dict[str, Any], field: str,
                                                    words: str) -> None:
    error = _error(spec)
    assert error.field == field and words in error.reason, error


def test_structure_features_count_in_the_encoded_width() -> None:
    spec = {"params": [{"name": f"p{i}", "type": "categorical", "choices": list(range(400))}
                       for i in range(3)]}
    assert Encoder(SearchSpace.from_dict(spec)).dim == 1200 <= MAX_ENCODED_WIDTH
    for i, p in enumerate(spec["params"]):
        p["cell"] = {"name": "c", "edge": [i, i + 1]}
    error = _error(spec)  # 1,200 one-hot + 3 x 400 + 1 structure columns
    assert error.field == "space.params" and "got 2401" in error.reason


def test_annotation_round_trips_through_the_api_form() -> None:
    again = SearchSpace.from_dict(CELL.to_dict())
    assert again == CELL and again.fingerprint == CELL.fingerprint
    assert CELL.to_dict()["params"][0]["cell"] == {"name": "c", "edge": [1, 2], "zero": "none"}
    assert "cell" not in PLAIN.to_dict()["params"][0]
    assert PLAIN.fingerprint != CELL.fingerprint
