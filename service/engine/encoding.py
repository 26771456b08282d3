"""The one encoder: configurations <-> fixed-length vectors (DESIGN rule 3).

Layout, param by param in space order:
- float/int: one unit-scaled number in [0, 1] (in log space when ``log``), then for conditional
  params one "active" bit; an inactive number is set to 0.5 so it carries no information;
- categorical: one-hot over the choices (all zeros when inactive), then the active bit likewise.
Strategies, pruner inference and worker training all use this module, and stored weights carry
``Encoder.fingerprint`` so a model trained for another layout is never applied.

A space whose categoricals are a cell's edges (``service.engine.cells``) also has structure
features (``Encoder.structure``): the pruner and the GP read them after the vector; the vector
itself, which strategies decode and step in, is the same with or without them.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.engine.cells import CELL_FEATURES_VERSION, CellGraph
from service.engine.space import CategoricalParam, FloatParam, IntParam, Param, SearchSpace

ENCODING_VERSION = 1


class Encoder:
    """Maps configurations of one space to vectors and back.

    >>> space = SearchSpace.from_dict({"params": [
    ...     {"name": "lr", "type": "float", "low": 1e-4, "high": 1.0, "log": True},
    ...     {"name": "act", "type": "categorical", "choices": ["relu", "gelu"]}]})
    >>> enc = Encoder(space)
    >>> enc.encode({"lr": 1e-2, "act": "gelu"}).round(3).tolist()
    [0.5, 0.0, 1.0]
    >>> enc.decode(enc.encode({"lr": 1e-2, "act": "gelu"}))["act"]
    'gelu'
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.slices: dict[str, slice] = {}
        self.active_bit: dict[str, int] = {}
        offset = 0
        for param in space.params:
            width = len(param.choices) if isinstance(param, CategoricalParam) else 1
            self.slices[param.name] = slice(offset, offset + width)
            offset += width
            if param.condition is not None:
                self.active_bit[param.name] = offset
                offset += 1
        self.dim = offset
        self.cells = _cell_graphs(space)
        self.structure_dim = sum(graph.width for _, _, graph in self.cells)
        layout = f"v{ENCODING_VERSION}:{space.fingerprint}:{self.dim}"
        if self.cells:  # a space without cells keeps the fingerprint its stored weights carry
            layout += f":cells{CELL_FEATURES_VERSION}:{self.structure_dim}"
        self.fingerprint = hashlib.sha256(layout.encode()).hexdigest()[:16]

    def structure(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The cells' structure features of each configuration (``CellGraph.features``, cells in
        space order), ``(len(configs), structure_dim)``; no columns for a space without cells."""
        parts = [np.zeros((len(configs), 0))]
        for _, params, graph in self.cells:
            ops = np.array([[p.index(c[p.name]) if p.name in c else -1 for p in params]
                            for c in configs], dtype=int).reshape(len(configs), len(params))
            parts.append(graph.features(ops))
        return np.concatenate(parts, axis=1)

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        return self.encode_many([config])[0]

    def encode_many(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The vectors of ``configs``, ``(len(configs), dim)``: one numpy pass per param over
        all of them (a candidate pool is hundreds of configurations, ranked on every ask). A
        param every configuration holds (all but inactive conditionals) is read in one list
        comprehension, without a presence pass first."""
        n = len(configs)
        out = np.zeros((n, self.dim), dtype=np.float64)
        if not configs:
            return out
        for param in self.space.params:
            name, where = param.name, self.slices[param.name]
            try:
                values = [c[name] for c in configs]
                rows = None  # every configuration holds it
            except KeyError:
                present = np.fromiter((name in c for c in configs), dtype=bool, count=n)
                rows = np.flatnonzero(present)
                values = [configs[i][name] for i in rows.tolist()]
            if name in self.active_bit:
                out[slice(None) if rows is None else rows, self.active_bit[name]] = 1.0
            if isinstance(param, CategoricalParam):
                index = np.array(param.indices(values), dtype=np.intp)
                out[np.arange(n) if rows is None else rows, where.start + index] = 1.0
            else:
                units = to_units(param, np.array(values, dtype=np.float64))
                if rows is None:
                    out[:, where.start] = units
                else:
                    column = np.full(n, 0.5)
                    column[rows] = units
                    out[:, where.start] = column
        return out

    def decode(self, vector: np.ndarray) -> dict[str, Any]:
        """The configuration nearest to ``vector``; activity follows the decoded parents."""
        config: dict[str, Any] = {}
        for param in self.space.params:
            if not self.space.is_active(param, config):
                continue
            where = self.slices[param.name]
            if isinstance(param, CategoricalParam):
                config[param.name] = param.choices[int(np.argmax(vector[where]))]
            else:
                config[param.name] = from_unit(param, float(vector[where.start]))
        return config


