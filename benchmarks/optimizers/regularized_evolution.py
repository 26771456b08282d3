"""Regularized evolution (Real et al., 2019): tournament selection, one-edit mutation, aging.

The population is the ``POPULATION`` most recent trials (the oldest dies, not the worst: that is
the "regularized"); each child mutates the best of ``TOURNAMENT`` members drawn at random, by one
edit (`_edits.mutate`: on a cell, one edge's operation). The first ``POPULATION`` trials are
uniform random. A child already evaluated is redrawn (up to ``REDRAWS`` times, then a random
configuration), so the method spends its budget on new points as every other peer here can.
Sizes for a 200-trial budget: a population of 20 leaves 180 generations, a tournament of 5 a
quarter of it (selection pressure without collapsing onto the single best).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from benchmarks import space as sp
from benchmarks.optimizers import _edits

POPULATION = 20
TOURNAMENT = 5
REDRAWS = 50


class RegularizedEvolution:
    def __init__(self, task: Any, seed: int) -> None:
        self.params = sp.parse(task.space)
        self.sign = 1.0 if task.direction == "minimize" else -1.0
        self.rng = np.random.default_rng(seed)
        self.population: deque[tuple[dict[str, Any], float]] = deque(maxlen=POPULATION)
        self.seen: set[tuple] = set()
        self.told = 0

    def ask(self) -> dict[str, Any]:
        if self.told < POPULATION:
            return self._fresh(lambda: sp.sample(self.params, self.rng))
        drawn = self.rng.choice(len(self.population), size=min(TOURNAMENT, len(self.population)),
                                replace=False)
        parent = min((self.population[int(i)] for i in drawn), key=lambda m: m[1])[0]
        return self._fresh(lambda: _edits.mutate(self.params, parent, self.rng))

    def tell(self, params: dict[str, Any], value: float) -> None:
        config = sp.active_only(self.params, params)
        self.seen.add(_edits.key(config))
        self.population.append((config, self.sign * value))
        self.told += 1

    def _fresh(self, draw: Any) -> dict[str, Any]:
        for _ in range(REDRAWS):
            config = draw()
            if _edits.key(config) not in self.seen:
                return config
        return sp.sample(self.params, self.rng)
