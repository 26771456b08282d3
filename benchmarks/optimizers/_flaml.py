"""Shared adapter for FLAML's `flaml.tune` searchers (CFO and BlendSearch), driven by hand.

We call the searcher's own `suggest(trial_id)` / `on_trial_complete(trial_id, result)` (what
`flaml.tune.run` does internally), with the searcher's defaults apart from metric, mode, space and
seed. Space mapping: categorical -> tune.choice (FLAML treats sorted numeric choices as ordered, its
default), int -> tune.randint / tune.lograndint (exclusive upper bound, hence high + 1) or
tune.qrandint for a step, float -> tune.uniform / tune.loguniform / tune.quniform.

Conditional params: FLAML's flat space has no conditions, so every param is sampled and the harness
drops inactive ones before the objective sees them (the searcher still "sees" them; that is a
limitation users hit too). None of the development tasks is conditional.

FLAML returns None from `suggest` when it has nothing to propose (a converged local search waiting
for a restart, or a duplicate it refuses). We ask again with a fresh trial id up to 50 times, then
fall back to a uniform random configuration so every method spends the same budget; fallbacks are
recorded in the trace (`info`), and are rare.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from benchmarks import space as sp

METRIC = "obj"
RETRIES = 50


def quiet_logs() -> None:
    """FLAML logs every duplicate completion its global Optuna search sees; keep stdout readable."""
    logging.getLogger("flaml").setLevel(logging.ERROR)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:
        pass


def flaml_space(params: list[sp.Param]) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from flaml import tune
    out: dict[str, Any] = {}
    for p in params:
        if p.type == "categorical":
            out[p.name] = tune.choice(list(p.choices))
        elif p.type == "int":
            lo, hi = int(p.low), int(p.high)
            if p.step and int(p.step) > 1:
                out[p.name] = tune.qrandint(lo, hi, int(p.step))
            elif p.log:
                out[p.name] = tune.lograndint(lo, hi + 1)
            else:
                out[p.name] = tune.randint(lo, hi + 1)
        elif p.log:
            out[p.name] = tune.loguniform(p.low, p.high)
        elif p.step:
            out[p.name] = tune.quniform(p.low, p.high, p.step)
        else:
            out[p.name] = tune.uniform(p.low, p.high)
    return out


class FlamlSearcher:
    searcher_name = ""

    def __init__(self, task: Any, seed: int) -> None:
        quiet_logs()
        self.params = sp.parse(task.space)
        self.rng = np.random.default_rng(seed)
        self.searcher = self._make(flaml_space(self.params),
                                   "min" if task.direction == "minimize" else "max", seed)
        self._count = 0
        self._pending: dict[int, tuple[str, dict]] = {}
        self.last_info: dict[str, Any] | None = None

    def _make(self, space: dict, mode: str, seed: int) -> Any:
        raise NotImplementedError

    def _next_id(self) -> str:
        self._count += 1
        return f"t{self._count}"

    def ask(self) -> dict[str, Any]:
        for attempt in range(RETRIES):
            trial_id = self._next_id()
            config = self.searcher.suggest(trial_id)
            if config is not None:
                suggested = config
                config = {k: sp.to_builtin(v) for k, v in config.items() if k in
                          {p.name for p in self.params}}
                self._pending[id(config)] = (trial_id, suggested)
                self.last_info = {"retries": attempt} if attempt else None
                return config
        config = sp.sample(self.params, self.rng)
        self.last_info = {"fallback": "random"}
        return config

    def tell(self, params: dict[str, Any], value: float) -> None:
        pending = self._pending.pop(id(params), None)
        if pending is not None:
            trial_id, suggested = pending
            # "config" is part of the result as Ray Tune / flaml.tune.run report it.
            self.searcher.on_trial_complete(trial_id, {METRIC: value, "config": suggested})
