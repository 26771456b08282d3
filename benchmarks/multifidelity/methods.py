"""The method drivers: each drives its library against a `Ledger` until `RunOver`.

A driver is `drive(task, ledger, seed)`: an endless ask / train / tell loop; the ledger ends it.
Methods that train on epoch by epoch (`tpe-*`, `random-hyperband`, `dyesp-es*`) use
`Ledger.start` and report every available step (`dyesp-es-5`: every fifth); full-fidelity
methods train each trial straight to the maximum; SMAC and DEHB evaluate at the budgets they ask
for, from scratch (`Ledger.evaluate`). Configurations pass through `space.active_only` /
`to_builtin` exactly as in the quality runner. Imports are lazy so the harness loads without the
bench extras.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks import space as sp
from benchmarks.multifidelity.ledger import Ledger
from benchmarks.multifidelity.tasks import MFTask
from benchmarks.optimizers.optuna_tpe import suggest

Driver = Callable[[MFTask, Ledger, int], None]


def random_full(task: MFTask, ledger: Ledger, seed: int) -> None:
    params_list = sp.parse(task.space)
    rng = np.random.default_rng(seed)
    while True:
        ledger.start(sp.clean(params_list, sp.sample(params_list, rng))).advance(task.fmax)


# -- Optuna -----------------------------------------------------------------------------------
def optuna_driver(sampler: str, pruner: str | None) -> Driver:
    """`TPESampler(seed)` or `RandomSampler(seed)`, with no pruner, Hyperband or Median."""

    def drive(task: MFTask, ledger: Ledger, seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
        pruners = {None: lambda: None,
                   "hyperband": lambda: optuna.pruners.HyperbandPruner(
                       min_resource=task.fmin, max_resource=task.fmax, reduction_factor=3),
                   "median": optuna.pruners.MedianPruner}
        # A fixed study name: HyperbandPruner picks a trial's bracket from crc32(name, number),
        # and the default name is a random uuid, which would make the run irreproducible.
        study = optuna.create_study(study_name=f"mf-{task.name}-{seed}", direction=task.direction,
                                    sampler=samplers[sampler](seed=seed), pruner=pruners[pruner]())
        params_list = sp.parse(task.space)
        while True:
            trial = study.ask()
            run = ledger.start(sp.clean(params_list, suggest(trial, params_list)))
            if pruner is None:
                value = run.advance(task.fmax)
                study.tell(trial, value)
                continue
            for step in task.steps:
                value = run.advance(step)
                if step == task.fmax:
                    study.tell(trial, value)
                    break
                trial.report(value, step)
                if trial.should_prune():
                    run.stop()
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break

    return drive


# -- DyESP ------------------------------------------------------------------------------------
def reported_steps(task: MFTask, every: int) -> list[int]:
    """The steps a job that validates every ``every`` steps reports at: the first available
    step at or past each multiple, and the maximum (every one of ``task.steps`` when 1).

    >>> from benchmarks.multifidelity.tasks import MFTask
    >>> toy = MFTask("toy", {}, "minimize", 1, 12, tuple(range(1, 13)), 0.0, 0.0, lambda p, s: 0)
    >>> reported_steps(toy, 5), reported_steps(toy, 1) == list(range(1, 13))
    ([5, 10, 12], True)
    """
    wanted = {min(s for s in task.steps if s >= m) for m in range(every, task.fmax + 1, every)}
    return sorted(wanted | {task.fmax})


def dyesp_driver(early_stopping: bool, every: int = 1) -> Driver:
    """The engine in-process (always imported, never copied: the engine team may change it);
    with early stopping, a job that reports every ``every`` steps (``reported_steps``)."""

    def drive(task: MFTask, ledger: Ledger, seed: int) -> None:
        from service.engine.early_stopping import Fidelity
        from service.engine.optimizer import Optimizer
        from service.training import train_pruner

        fidelity = Fidelity("epoch", task.fmin, task.fmax) if early_stopping else None
        opt = Optimizer(task.space, direction=task.direction, seed=seed, trainer=train_pruner,
                        fidelity=fidelity)
        params_list = sp.parse(task.space)
        while True:
            suggestion = opt.ask()
            run = ledger.start(sp.clean(params_list, suggestion.params))
            if not early_stopping:
                value = run.advance(task.fmax)
                opt.tell(suggestion, value)
                continue
            for step in reported_steps(task, every):
                value = run.advance(step)
                decision = opt.report(suggestion, step, value)
                if step == task.fmax:
                    opt.tell(suggestion, value)
                elif decision.should_stop:
                    run.stop()
                    ledger.notes[_reason_kind(decision.reason)] += 1
                    opt.tell(suggestion, state="stopped")
                    break

    return drive


def _reason_kind(reason: str | None) -> str:
    """A stop reason as a countable label: its rung ("stop@rung 3"), never the free text."""
    if not reason:
        return "stop@no reason"
    head = reason.split(":", 1)[0].strip()
    return f"stop@{head}" if head.startswith("rung") else "stop@other"


def _smac(task: MFTask, ledger: Ledger, seed: int) -> None:
    from benchmarks.multifidelity.mf_smac import drive

    drive(task, ledger, seed)


def _dehb(task: MFTask, ledger: Ledger, seed: int) -> None:
    from benchmarks.multifidelity.mf_dehb import drive

    drive(task, ledger, seed)


METHODS: dict[str, Driver] = {
    "random-full": random_full,
    "tpe": optuna_driver("tpe", None),
    "tpe-hyperband": optuna_driver("tpe", "hyperband"),
    "tpe-median": optuna_driver("tpe", "median"),
    "random-hyperband": optuna_driver("random", "hyperband"),
    "smac-hyperband": _smac,
    "dehb": _dehb,
    "dyesp-full": dyesp_driver(False),
    "dyesp-es": dyesp_driver(True),
    # The same job validating every 5 epochs (LCBench: 5, 10, ..., 50, 52; rungs 3, 9 and 27
    # are reached at 5, 10 and 30): what users who do not validate every epoch get.
    "dyesp-es-5": dyesp_driver(True, every=5),
}
ENGINE = ("dyesp-full", "dyesp-es", "dyesp-es-5")
