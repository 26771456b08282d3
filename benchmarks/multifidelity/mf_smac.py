"""SMAC3's MultiFidelityFacade with its Hyperband intensifier, driven by ask/tell.

`Scenario(deterministic=True, min_budget=fmin, max_budget=fmax, seed=seed)`, eta 3, everything
else SMAC's defaults (random-forest model, random initial design). `n_trials` is an upper bound
that a run can never exhaust (budget / fmin evaluations), since it also sizes the initial design
(min(10 x dims, 25 % of n_trials)): the design is then SMAC's default 10 x dims. Each trial is
trained from scratch at its budget (`Ledger.evaluate`): SMAC's Hyperband does not resume. A
budget that is not an available step (NAS-Bench-201 has only 12 and 200; LCBench integer epochs)
is mapped to the nearest available one, and that one is charged.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from typing import Any

from benchmarks import space as sp
from benchmarks.multifidelity.ledger import Ledger
from benchmarks.multifidelity.tasks import MFTask
from benchmarks.optimizers.smac_hpo import config_space


def drive(task: MFTask, ledger: Ledger, seed: int) -> None:
    from smac import MultiFidelityFacade, Scenario
    from smac.runhistory.dataclasses import TrialValue

    for name in ("smac", "ConfigSpace"):
        logging.getLogger(name).setLevel(logging.ERROR)
    params_list = sp.parse(task.space)
    out_dir = tempfile.mkdtemp(prefix="smac-mf-")
    try:
        scenario = Scenario(config_space(params_list, seed), deterministic=True,
                            n_trials=max(1, ledger.budget // max(task.fmin, 1)) + 1,
                            min_budget=task.fmin, max_budget=task.fmax, seed=seed,
                            output_directory=out_dir)

        def never_called(config: Any, seed: int = 0, budget: float = 0.0) -> float:
            raise RuntimeError("the benchmark evaluates trials itself (ask/tell)")

        intensifier = MultiFidelityFacade.get_intensifier(scenario, eta=3)
        smac = MultiFidelityFacade(scenario, never_called, intensifier=intensifier,
                                   overwrite=True, logging_level=40)
        while True:
            info = smac.ask()
            params = sp.clean(params_list, dict(info.config))
            step = task.nearest_step(float(info.budget if info.budget is not None
                                           else task.fmax))
            value = ledger.evaluate(params, step)
            smac.tell(info, TrialValue(cost=task.sign * value), save=False)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