def _cell_graphs(space: SearchSpace) -> list[tuple[str, list[CategoricalParam], CellGraph]]:
    """Each cell's name, edge params (space order) and graph, cells in order of first edge."""
    members: dict[str, list[CategoricalParam]] = {}
    for param in space.params:
        if isinstance(param, CategoricalParam) and param.cell is not None:
            members.setdefault(param.cell.cell, []).append(param)
    out = []
    for name, params in members.items():
        head = params[0]
        zero = None if head.cell.zero is None else head.index(head.cell.zero)  # type: ignore[union-attr]
        edges = [(p.cell.source, p.cell.target) for p in params]  # type: ignore[union-attr]
        out.append((name, params, CellGraph(edges, len(head.choices), zero)))
    return out


@functools.lru_cache(maxsize=256)
def encoder_for(space: SearchSpace) -> Encoder:
    """One Encoder per space (construction hashes the space; asks repeat it thousands of times)."""
    return Encoder(space)


def _unit_bounds(param: FloatParam | IntParam) -> tuple[float, float]:
    """The (log) interval ``to_unit`` maps onto [0, 1]: ints widened by half a step each side."""
    low, high = float(param.low), float(param.high)
    if isinstance(param, IntParam):
        low, high = low - 0.5, high + 0.5
    if param.log:
        low, high = math.log(low), math.log(high)
    return low, high


def to_unit(param: FloatParam | IntParam, value: float) -> float:
    """Position of ``value`` in [0, 1] along the param's (log) scale."""
    low, high = _unit_bounds(param)
    if high == low:
        return 0.5
    if param.log:
        value = math.log(max(float(value), 1e-300))
    return min(max((float(value) - low) / (high - low), 0.0), 1.0)


def to_units(param: FloatParam | IntParam, values: np.ndarray) -> np.ndarray:
    """``to_unit`` of many values at once (the same positions, as float64 arrays).

    >>> p = FloatParam("lr", 1e-4, 1.0, log=True)
    >>> to_units(p, np.array([1e-4, 1e-2, 1.0])).round(6).tolist()
    [0.0, 0.5, 1.0]
    """
    low, high = _unit_bounds(param)
    if high == low:
        return np.full(values.shape, 0.5)
    if param.log:
        values = np.log(np.maximum(values, 1e-300))
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def from_units(param: FloatParam | IntParam, units: np.ndarray) -> np.ndarray:
    """``from_unit`` of many positions at once: float64 values on the param's domain and grid
    (whole numbers for an int param; the caller converts them to Python numbers).

    >>> p = IntParam("units", 16, 256, log=True)
    >>> from_units(p, np.array([0.0, 0.5, 1.0])).tolist()
    [16.0, 63.0, 256.0]
    """
    low, high = _unit_bounds(param)
    values = low + np.clip(units, 0.0, 1.0) * (high - low)
    if param.log:
        values = np.exp(values)
    values = np.clip(values, param.low, param.high)
    step = param.step
    if step is not None:
        values = np.clip(param.low + np.round((values - param.low) / step) * step,
                         param.low, param.high)
    return values


def from_unit(param: FloatParam | IntParam, unit: float) -> float | int:
    """Inverse of ``to_unit``, snapped onto the param's domain."""
    unit = min(max(unit, 0.0), 1.0)
    low, high = _unit_bounds(param)
    value = low + unit * (high - low)
    return param.clip(math.exp(value) if param.log else value)


