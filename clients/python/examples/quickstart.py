"""Quickstart: search a small mixed hyperparameter-architecture space on a local DyESP server.

    DYESP_URL=http://127.0.0.1:8000 DYESP_API_KEY=... python examples/quickstart.py

The objective is a cheap analytic stand-in for "train a network and return its validation loss",
so the example finishes in seconds; swap in real training and nothing else changes.
"""

from __future__ import annotations

import math
import os
from typing import Any

from dyesp_client import Client, Infeasible, Trial

SPACE: list[dict[str, Any]] = [
    {"name": "depth", "type": "int", "low": 1, "high": 4},
    # Only deep networks have a third layer, so its width exists only for depth 3 and 4.
    {"name": "width_3", "type": "int", "low": 16, "high": 256, "log": True,
     "condition": {"parent": "depth", "values": [3, 4]}},
    {"name": "activation", "type": "categorical", "choices": ["relu", "gelu", "tanh"]},
    {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    {"name": "weight_decay", "type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5},
]


def validation_loss(trial: Trial) -> float:
    """A toy loss surface: best near lr=3e-3, weight_decay=1e-4, dropout=0.1, depth 3, gelu."""
    p = trial.params
    if p["depth"] == 4 and p.get("width_3", 0) > 200:
        raise Infeasible("does not fit in GPU memory")  # recorded as infeasible, not failed
    loss: float = (math.log10(p["lr"]) - math.log10(3e-3)) ** 2
    loss += 0.3 * (math.log10(p["weight_decay"]) + 4) ** 2
    loss += 2.0 * (p["dropout"] - 0.1) ** 2
    loss += 0.2 * abs(p["depth"] - 3)
    loss += {"relu": 0.05, "gelu": 0.0, "tanh": 0.2}[p["activation"]]
    if "width_3" in p:
        loss += 0.1 * abs(math.log2(p["width_3"] / 64))
    return loss


def main() -> None:
    url = os.environ.get("DYESP_URL", "http://127.0.0.1:8000")
    with Client(url, api_key=os.environ.get("DYESP_API_KEY")) as client:
        study = client.create_study("quickstart-mlp", SPACE, direction="minimize", seed=0)
        print(f"study {study.id} on {url}")
        best = study.optimize(validation_loss, n_trials=30, n_workers=2)
        study.refresh()
        print(f"trials by state: {study.trials_by_state}")
        if best is None:
            print("no trial completed")
            return
        print(f"best trial #{best.number}: loss {best.value:.4f}")
        for name, value in best.params.items():
            print(f"  {name} = {value}")


if __name__ == "__main__":
    main()
