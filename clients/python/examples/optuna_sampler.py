"""Existing Optuna code, searched by DyESP: only the `sampler=` line changes.

    pip install -e "clients/python[optuna]"
    DYESP_URL=http://127.0.0.1:8000 DYESP_API_KEY=... python examples/optuna_sampler.py

Optuna keeps its own storage (here SQLite), so `optuna-dashboard sqlite:///optuna-example.db`
shows the study as usual, and running this script in several terminals at once makes them share
one Optuna study and one service study. The objective is a cheap analytic stand-in for training a
network: define-by-run, with a conditional branch and Optuna's MedianPruner.
"""

from __future__ import annotations

import math
import os

import optuna

from dyesp_client.optuna import DyespSampler


def objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    model = trial.suggest_categorical("model", ["mlp", "cnn"])
    if model == "mlp":  # a branch: its params exist only when it is taken
        width = trial.suggest_int("width", 16, 512, log=True)
        penalty = abs(math.log2(width / 128)) * 0.1
    else:
        kernel = trial.suggest_int("kernel", 1, 7, step=2)
        penalty = abs(kernel - 3) * 0.05
    loss = 1.0
    for epoch in range(1, 11):  # a learning curve the pruner watches
        loss = (math.log10(lr) + 2.5) ** 2 + penalty + 1.0 / epoch
        trial.report(loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return loss


def main() -> None:
    sampler = DyespSampler(os.environ.get("DYESP_URL", "http://127.0.0.1:8000"),
                           api_key=os.environ.get("DYESP_API_KEY"), seed=0)
    study = optuna.create_study(study_name="dyesp-example", storage="sqlite:///optuna-example.db",
                                load_if_exists=True, sampler=sampler,
                                pruner=optuna.pruners.MedianPruner())
    study.optimize(objective, n_trials=40)
    print(f"best loss {study.best_value:.4f} with {study.best_params}")
    service = sampler.service_study(study)
    if service is not None:
        print(f"service study {service.name} ({service.id}): {service.trials_by_state}")
    sampler.close()


if __name__ == "__main__":
    main()
