"""Optimisers under test, behind one tiny sequential interface (see `base.Optimizer`).

`METHODS` maps a method name to "module:factory"; a factory takes `(task, seed)` and returns an
object with `ask() -> dict` and `tell(params, value)`. Imports are lazy, so the harness (and the
tests) load without the optional peers installed. Add a variant with `register`, e.g. an engine
ablation: `register("dyesp-no-x", partial(DyESP, options={"x": False}))`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from benchmarks.optimizers.base import Optimizer

Factory = Callable[..., Optimizer]

PEERS: tuple[str, ...] = ("random", "optuna-tpe", "optuna-gp", "flaml-cfo", "flaml-blendsearch",
                          "hyperopt-tpe", "smac-hpo", "regularized-evolution", "local-search")
ENGINE: tuple[str, ...] = ("dyesp", "dyesp-scheduler-only", "dyesp-pruner-only")

METHODS: dict[str, str | Factory] = {
    "random": "benchmarks.optimizers.random_search:RandomSearch",
    "optuna-tpe": "benchmarks.optimizers.optuna_tpe:OptunaTPE",
    # TPE with constant_liar=True, for parallel workers (`benchmarks.parallel`).
    "optuna-tpe-liar": "benchmarks.optimizers.optuna_tpe:OptunaTPEConstantLiar",
    "optuna-gp": "benchmarks.optimizers.optuna_gp:OptunaGP",
    "flaml-cfo": "benchmarks.optimizers.flaml_cfo:FlamlCFO",
    "flaml-blendsearch": "benchmarks.optimizers.flaml_blendsearch:FlamlBlendSearch",
    "hyperopt-tpe": "benchmarks.optimizers.hyperopt_tpe:HyperoptTPE",
    "smac-hpo": "benchmarks.optimizers.smac_hpo:SmacHPO",
    "regularized-evolution": "benchmarks.optimizers.regularized_evolution:RegularizedEvolution",
    "local-search": "benchmarks.optimizers.local_search:LocalSearch",
    "dyesp": "benchmarks.optimizers.dyesp:DyESP",
    "dyesp-scheduler-only": "benchmarks.optimizers.dyesp:DyESPSchedulerOnly",
    "dyesp-pruner-only": "benchmarks.optimizers.dyesp:DyESPPrunerOnly",
}


def register(name: str, factory: str | Factory) -> None:
    """Add (or replace) a method: a "module:attr" path or a callable `(task, seed) -> Optimizer`."""
    METHODS[name] = factory


def get_factory(name: str) -> Factory:
    try:
        entry: Any = METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {sorted(METHODS)}") from None
    if isinstance(entry, str):
        module, attr = entry.split(":")
        entry = getattr(importlib.import_module(module), attr)
    return entry


def make_optimizer(name: str, task: Any, seed: int) -> Optimizer:
    return get_factory(name)(task, seed)


__all__ = ["ENGINE", "METHODS", "PEERS", "Optimizer", "get_factory", "make_optimizer", "register"]
