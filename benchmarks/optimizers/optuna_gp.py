"""Optuna's Gaussian-process sampler exactly as users get it: `GPSampler(seed=seed)`, defaults.

Same ask/tell driving and define-by-run translation as `optuna_tpe` (`suggest`). GPSampler models
the intersection of the params seen so far; params outside it (inactive branches of a
conditional space) are sampled independently, which is Optuna's documented behaviour.
"""

from __future__ import annotations

from typing import Any

from benchmarks import space as sp
from benchmarks.optimizers.optuna_tpe import suggest


class OptunaGP:
    def __init__(self, task: Any, seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.params = sp.parse(task.space)
        self.study = optuna.create_study(direction=task.direction,
                                         sampler=optuna.samplers.GPSampler(seed=seed))
        self._pending: dict[int, Any] = {}

    def ask(self) -> dict[str, Any]:
        trial = self.study.ask()
        config = suggest(trial, self.params)
        self._pending[id(config)] = trial
        return config

    def tell(self, params: dict[str, Any], value: float) -> None:
        self.study.tell(self._pending.pop(id(params)), value)
