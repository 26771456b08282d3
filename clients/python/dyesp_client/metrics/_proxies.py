"""Zero-cost proxies on one batch, after NAS-Bench-Suite-Zero and Abdelfattah et al. (2021).

synflow, snip and grad_norm score the weights of Linear and Conv layers (as the reference does);
jacob_cov and naswot score the batch's Jacobian and ReLU activation patterns (Mellor et al. 2021).
Each runs through ``torch.func.functional_call`` on detached copies of the parameters and cloned
buffers, so the model's weights, ``.grad``, buffers and train/eval flags are left as they were.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dyesp_client.metrics._common import (
    LossFn,
    batchnorm_as_identity,
    call,
    cloned_buffers,
    detached_params,
    model_device,
    require_prunable,
    scoring_mode,
    to_model_device,
)

__all__ = ["grad_norm", "jacob_cov", "naswot", "snip", "synflow"]

# The activations NASWOT hooks: the reference matches class names containing "ReLU".
_RELUS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU)


def synflow(model: nn.Module, inputs: Tensor) -> float:
    """SynFlow (Tanaka et al. 2020) as a zero-cost proxy: ``sum |θ ⊙ ∂R/∂θ|``.

    The network is linearised (every parameter replaced by its absolute value), run in float64
    on one all-ones input shaped like a sample of ``inputs``, and ``R`` is the sum of the output.
    As in the reference (``bn=False``), BatchNorm layers are bypassed, which also keeps a single
    constant input from being normalised to zero; dropout is off. Only the shape of ``inputs``
    is used.
    """
    names = require_prunable(model, "synflow")
    inputs = to_model_device(model, inputs, "inputs")
    ones = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64, device=inputs.device)
    params = {name: p.detach().to(torch.float64).abs() for name, p in model.named_parameters()}
    weights = [params[name].requires_grad_(True) for name in names]
    with scoring_mode(model, training=False), batchnorm_as_identity(model):
        out = call(model, params, cloned_buffers(model, torch.float64), ones, "synflow")
        grads = torch.autograd.grad(out.sum(), weights, allow_unused=True)
    return _sum_abs_products(weights, grads)


def snip(model: nn.Module, inputs: Tensor, targets: Tensor, loss_fn: LossFn | None = None) -> float:
    """SNIP (Lee et al. 2019) as a zero-cost proxy: ``sum |θ ⊙ ∂L/∂θ|`` on one batch.

    ``L`` is ``loss_fn(model(inputs), targets)`` (cross-entropy by default), in train mode with
    dropout off, as in the reference.
    """
    weights, grads = _loss_gradients(model, inputs, targets, loss_fn, "snip")
    return _sum_abs_products(weights, grads)


def grad_norm(model: nn.Module, inputs: Tensor, targets: Tensor,
              loss_fn: LossFn | None = None) -> float:
    """The sum, over the Linear/Conv weight tensors, of the L2 norm of ``∂L/∂θ`` on one batch."""
    _, grads = _loss_gradients(model, inputs, targets, loss_fn, "grad_norm")
    return _sum_norms(grads)


def jacob_cov(model: nn.Module, inputs: Tensor) -> float:
    """Jacobian covariance (Mellor et al. 2021, v1), as in the reference implementation.

    The per-sample Jacobian ``J_i = ∂(sum of outputs)/∂x_i`` is taken on the batch (train mode,
    dropout off), ``Σ`` is the correlation matrix of the rows ``J_i``, and the score is
    ``-sum(log(λ + k) + 1/(λ + k))`` over the eigenvalues ``λ`` of ``Σ``, ``k = 1e-5``.
    Higher is better. Needs floating-point inputs and a batch of at least 2. Returns nan where a
    Jacobian row is constant (its correlation is undefined), as the reference does.
    """
    inputs = to_model_device(model, inputs, "inputs")
    if not inputs.is_floating_point():
        raise TypeError(f"jacob_cov differentiates with respect to the inputs, which must be "
                        f"floating point, got {inputs.dtype}")
    if inputs.shape[0] < 2:
        raise ValueError(f"jacob_cov needs a batch of at least 2 samples, got {inputs.shape[0]}")
    x = inputs.detach().clone().requires_grad_(True)
    with scoring_mode(model, training=True):
        out = call(model, detached_params(model), cloned_buffers(model), x, "jacob_cov")
        (grad,) = torch.autograd.grad(out, x, torch.ones_like(out), allow_unused=True)
    if grad is None:
        raise ValueError("jacob_cov: the model's output does not depend on its inputs")
    corr = torch.corrcoef(grad.reshape(grad.shape[0], -1).to(torch.float64))
    if not bool(torch.isfinite(corr).all()):
        return math.nan
    eigenvalues = torch.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-(torch.log(eigenvalues + k) + 1.0 / (eigenvalues + k)).sum())


def naswot(model: nn.Module, inputs: Tensor) -> float:
    """NASWOT (Mellor et al. 2021, "NAS without training"): ``log |det K_H|`` on the batch.

    Each ReLU-type module's input is binarised (``> 0``) per sample; ``K_H[i, j]`` sums, over all
    those units, 1 where samples ``i`` and ``j`` agree (``x xᵀ + (1 - x)(1 - x)ᵀ``). Run in train
    mode with dropout off, as in the reference; higher is better. A kernel that is singular (for
    instance every ReLU dead, so every sample has the same code) gives ``-inf``. Needs
    ``nn.ReLU``-type modules (a functional ``F.relu`` cannot be hooked), each seeing the batch as
    its first dimension.
    """
    relus = [module for module in model.modules() if isinstance(module, _RELUS)]
    if not relus:
        raise ValueError("naswot hooks nn.ReLU-type modules, and the model has none "
                         "(a functional F.relu cannot be hooked)")
    inputs = to_model_device(model, inputs, "inputs")
    n = inputs.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64, device=model_device(model))

    def count(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
        pre = args[0]
        if pre.shape[0] != n:
            raise ValueError(f"naswot expects ReLU inputs with the batch ({n}) as first "
                             f"dimension, got shape {tuple(pre.shape)}")
        code = (pre.detach().reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(code @ code.T).add_((1.0 - code) @ (1.0 - code).T)

    handles = [module.register_forward_pre_hook(count) for module in relus]
    try:
        with scoring_mode(model, training=True), torch.no_grad():
            call(model, detached_params(model), cloned_buffers(model), inputs, "naswot")
    finally:
        for handle in handles:
            handle.remove()
    _sign, logabsdet = torch.linalg.slogdet(kernel)
    return float(logabsdet)


def _loss_gradients(model: nn.Module, inputs: Tensor, targets: Tensor, loss_fn: LossFn | None,
                    metric: str) -> tuple[list[Tensor], list[Tensor]]:
    """The Linear/Conv weights and ``∂L/∂θ`` for them, on one batch in train mode."""
    names = require_prunable(model, metric)
    inputs = to_model_device(model, inputs, "inputs")
    targets = to_model_device(model, targets, "targets")
    params = detached_params(model)
    weights = [params[name].requires_grad_(True) for name in names]
    with scoring_mode(model, training=True):
        out = call(model, params, cloned_buffers(model), inputs, metric)
        loss = (loss_fn or F.cross_entropy)(out, targets)
        if loss.numel() != 1:
            raise ValueError(f"{metric}: loss_fn must return a scalar, got shape "
                             f"{tuple(loss.shape)}")
        grads = torch.autograd.grad(loss.reshape(()), weights, allow_unused=True)
    return weights, [torch.zeros_like(w) if g is None else g
                     for w, g in zip(weights, grads, strict=True)]


def _sum_abs_products(weights: list[Tensor], grads: tuple[Tensor | None, ...] | list[Tensor]
                      ) -> float:
    total = torch.zeros((), dtype=torch.float64)
    for weight, grad in zip(weights, grads, strict=True):
        if grad is not None:
            total += (weight.detach().double() * grad.double()).abs().sum().cpu()
    return float(total)


def _sum_norms(grads: list[Tensor]) -> float:
    return float(sum(float(torch.linalg.vector_norm(g.double())) for g in grads))
