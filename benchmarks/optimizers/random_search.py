"""Uniform random search: the floor every method must clear, and the control for "is it luck?".

Samples exactly the active params (conditional children only when their parent allows them), logs
log-uniformly, stepped numbers uniformly over their grid. numpy's PCG64 seeded with the run seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks import space as sp


class RandomSearch:
    def __init__(self, task: Any, seed: int) -> None:
        self.params = sp.parse(task.space)
        self.rng = np.random.default_rng(seed)

    def ask(self) -> dict[str, Any]:
        return sp.sample(self.params, self.rng)

    def tell(self, params: dict[str, Any], value: float) -> None:
        pass