def unit_width(param: Param) -> float:
    """The unit-space distance between neighbouring values (0 for continuous floats)."""
    if isinstance(param, IntParam):
        span = (param.high - param.low) / param.step + 1
        return 1.0 / span
    if isinstance(param, FloatParam) and param.step is not None and not param.log:
        return param.step / max(param.high - param.low, 1e-300)
    return 0.0


# --- neighbourhoods for local search ---------------------------------------------------------

@functools.lru_cache(maxsize=1024)
def ordinal_positions(param: Param) -> np.ndarray | None:
    """Positions in [0, 1] of a categorical's choices when they are all numbers (a grid given as a
    list, e.g. learning rates), by rank; None for nominal choices.

    Rank spacing makes a geometric grid (1e-5, 1e-4, ...) evenly spaced, as a log scale would; it
    lets local search step to the adjacent value instead of jumping anywhere in the list.
    """
    if not isinstance(param, CategoricalParam) or len(param.choices) < 3:
        return None
    if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in param.choices):
        return None
    ranks = np.argsort(np.argsort([float(c) for c in param.choices]))
    positions = ranks / (len(param.choices) - 1)
    positions.flags.writeable = False  # cached and shared: nobody may change it
    return positions


def _notch(param: Param, value: Any, direction: int) -> Any:
    """The adjacent value of a discrete param in ``direction`` (+1/-1), bouncing off the ends."""
    if isinstance(param, CategoricalParam):
        positions = ordinal_positions(param)
        assert positions is not None
        order = np.argsort(positions)
        rank = int(np.where(order == param.index(value))[0][0])
        rank = rank + direction if 0 <= rank + direction < len(order) else rank - direction
        return param.choices[int(order[rank])]
    step = param.step if param.step is not None else 0.0
    moved = value + direction * step
    if not param.low <= moved <= param.high:
        moved = value - direction * step
    return param.clip(moved)


def neighbour(encoder: Encoder, config: Mapping[str, Any], step: float,
              rng: np.random.Generator) -> dict[str, Any]:
    """A configuration one random-direction step of length ``step`` away in unit space.

    Numbers move along their unit scale, ordinal choices to the nearest position, and a nominal
    choice changes with a probability that grows with its share of the step. At least one value
    always changes, so a small step on a coarse grid still moves; newly active children are
    sampled. (One row of ``neighbours``.)
    """
    return neighbours(encoder, [config], [step], rng)[0]


