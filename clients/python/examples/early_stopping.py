"""Early stopping: train small torch MLPs on scikit-learn's digits, stopping poor ones early.

    pip install torch scikit-learn
    dyesp serve                       # in another terminal
    DYESP_API_KEY=... python examples/early_stopping.py [http://127.0.0.1:8000] [n_trials]

Each trial trains an MLP (learning rate, width and depth from the search space) for up to 27
epochs on the 8x8 digits bundled with scikit-learn (no download), reports its validation
accuracy after every epoch, and raises ``TrialStopped`` as soon as the server says its curve is
not among the best: the server keeps the last reported accuracy as the trial's value.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from dyesp_client import Client, Trial, TrialStopped

SPACE: list[dict[str, Any]] = [
    {"name": "lr", "type": "float", "low": 1e-4, "high": 1.0, "log": True},
    {"name": "width", "type": "int", "low": 8, "high": 256, "log": True},
    {"name": "depth", "type": "int", "low": 1, "high": 4},
]
FIDELITY = {"name": "epoch", "min": 1, "max": 27}


def load_data() -> tuple[Any, Any, Any, Any]:
    """The digits as torch tensors, split 75/25 and standardized on the training part."""
    try:
        import torch
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        sys.exit(f"this example needs torch and scikit-learn ({error.name} is missing): "
                 "pip install torch scikit-learn")
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0,
                                                      stratify=y)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    as_x = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    return as_x(x_train), as_y(y_train), as_x(x_val), as_y(y_val)


def make_objective(data: tuple[Any, Any, Any, Any]):
    import torch
    from torch import nn

    x_train, y_train, x_val, y_val = data

    def objective(trial: Trial) -> float:
        p = trial.params
        torch.manual_seed(trial.number)
        layers: list[nn.Module] = []
        width_in = x_train.shape[1]
        for _ in range(p["depth"]):
            layers += [nn.Linear(width_in, p["width"]), nn.ReLU()]
            width_in = p["width"]
        model = nn.Sequential(*layers, nn.Linear(width_in, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=p["lr"], momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        accuracy = 0.0
        for epoch in range(FIDELITY["min"], FIDELITY["max"] + 1):
            model.train()
            for batch in torch.randperm(len(x_train)).split(64):
                optimizer.zero_grad()
                loss_fn(model(x_train[batch]), y_train[batch]).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
            if trial.report(epoch, accuracy):  # True: the server says this curve is not promising
                print(f"trial {trial.number} stopped at epoch {epoch}: {trial.stop_reason}")
                raise TrialStopped()
        return accuracy

    return objective


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DYESP_URL",
                                                               "http://127.0.0.1:8000")
    n_trials = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    objective = make_objective(load_data())
    with Client(url, api_key=os.environ.get("DYESP_API_KEY")) as client:
        study = client.create_study("digits-mlp-early-stopping", SPACE, direction="maximize",
                                    seed=0, fidelity=FIDELITY)
        best = study.optimize(objective, n_trials=n_trials)
        trials = study.trials()
        stopped = [t for t in trials if t.state == "stopped"]
        epochs = sum(t.last_step or 0 for t in trials)
        print(f"{len(stopped)} of {len(trials)} trials stopped early; {epochs} epochs trained "
              f"instead of {len(trials) * FIDELITY['max']}")
        if best is not None:
            print(f"best validation accuracy {best.value:.4f} with {best.params}")


if __name__ == "__main__":
    main()
