"""Optuna's TPE exactly as users get it: `TPESampler(seed=seed)`, all other arguments default.

Driven through the ask/tell API. Optuna is define-by-run, so conditional params are natural: only
the active ones are suggested (parents first), which is also how users write conditional spaces.
Mapping: float -> suggest_float(log, step); int -> suggest_int(log, step); categorical ->
suggest_categorical (numeric choices stay numbers).
"""

from __future__ import annotations

from typing import Any

from benchmarks import space as sp


class OptunaAskTell:
    """An Optuna study with ``sampler``, driven by ask/tell (each configuration ``suggest``-ed)."""

    def __init__(self, task: Any, sampler: Any) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.params = sp.parse(task.space)
        self.study = optuna.create_study(direction=task.direction, sampler=sampler)
        self._pending: dict[int, Any] = {}

    def ask(self) -> dict[str, Any]:
        trial = self.study.ask()
        config = suggest(trial, self.params)
        self._pending[id(config)] = trial
        return config

    def tell(self, params: dict[str, Any], value: float) -> None:
        self.study.tell(self._pending.pop(id(params)), value)


class OptunaTPE(OptunaAskTell):
    def __init__(self, task: Any, seed: int) -> None:
        import optuna

        super().__init__(task, optuna.samplers.TPESampler(seed=seed))


class OptunaTPEConstantLiar(OptunaAskTell):
    """TPE as Optuna recommends it for parallel workers: ``constant_liar=True`` makes trials still
    running count as bad results, so concurrent asks spread out (the parallel benchmark's peer).
    Explicit because only Optuna >= 5 defaults to it; the trial being sampled is left out, so
    with one worker it is ``OptunaTPE``."""

    def __init__(self, task: Any, seed: int) -> None:
        import optuna

        super().__init__(task, optuna.samplers.TPESampler(seed=seed, constant_liar=True))


def suggest(trial: Any, params: list[sp.Param]) -> dict[str, Any]:
    """An Optuna trial's configuration of ``params``, define-by-run (parents first)."""
    config: dict[str, Any] = {}
    for p in params:
        if not sp.is_active(p, config):
            continue
        if p.type == "categorical":
            config[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.type == "int":
            config[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log,
                                               step=int(p.step or 1))
        else:
            config[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log, step=p.step)
    return config