def neighbours(encoder: Encoder, centres: Sequence[Mapping[str, Any]], steps: Sequence[float],
               rng: np.random.Generator) -> list[dict[str, Any]]:
    """``neighbour(encoder, centres[i], steps[i], rng)`` for every ``i``, drawn in one numpy
    pass per param from one block of random numbers (the surrogate draws hundreds of neighbours
    on every ask; a Python loop per value was a quarter of its time).

    >>> space = SearchSpace.from_dict({"params": [
    ...     {"name": "lr", "type": "float", "low": 1e-4, "high": 1.0, "log": True},
    ...     {"name": "layers", "type": "int", "low": 1, "high": 8},
    ...     {"name": "act", "type": "categorical", "choices": ["relu", "gelu", "tanh"]}]})
    >>> centre = {"lr": 1e-2, "layers": 4, "act": "relu"}
    >>> moved = neighbours(Encoder(space), [centre] * 50, [0.2] * 50, np.random.default_rng(0))
    >>> all(m != centre and space.validate_config(m) == m for m in moved)
    True
    """
    space, m = encoder.space, len(centres)
    if m == 0:
        return []
    params = space.params
    active = np.array([[p.name in c for p in params] for c in centres], dtype=bool)
    direction = np.where(active, rng.standard_normal((m, len(params))), 0.0)
    norms = np.maximum(np.linalg.norm(direction, axis=1), 1e-12)
    delta = direction / norms[:, None] * np.asarray(steps, dtype=float)[:, None]
    draws = rng.random((m, len(params)))
    moved = [dict(c) for c in centres]
    changed = np.zeros(m, dtype=bool)
    for j, param in enumerate(params):
        rows = np.flatnonzero(active[:, j])
        if rows.size == 0:
            continue
        name, d = param.name, delta[rows, j]
        if isinstance(param, CategoricalParam):
            index = np.array(param.indices([centres[i][name] for i in rows]), dtype=np.intp)
            positions = ordinal_positions(param)
            if positions is not None:
                target = positions[index] + d
                new = np.argmin(np.abs(positions[None, :] - target[:, None]), axis=1)
            else:
                flip = (draws[rows, j] < np.minimum(1.0, 2.0 * np.abs(d))) & (
                    len(param.choices) > 1)
                other = rng.integers(max(len(param.choices) - 1, 1), size=rows.size)
                new = np.where(flip, other + (other >= index), index)
            changed[rows] |= new != index
            for i, k in zip(rows.tolist(), new.tolist(), strict=True):
                moved[i][name] = param.choices[k]
        else:
            old = np.array([centres[i][name] for i in rows], dtype=np.float64)
            new_values = from_units(param, to_units(param, old) + d)
            changed[rows] |= new_values != old
            cast = int if isinstance(param, IntParam) else float
            for i, v in zip(rows.tolist(), new_values.tolist(), strict=True):
                moved[i][name] = cast(v)
    for i in np.flatnonzero(~changed).tolist():  # nothing moved: force the largest component
        j = int(np.argmax(np.abs(direction[i])))
        param = params[j]
        moved[i][param.name] = _forced_move(param, centres[i][param.name],
                                            1 if direction[i, j] >= 0 else -1, float(steps[i]),
                                            rng)
    if not active.all() or any(p.condition is not None for p in params):
        # activity may follow a moved parent, and a missing value is sampled
        return [space.complete(c, rng, checked=True) for c in moved]
    return moved


def _other_choice(param: CategoricalParam, value: Any, rng: np.random.Generator) -> Any:
    if len(param.choices) == 1:
        return value
    index = param.index(value)
    other = int(rng.integers(len(param.choices) - 1))
    return param.choices[other + (other >= index)]


def _forced_move(param: Param, value: Any, sign: int, step: float,
                 rng: np.random.Generator) -> Any:
    if isinstance(param, CategoricalParam):
        if ordinal_positions(param) is not None:
            return _notch(param, value, sign)
        return _other_choice(param, value, rng)
    if unit_width(param) > 0 or (isinstance(param, FloatParam) and param.step is not None):
        return _notch(param, value, sign)
    unit = to_unit(param, value)
    delta = sign * max(abs(step) / 4, 1e-3)
    if not 0.0 <= unit + delta <= 1.0:
        delta = -delta
    return from_unit(param, unit + delta)


def notch_neighbours(space: SearchSpace, config: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """Every configuration one notch away (one value changed to an adjacent or other choice), or
    None when a continuous param makes the neighbourhood infinite.

    When all of them have been tried without improving, the centre is a local optimum: local
    search has converged there and should restart elsewhere. Neighbours that would activate an
    unset child are left out (their child value is not determined).
    """
    out: list[dict[str, Any]] = []
    for param in space.params:
        if param.name not in config:
            continue
        value = config[param.name]
        if isinstance(param, CategoricalParam):
            index = param.index(value)
            if ordinal_positions(param) is not None:
                picks = {param.index(_notch(param, value, s)) for s in (1, -1)} - {index}
                options = [param.choices[i] for i in sorted(picks)]
            else:
                options = [c for i, c in enumerate(param.choices) if i != index]
        elif isinstance(param, FloatParam) and param.step is None:
            return None
        else:
            options = sorted({_notch(param, value, 1), _notch(param, value, -1)} - {value})
        for option in options:
            candidate = dict(config)
            candidate[param.name] = option
            kept = {p.name: candidate[p.name] for p in space.params
                    if p.name in candidate and space.is_active(p, candidate)}
            if all(p.name in kept for p in space.params if space.is_active(p, kept)):
                out.append({p.name: kept[p.name] for p in space.params if p.name in kept})
    return out
