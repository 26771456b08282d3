"""Optuna's Gaussian-process sampler exactly as users get it: `GPSampler(seed=seed)`, defaults.

Same ask/tell driving and define-by-run translation as `optuna_tpe` (`OptunaAskTell`). GPSampler
models the intersection of the params seen so far; params outside it (inactive branches of a
conditional space) are sampled independently, which is Optuna's documented behaviour.
"""

from __future__ import annotations

from typing import Any

from benchmarks.optimizers.optuna_tpe import OptunaAskTell


class OptunaGP(OptunaAskTell):
    def __init__(self, task: Any, seed: int) -> None:
        import optuna

        super().__init__(task, optuna.samplers.GPSampler(seed=seed))
