"""Plumbing shared by the metrics: run a model without changing anything about it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd

LossFn = Callable[[Tensor, Tensor], Tensor]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def to_model_device(model: nn.Module, tensor: Tensor, what: str) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"`{what}` must be a torch.Tensor, got {type(tensor).__name__}")
    return tensor.to(model_device(model))


def prunable_weights(model: nn.Module) -> list[str]:
    """Names (as in ``named_parameters``) of the weights of Linear and Conv layers.

    These are the weights the reference implementations score (``get_layer_metric_array`` of
    Abdelfattah et al. 2021, kept by NAS-Bench-Suite-Zero). A weight shared by several layers is
    listed once, under the name ``named_parameters`` gives it.
    """
    canonical = {id(p): name for name, p in model.named_parameters()}
    names: list[str] = []
    for module in model.modules():
        if isinstance(module, (nn.Linear, _ConvNd)) and isinstance(module.weight, nn.Parameter):
            name = canonical.get(id(module.weight))
            if name is not None and name not in names:
                names.append(name)
    return names


def require_prunable(model: nn.Module, metric: str) -> list[str]:
    names = prunable_weights(model)
    if not names:
        raise ValueError(f"{metric} scores the weights of Linear and Conv layers, and the model "
                         "has none")
    return names


@contextmanager
def scoring_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Put every module in train (or eval) mode with dropout off; restore each flag afterwards.

    Dropout is switched off so that a proxy is deterministic without touching the global random
    state (a custom ``F.dropout`` call keyed on ``self.training`` is still random in train mode).
    """
    saved = [(module, module.training) for module in model.modules()]
    try:
        for module in model.modules():
            module.training = training and not isinstance(module, _DropoutNd)
        yield
    finally:
        for module, flag in saved:
            module.training = flag


@contextmanager
def batchnorm_as_identity(model: nn.Module) -> Iterator[None]:
    """Make every BatchNorm layer return its input, as synflow's reference does (``bn=False``)."""
    handles = [module.register_forward_hook(lambda _module, args, _out: args[0])
               for module in model.modules() if isinstance(module, _BatchNorm)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def cloned_buffers(model: nn.Module, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """Copies of the buffers, so that a forward pass in train mode leaves the model's alone."""
    return {name: (buffer.detach().to(dtype, copy=True)
                   if dtype is not None and buffer.is_floating_point()
                   else buffer.detach().clone())
            for name, buffer in model.named_buffers()}


def detached_params(model: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach() for name, p in model.named_parameters()}


def call(model: nn.Module, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
         inputs: Tensor, metric: str) -> Tensor:
    """``model(inputs)`` with the given tensors in place of its parameters and buffers."""
    out: Any = functional_call(model, (dict(params), dict(buffers)), (inputs,))
    if not isinstance(out, Tensor):
        raise TypeError(f"{metric} needs a model whose forward returns one tensor, "
                        f"got {type(out).__name__}")
    return out
