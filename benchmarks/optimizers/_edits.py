"""One-edit moves on a configuration of the benchmark space format, shared by the NAS peers.

An edit changes one active param: a categorical (a cell's operation on one edge) to another
choice, a stepped or integer number to an adjacent grid value, a continuous one by a tenth of its
range (in log space when it is log). Children that the edit activates are sampled, those it
deactivates dropped, so every edited configuration holds exactly its active params.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmarks import space as sp

CONTINUOUS_STEP = 0.1  # a continuous param's edit, as a share of its (log) range


def edits(param: sp.Param, value: Any) -> list[Any]:
    """The values one edit of ``param`` may give it, starting from ``value``."""
    if param.type == "categorical":
        return [c for c in param.choices if not sp.same_value(c, value)]
    grid = param.grid()
    if grid is not None and len(grid) <= 1000:
        i = min(range(len(grid)), key=lambda k: abs(grid[k] - value))
        return [grid[k] for k in (i - 1, i + 1) if 0 <= k < len(grid)]
    if param.log:
        lo, hi, v = math.log(param.low), math.log(param.high), math.log(value)
        moved = [math.exp(v + s * CONTINUOUS_STEP * (hi - lo)) for s in (-1, 1)]
    else:
        moved = [value + s * CONTINUOUS_STEP * (param.high - param.low) for s in (-1, 1)]
    return [m for m in (param.snap(x) for x in moved) if m != value]


def with_edit(params: list[sp.Param], config: dict[str, Any], name: str, value: Any,
              rng: np.random.Generator) -> dict[str, Any]:
    """``config`` with ``name`` set to ``value``, repaired: new children sampled, dead ones
    dropped."""
    out: dict[str, Any] = {}
    for p in params:
        if not sp.is_active(p, out):
            continue
        if p.name == name:
            out[p.name] = value
        elif p.name in config:
            out[p.name] = config[p.name]
        else:
            out[p.name] = p.sample(rng)
    return out


def neighbours(params: list[sp.Param], config: dict[str, Any],
               rng: np.random.Generator) -> list[dict[str, Any]]:
    """Every one-edit neighbour of ``config``, in a random order."""
    out = [with_edit(params, config, p.name, v, rng)
           for p in params if p.name in config for v in edits(p, config[p.name])]
    return [out[i] for i in rng.permutation(len(out))]


def mutate(params: list[sp.Param], config: dict[str, Any],
           rng: np.random.Generator) -> dict[str, Any]:
    """One random edit: a uniformly chosen active param moved to one of its edit values."""
    active = [p for p in params if p.name in config and edits(p, config[p.name])]
    if not active:
        return sp.sample(params, rng)
    p = active[int(rng.integers(len(active)))]
    options = edits(p, config[p.name])
    return with_edit(params, config, p.name, options[int(rng.integers(len(options)))], rng)


def key(config: dict[str, Any]) -> tuple:
    """A hashable identity of a configuration (type-aware, as ``sp.same_value`` compares)."""
    return tuple(sorted((k, type(v).__name__, v) for k, v in config.items()))
