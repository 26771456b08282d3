"""Static metrics of a torch model: size, FLOPs and zero-cost proxies computed on one batch.

These run on the user's machine, before training, and are what ``static_metrics=`` on
``study.ask()`` / ``study.optimize()`` expects: a function from a configuration's params to a dict
of finite floats. They need torch (``pip install torch``, or the SDK's ``[torch]`` extra);
``import dyesp_client`` itself never imports torch.

Example::

    import torch
    from dyesp_client.metrics import compute_static_metrics

    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))   # one fixed batch

    def build(params):
        torch.manual_seed(0)   # the proxies score the initialisation: seed it
        layers, width = [], 20
        for _ in range(params["depth"]):
            layers += [torch.nn.Linear(width, params["width"]), torch.nn.ReLU()]
            width = params["width"]
        return torch.nn.Sequential(*layers, torch.nn.Linear(width, 3))

    study.optimize(objective, n_trials=50,
                   static_metrics=lambda params: compute_static_metrics(build(params), x, y))

Every proxy leaves the model as it found it (weights, ``.grad``, buffers such as BatchNorm running
statistics, each module's train/eval flag), leaves the global random state alone, and is
deterministic for a fixed batch.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "dyesp_client.metrics needs torch, which the SDK does not install: pip install torch "
        "(the CPU build: pip install --index-url https://download.pytorch.org/whl/cpu torch)"
    ) from error

from dyesp_client.metrics._proxies import grad_norm, jacob_cov, naswot, snip, synflow
from dyesp_client.metrics._static import (
    METRIC_NAMES,
    compute_static_metrics,
    flops,
    param_count,
)

__all__ = [
    "METRIC_NAMES",
    "compute_static_metrics",
    "flops",
    "grad_norm",
    "jacob_cov",
    "naswot",
    "param_count",
    "snip",
    "synflow",
]
