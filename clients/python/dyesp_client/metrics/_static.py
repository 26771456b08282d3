"""Parameter count, FLOPs, and one call that computes any set of static metrics."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from dyesp_client.metrics._common import (
    LossFn,
    call,
    cloned_buffers,
    detached_params,
    scoring_mode,
    to_model_device,
)
from dyesp_client.metrics._proxies import (
    _loss_gradients,
    _sum_abs_products,
    _sum_norms,
    jacob_cov,
    naswot,
    synflow,
)

__all__ = ["METRIC_NAMES", "compute_static_metrics", "flops", "param_count"]

METRIC_NAMES = ("params", "flops", "synflow", "snip", "grad_norm", "jacob_cov", "naswot")
_NEED_TARGETS = ("snip", "grad_norm")


def param_count(model: nn.Module) -> float:
    """The number of trainable parameters (``requires_grad``); a shared tensor counts once."""
    return float(sum(p.numel() for p in model.parameters() if p.requires_grad))


def flops(model: nn.Module, inputs: Tensor) -> float:
    """Total FLOPs of one forward pass on ``inputs``, by ``torch.utils.flop_counter``.

    torch's counter counts matrix products and convolutions (a multiply-add is 2 FLOPs, so a
    Linear layer costs ``2 * batch * in * out``; its bias, activations and normalisation are not
    counted). Run in eval mode without gradients; the FLOPs scale with the batch size.
    """
    inputs = to_model_device(model, inputs, "inputs")
    buffers = cloned_buffers(model)
    with (scoring_mode(model, training=False), torch.no_grad(),
          FlopCounterMode(display=False) as counter):
        call(model, detached_params(model), buffers, inputs, "flops")
    return float(counter.get_total_flops())


def compute_static_metrics(model: nn.Module, inputs: Tensor, targets: Tensor | None = None,
                           names: Iterable[str] = METRIC_NAMES, *,
                           loss_fn: LossFn | None = None) -> dict[str, float]:
    """Compute the static metrics ``names`` of ``model`` on one batch, as finite floats.

    ``names`` are taken from :data:`METRIC_NAMES`: ``params`` (trainable parameters), ``flops``
    (one forward pass on ``inputs``), and the zero-cost proxies ``synflow``, ``snip``,
    ``grad_norm``, ``jacob_cov`` and ``naswot``. ``snip`` and ``grad_norm`` need ``targets``
    and use ``loss_fn(outputs, targets)`` (cross-entropy by default). The inputs are moved to
    the model's device. The model is left as it was found. A metric that comes out nan or
    infinite raises ValueError naming it (for instance naswot on a network whose ReLUs are all
    dead), since the search can only use finite numbers.

    Returns a dict with exactly ``names``, in that order. Pass it to the SDK as
    ``static_metrics=lambda params: compute_static_metrics(build(params), x, y)``.

    Example:

    >>> import torch
    >>> from dyesp_client.metrics import compute_static_metrics
    >>> x, y = torch.randn(32, 3, 8, 8), torch.randint(0, 10, (32,))
    >>> def build(params):
    ...     torch.manual_seed(0)  # the proxies score the initial weights: seed them
    ...     width = params["width"]
    ...     return torch.nn.Sequential(
    ...         torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.BatchNorm2d(width),
    ...         torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    ...         torch.nn.Linear(width, 10))
    >>> metrics = compute_static_metrics(build({"width": 16}), x, y)
    >>> list(metrics)
    ['params', 'flops', 'synflow', 'snip', 'grad_norm', 'jacob_cov', 'naswot']
    >>> metrics["params"]
    650.0
    >>> compute_static_metrics(build({"width": 16}), x, names=["params", "naswot"]).keys()
    dict_keys(['params', 'naswot'])
    """
    if isinstance(names, str):
        names = [names]
    names = list(dict.fromkeys(names))
    unknown = [name for name in names if name not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown static metric(s) {unknown}; known: {list(METRIC_NAMES)}")
    needing = [name for name in names if name in _NEED_TARGETS]
    if needing and targets is None:
        raise ValueError(f"{' and '.join(needing)} need `targets` (the labels of the batch)")

    values: dict[str, float] = {}
    if needing:  # snip and grad_norm share one backward pass
        assert targets is not None
        weights, grads = _loss_gradients(model, inputs, targets, loss_fn, needing[0])
        if "snip" in needing:
            values["snip"] = _sum_abs_products(weights, grads)
        if "grad_norm" in needing:
            values["grad_norm"] = _sum_norms(grads)
        del weights, grads
    for name in names:
        if name == "params":
            values[name] = param_count(model)
        elif name == "flops":
            values[name] = flops(model, inputs)
        elif name == "synflow":
            values[name] = synflow(model, inputs)
        elif name == "jacob_cov":
            values[name] = jacob_cov(model, inputs)
        elif name == "naswot":
            values[name] = naswot(model, inputs)
        if not math.isfinite(values[name]):
            raise ValueError(f"static metric {name!r} is {values[name]} for this model, not a "
                             "finite number")
    return {name: values[name] for name in names}
