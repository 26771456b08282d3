"""Training the pruner's MLP ensemble with torch: a pure function, arrays in, weights out.

``train_pruner`` takes a ``TrainingSet`` (made by ``service.engine.pruner.make_training_set``) and
optionally the previous model, and returns a ``PrunerModel`` whose weights the engine runs with
numpy (DESIGN rule 8). The device is passed in (CUDA when present and none is given), torch's
thread count is capped for the call and restored after, and on CPU the result is a deterministic
function of the inputs and the seed.

The ensemble is trained as one batched network (``bmm`` over members), so five members cost
barely more than one. Members differ by initialisation and by a bootstrap resample of the trials.
The loss is the squared error on rank goodness plus a pairwise logistic ranking term, since only
the order of the predictions matters to pruning.

Times on a shared 2-core CPU, 1 thread, 5 members of 2 x 64 hidden units, 42 features (median
of 5; scratch / fine-tune): 200 trials 85 / 35 ms, 1,000 trials 100 / 40 ms, 10,000 trials
0.44 / 0.16 s. Batches grow with the history, so the cost is about linear in the trials.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from service.engine.pruner import PrunerModel, TrainingSet, fit_scaling, standardize
from service.engine.stats import spearman


@dataclass(frozen=True)
class TrainOptions:
    """The numbers that shape training, with why they are what they are."""

    members: int = 5  # enough spread for an uncertainty estimate; batched, so nearly free
    hidden: tuple[int, ...] = (64, 64)  # fits 10 trials with weight decay, 10k without underfit
    steps: int = 100  # from scratch; at least `min_epochs` passes over the data on large sets
    finetune_steps: int = 40  # from the previous weights: they already know most of the answer
    min_epochs: float = 8.0
    finetune_min_epochs: float = 3.0
    max_steps: int = 3000  # bounds the time on very large histories
    batch_size: int = 64  # small batches: as good as full ones here, and a third of the work
    batches_per_epoch: int = 16  # large histories get larger batches rather than more steps
    lr: float = 6e-3
    finetune_lr: float = 3e-3
    weight_decay: float = 1e-3
    rank_weight: float = 0.5  # pairwise ranking term next to the squared error on goodness
    rank_rows: int = 64  # the ranking term compares all pairs among this many rows of a batch


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def train_pruner(ts: TrainingSet, previous: PrunerModel | None = None, *,
                 device: str | None = None, seed: int = 0, steps: int | None = None,
                 options: TrainOptions | None = None, threads: int = 1) -> PrunerModel:
    """Train (or fine-tune) the pruner on ``ts``; return the exported numpy model.

    Fine-tunes from ``previous`` (fewer steps, lower learning rate) when it was trained for the
    same feature layout (fingerprint) and architecture; otherwise trains from scratch. ``steps``
    overrides the number of optimiser steps.
    """
    options = options or TrainOptions()
    X = np.asarray(ts.X, dtype=np.float64)
    y = np.asarray(ts.y, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
    if X.shape[0] < 2:
        raise ValueError(f"training needs at least 2 labelled trials, got {X.shape[0]}")
    if not np.all((y >= 0) & (y <= 1)):
        raise ValueError("goodness labels must lie in [0, 1]")
    center, scale = fit_scaling(X, len(ts.metric_names))
    warm = previous is not None and _compatible(previous, ts, options)
    dev = torch.device(device or default_device())
    rng = np.random.default_rng(seed)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        generator = torch.Generator().manual_seed(seed)
        if warm:
            assert previous is not None
            layers = _params_from(previous, center, scale)
        else:
            layers = _init_params(X.shape[1], options, generator)
        shapes = [t.shape for layer in layers for t in layer]
        # One flat parameter vector and a hand-written AdamW on it: at these sizes the per-tensor
        # bookkeeping of torch.optim costs more than the arithmetic.
        theta = torch.cat([t.reshape(-1) for layer in layers for t in layer]).to(dev)
        theta.requires_grad_()
        sizes = [int(np.prod(shape)) for shape in shapes]
        n = X.shape[0]
        batch = min(n, max(options.batch_size, math.ceil(n / options.batches_per_epoch)))
        epochs = options.finetune_min_epochs if warm else options.min_epochs
        base = options.finetune_steps if warm else options.steps
        n_steps = steps if steps is not None else min(
            options.max_steps, max(base, math.ceil(epochs * n / batch)))
        lr = options.finetune_lr if warm else options.lr
        Z = torch.as_tensor(standardize(X, center, scale), dtype=torch.float32, device=dev)
        Y = torch.as_tensor(y, dtype=torch.float32, device=dev)
        # Bootstrap: each member sees its own resample of the trials (all of them when only a few).
        boot = rng.integers(n, size=(options.members, n)) if n >= 8 else np.tile(
            np.arange(n), (options.members, 1))
        batches = _batches(rng, boot, batch, n_steps, dev)
        m1 = torch.zeros_like(theta)
        m2 = torch.zeros_like(theta)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for step, idx in enumerate(batches):
            params = [p.view(shape) for p, shape in
                      zip(torch.split(theta, sizes), shapes, strict=True)]
            loss = _loss(params, Z[idx], Y[idx], options.rank_weight, options.rank_rows)
            (grad,) = torch.autograd.grad(loss, theta)
            with torch.no_grad():
                m1.lerp_(grad, 1 - beta1)
                m2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                correction1 = 1 - beta1 ** (step + 1)
                correction2 = 1 - beta2 ** (step + 1)
                denominator = (m2 / correction2).sqrt_().add_(eps)
                theta.mul_(1 - lr * options.weight_decay)
                theta.addcdiv_(m1, denominator, value=-lr / correction1)
        params = [p.view(shape) for p, shape in
                  zip(torch.split(theta.detach(), sizes), shapes, strict=True)]
        members = _export(params, options.members)
    finally:
        torch.set_num_threads(old_threads)
    return PrunerModel(members, center, scale, ts.fingerprint, tuple(ts.metric_names),
                       int(ts.n_trials), int(ts.n_prior))


def forward(params: list[torch.Tensor], Z: torch.Tensor) -> torch.Tensor:
    """Logits (members, batch) of the batched ensemble for inputs (members, batch, features)."""
    h = Z
    n_layers = len(params) // 2
    for i in range(n_layers):
        W, b = params[2 * i], params[2 * i + 1]
        h = torch.baddbmm(b, h, W)
        if i < n_layers - 1:
            h = torch.relu(h)
    return h[..., 0]


def predict_torch(model: PrunerModel, X: np.ndarray) -> np.ndarray:
    """Each member's predicted goodness (members, n), with torch: to check the numpy inference."""
    Z = torch.as_tensor(standardize(X, model.x_mean, model.x_std), dtype=torch.float32)
    params = []
    for i in range(len(model.members[0])):
        params.append(torch.as_tensor(np.stack([member[i][0] for member in model.members])))
        params.append(torch.as_tensor(np.stack([member[i][1][None] for member in model.members])))
    with torch.no_grad():
        return torch.sigmoid(forward(params, Z.expand(len(model.members), -1, -1))).numpy()


