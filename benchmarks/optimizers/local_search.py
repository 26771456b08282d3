"""First-improvement local search over one-edit neighbours (White et al., 2021: "Local search is
state of the art for neural architecture search benchmarks").

Starts from the best of ``N_INITIAL`` uniform random configurations; then evaluates the centre's
one-edit neighbours (`_edits.neighbours`: on a cell, every other operation on every edge) in a
random order and moves to the first that improves on the centre. When every neighbour has been
evaluated without improvement the centre is a local optimum: the search restarts from a new
random configuration. Configurations already evaluated are never asked again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks import space as sp
from benchmarks.optimizers import _edits

N_INITIAL = 10  # a small random start, so the first walk begins somewhere better than typical
REDRAWS = 50


class LocalSearch:
    def __init__(self, task: Any, seed: int) -> None:
        self.params = sp.parse(task.space)
        self.sign = 1.0 if task.direction == "minimize" else -1.0
        self.rng = np.random.default_rng(seed)
        self.losses: dict[tuple, float] = {}
        self.center: tuple[dict[str, Any], float] | None = None
        self.queue: list[dict[str, Any]] = []
        self.best_initial: tuple[dict[str, Any], float] | None = None
        self.restarting = False

    def ask(self) -> dict[str, Any]:
        if self.center is not None:
            while self.queue:
                config = self.queue.pop()
                if _edits.key(config) not in self.losses:
                    return config
            self.center, self.restarting = None, True  # a local optimum: restart elsewhere
        for _ in range(REDRAWS):
            config = sp.sample(self.params, self.rng)
            if _edits.key(config) not in self.losses:
                return config
        return config

    def tell(self, params: dict[str, Any], value: float) -> None:
        config = sp.active_only(self.params, params)
        loss = self.sign * value
        self.losses[_edits.key(config)] = loss
        if self.center is None:
            if self.restarting:
                self._move(config, loss)
            elif self.best_initial is None or loss < self.best_initial[1]:
                self.best_initial = (config, loss)
            if not self.restarting and len(self.losses) >= N_INITIAL:
                assert self.best_initial is not None
                self._move(*self.best_initial)
        elif loss < self.center[1]:
            self._move(config, loss)

    def _move(self, config: dict[str, Any], loss: float) -> None:
        self.center, self.restarting = (config, loss), False
        self.queue = _edits.neighbours(self.params, config, self.rng)[::-1]  # pop() takes order
