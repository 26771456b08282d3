"""SMAC3's HyperparameterOptimizationFacade (random forest, log EI, Sobol design), via ask/tell.

Defaults as users get them, with `Scenario(deterministic=True, n_trials=budget, seed=seed)`:
the objective is deterministic, and `n_trials` must be the real budget because SMAC sizes its
initial design from it (min(10 x dims, 25% of n_trials)). SMAC writes run files; each optimiser
gets a private temporary output directory that is removed when the object is collected.

ConfigSpace mapping: categorical -> Categorical (numeric choices kept as numbers); float/int ->
Float/Integer (log as given); a stepped grid (ConfigSpace 1.x has no `q`) -> OrdinalHyperparameter
over its values, which keeps the order. Conditions -> InCondition(child, parent, values). SMAC
minimises, so maximised objectives are negated.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from typing import Any

from benchmarks import space as sp

DEFAULT_BUDGET = 200


def config_space(params: list[sp.Param], seed: int) -> Any:
    from ConfigSpace import (
        Categorical,
        ConfigurationSpace,
        Float,
        InCondition,
        Integer,
        OrdinalHyperparameter,
    )

    cs = ConfigurationSpace(seed=seed)
    hps = {}
    for p in params:
        grid = p.grid() if (p.step is not None and not p.log) else None
        if p.type == "categorical":
            hp = Categorical(p.name, list(p.choices))
        elif grid is not None and len(grid) > 1 and p.step not in (None, 1):
            hp = OrdinalHyperparameter(p.name, grid)
        elif p.type == "int":
            hp = Integer(p.name, (int(p.low), int(p.high)), log=p.log)
        else:
            hp = Float(p.name, (float(p.low), float(p.high)), log=p.log)
        hps[p.name] = hp
        cs.add(hp)
    for p in params:
        if p.parent is not None:
            cs.add(InCondition(hps[p.name], hps[p.parent], list(p.parent_values)))
    return cs


class SmacHPO:
    def __init__(self, task: Any, seed: int, budget: int = DEFAULT_BUDGET) -> None:
        try:
            from smac import HyperparameterOptimizationFacade, Scenario
        except ImportError as exc:  # pragma: no cover - depends on the bench extra
            raise ImportError("smac-hpo needs the bench extra: pip install -r "
                              "benchmarks/REQUIREMENTS-bench.txt (smac, ConfigSpace)") from exc
        for name in ("smac", "ConfigSpace"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self.params = sp.parse(task.space)
        self.sign = 1.0 if task.direction == "minimize" else -1.0
        self._dir = tempfile.mkdtemp(prefix="smac-bench-")
        weakref.finalize(self, shutil.rmtree, self._dir, True)
        scenario = Scenario(config_space(self.params, seed), deterministic=True,
                            n_trials=budget, seed=seed, output_directory=self._dir)

        def never_called(config: Any, seed: int = 0) -> float:
            raise RuntimeError("the benchmark evaluates trials itself (ask/tell)")

        self.smac = HyperparameterOptimizationFacade(scenario, never_called, overwrite=True,
                                                     logging_level=40)
        self._pending: dict[int, Any] = {}

    def ask(self) -> dict[str, Any]:
        info = self.smac.ask()
        config = {k: sp.to_builtin(v) for k, v in dict(info.config).items()}
        self._pending[id(config)] = info
        return config

    def tell(self, params: dict[str, Any], value: float) -> None:
        from smac.runhistory.dataclasses import TrialValue

        info = self._pending.pop(id(params))
        self.smac.tell(info, TrialValue(cost=self.sign * float(value)), save=False)