def evaluate(model: PrunerModel, ts: TrainingSet) -> dict[str, float]:
    """How well ``model`` ranks held-out rows: Spearman and squared error against goodness, the
    mean ensemble spread, and the goodness of the best-predicted row."""
    if model.fingerprint != ts.fingerprint:
        raise ValueError(f"model fingerprint {model.fingerprint} must match the set's "
                         f"{ts.fingerprint}")
    mean, std = model.predict(ts.X)
    return {"n": float(len(ts.y)), "spearman": spearman(mean, ts.y),
            "mse": float(np.mean((mean - ts.y) ** 2)), "mean_std": float(np.mean(std)),
            "top1_goodness": float(ts.y[int(np.argmax(mean))]) if len(ts.y) else float("nan")}


def _loss(params: list[torch.Tensor], Z: torch.Tensor, Y: torch.Tensor, rank_weight: float,
          rank_rows: int) -> torch.Tensor:
    logits = forward(params, Z)
    mse = torch.mean((torch.sigmoid(logits) - Y) ** 2)
    if rank_weight <= 0:
        return mse
    # Logistic loss on the order of every pair among the first `rank_rows` rows of the (random)
    # batch, weighted by how far apart the pair's goodness is (ties weigh nothing).
    s, y = logits[:, :rank_rows], Y[:, :rank_rows]
    diff_y = y[:, :, None] - y[:, None, :]
    diff_s = s[:, :, None] - s[:, None, :]
    rank = torch.mean(diff_y.abs() * torch.nn.functional.softplus(-torch.sign(diff_y) * diff_s))
    return mse + rank_weight * rank


def _batches(rng: np.random.Generator, boot: np.ndarray, batch: int, n_steps: int,
             device: torch.device, chunk: int = 64):
    """Row indices (members, batch) per step: a random batch of each member's bootstrap (a
    random order of all of it when it fits in one batch), drawn a chunk of steps at a time."""
    members, n = boot.shape
    for first in range(0, n_steps, chunk):
        k = min(chunk, n_steps - first)
        if batch == n:
            order = rng.permuted(np.broadcast_to(np.arange(n), (k, members, n)), axis=2)
        else:
            order = rng.integers(n, size=(k, members, batch))
        picks = torch.as_tensor(np.take_along_axis(boot[None], order, axis=2), device=device)
        yield from picks


def _init_params(n_features: int, options: TrainOptions,
                 generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """torch.nn.Linear's default initialisation, one independent draw per member."""
    sizes = [n_features, *options.hidden, 1]
    layers = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        bound = 1.0 / math.sqrt(fan_in)
        W = (torch.rand(options.members, fan_in, fan_out, generator=generator) * 2 - 1) * bound
        b = (torch.rand(options.members, 1, fan_out, generator=generator) * 2 - 1) * bound
        layers.append((W, b))
    return layers


def _compatible(previous: PrunerModel, ts: TrainingSet, options: TrainOptions) -> bool:
    return (previous.fingerprint == ts.fingerprint
            and previous.n_features == ts.X.shape[1]
            and len(previous.members) == options.members
            and previous.hidden == tuple(options.hidden))


def _params_from(previous: PrunerModel, center: np.ndarray,
                 scale: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The previous weights, with the first layer rewritten for the new feature scaling so the
    network computes the same function of the raw features as before (up to clipping)."""
    layers = []
    for i in range(len(previous.members[0])):
        W = np.stack([member[i][0] for member in previous.members]).astype(np.float64)
        b = np.stack([member[i][1] for member in previous.members]).astype(np.float64)
        if i == 0:
            # W z_old + b = W' z_new + b' with z = (x - c) / s.
            shift = (center - previous.x_mean) / previous.x_std
            b = b + np.einsum("f,mfo->mo", shift, W)
            W = W * (scale / previous.x_std)[None, :, None]
        layers.append((torch.as_tensor(W, dtype=torch.float32),
                       torch.as_tensor(b.reshape(len(previous.members), 1, -1),
                                       dtype=torch.float32)))
    return layers


def _export(params: list[torch.Tensor], n_members: int) -> tuple:
    arrays = [p.detach().to("cpu", torch.float32).numpy().copy() for p in params]
    return tuple(
        tuple((arrays[2 * i][m], arrays[2 * i + 1][m].reshape(-1))
              for i in range(len(arrays) // 2))
        for m in range(n_members))
