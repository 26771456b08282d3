"""Static metrics: exact sizes and FLOPs, and zero-cost proxies that leave the model alone."""

from __future__ import annotations

import doctest
import math
import subprocess
import sys
from collections.abc import Callable

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

import dyesp_client.metrics._static as static_module  # noqa: E402
from dyesp_client.metrics import (  # noqa: E402
    METRIC_NAMES,
    compute_static_metrics,
    flops,
    grad_norm,
    jacob_cov,
    naswot,
    param_count,
    snip,
    synflow,
)

F = nn.functional


def mlp(width: int = 16, seed: int = 0, bias: bool = True) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, width, bias=bias), nn.ReLU(),
                         nn.Linear(width, 3, bias=bias))


def cnn(seed: int = 0) -> nn.Sequential:
    """BatchNorm (buffers that train mode would update) and Dropout (randomness in train mode)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                         nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def batch(shape: tuple[int, ...] = (8, 6), classes: int = 3, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator),
            torch.randint(0, classes, (shape[0],), generator=generator))


IMAGES = batch((8, 3, 6, 6), classes=4)

# Every metric as f(model, inputs, targets).
METRICS: dict[str, Callable[..., float]] = {
    "params": lambda m, x, y: param_count(m),
    "flops": lambda m, x, y: flops(m, x),
    "synflow": lambda m, x, y: synflow(m, x),
    "snip": snip,
    "grad_norm": grad_norm,
    "jacob_cov": lambda m, x, y: jacob_cov(m, x),
    "naswot": lambda m, x, y: naswot(m, x),
}


def test_param_count_counts_trainable_parameters_once() -> None:
    assert param_count(mlp(16)) == (6 * 16 + 16) + (16 * 3 + 3)
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(4, 2))
    model[3].bias.requires_grad_(False)
    assert param_count(model) == (16 + 4) + 8


def test_flops_are_torch_flop_counter_totals() -> None:
    # FlopCounterMode counts a matmul as 2*m*n*k and ignores bias adds and activations.
    x = torch.randn(5, 8)
    assert flops(nn.Linear(8, 4), x) == 2 * 5 * 8 * 4
    assert flops(nn.Linear(8, 4, bias=False), x) == 2 * 5 * 8 * 4
    assert flops(nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2)), x) == (
        2 * 5 * 8 * 4 + 2 * 5 * 4 * 2)
    # Conv: 2 * batch * out spatial positions * (out_channels * in_channels * kh * kw).
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
    assert flops(conv, torch.randn(2, 3, 5, 5)) == 2 * 2 * 25 * (4 * 3 * 3 * 3)


@pytest.mark.parametrize("name", list(METRICS))
def test_each_metric_is_finite_and_deterministic(name: str) -> None:
    model = cnn().train()
    x, y = IMAGES
    first = METRICS[name](model, x, y)
    assert isinstance(first, float) and math.isfinite(first)
    assert METRICS[name](model, x, y) == first  # dropout is off, so no randomness at all


@pytest.mark.parametrize("name", list(METRICS))
@pytest.mark.parametrize("training", [True, False])
def test_each_metric_leaves_the_model_as_it_was(name: str, training: bool) -> None:
    model = cnn().train(training)
    model[3].train(not training)                    # a module whose flag differs from its parent
    model[6].bias.requires_grad_(False)             # a frozen parameter
    model[0].weight.grad = torch.full_like(model[0].weight, 0.5)  # a grad from earlier training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.grad for n, p in model.named_parameters()}
    flags = [m.training for m in model.modules()]
    requires = [p.requires_grad for p in model.parameters()]
    rng = torch.get_rng_state()

    METRICS[name](model, *IMAGES)

    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)  # weights and BN statistics
    assert all(p.grad is grads[n] for n, p in model.named_parameters())  # the same grads or None
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 0.5))
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == requires
    assert torch.equal(torch.get_rng_state(), rng)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_snip_and_grad_norm_match_a_plain_backward_pass() -> None:
    model, (x, y) = mlp(), batch()
    F.cross_entropy(model(x), y).backward()
    weights = [model[0].weight, model[2].weight]  # the reference scores Linear/Conv weights
    assert snip(model, x, y) == pytest.approx(
        sum(float((w * w.grad).abs().sum().detach()) for w in weights), rel=1e-6)
    assert grad_norm(model, x, y) == pytest.approx(
        sum(float(w.grad.norm()) for w in weights), rel=1e-6)


def test_the_loss_fn_is_used() -> None:
    model, (x, y) = mlp(), batch()
    double = lambda out, target: 2 * F.cross_entropy(out, target)  # noqa: E731
    assert snip(model, x, y, loss_fn=double) == pytest.approx(2 * snip(model, x, y), rel=1e-9)
    assert grad_norm(model, x, y, loss_fn=double) == pytest.approx(2 * grad_norm(model, x, y),
                                                                   rel=1e-9)


def test_synflow_of_a_bias_free_net_is_depth_times_its_linearised_output() -> None:
    # R(θ) = 1ᵀ|W2||W1|1 is linear in each layer's weights, so sum θ ∂R/∂θ = R per layer.
    # The ReLU is the identity on positive values and BatchNorm is bypassed, as in the reference.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.Linear(16, 3, bias=False))
    w1, w2 = (layer.weight.detach().double().abs() for layer in (model[0], model[3]))
    linearised_output = float((w2 @ w1 @ torch.ones(6, dtype=torch.float64)).sum())
    assert synflow(model, torch.randn(4, 6)) == pytest.approx(2 * linearised_output, rel=1e-12)


def test_synflow_is_zero_when_a_layer_is_zeroed() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    assert synflow(model, torch.randn(4, 6)) > 0
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].bias.zero_()
    assert synflow(model, torch.randn(4, 6)) == 0.0


def test_jacob_cov_of_a_linear_net_has_fully_correlated_jacobians() -> None:
    # Every sample of y = Wx + b has the same Jacobian, so the correlation matrix is all ones,
    # with eigenvalues n and 0 (n - 1 times).
    model, (x, _) = nn.Linear(6, 3), batch()
    n, k = x.shape[0], 1e-5
    expected = -((math.log(n + k) + 1 / (n + k)) + (n - 1) * (math.log(k) + 1 / k))
    assert jacob_cov(model, x) == pytest.approx(expected, rel=1e-6)


def test_naswot_is_the_log_determinant_of_the_activation_code_kernel() -> None:
    model, (x, _) = mlp(), batch()
    code = (model[0](x) > 0).double()
    kernel = code @ code.T + (1 - code) @ (1 - code).T
    assert naswot(model, x) == pytest.approx(float(torch.linalg.slogdet(kernel)[1]), rel=1e-12)


def test_naswot_scores_dead_relus_below_a_random_net() -> None:
    x, _ = batch()
    dead = mlp(64)
    with torch.no_grad():
        dead[0].weight.zero_()
        dead[0].bias.fill_(-1.0)  # every pre-activation is negative: one code for every sample
    alive = naswot(mlp(64), x)
    assert math.isfinite(alive)
    assert naswot(dead, x) < alive  # the degenerate kernel is singular: -inf


def test_compute_static_metrics_returns_exactly_the_requested_names() -> None:
    x, y = IMAGES
    metrics = compute_static_metrics(cnn(), x, y)
    assert list(metrics) == list(METRIC_NAMES)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert metrics["params"] == param_count(cnn())
    assert metrics["snip"] == snip(cnn(), x, y)
    assert metrics["grad_norm"] == grad_norm(cnn(), x, y)
    assert list(compute_static_metrics(cnn(), x, names=["naswot", "params"])) == [
        "naswot", "params"]
    assert list(compute_static_metrics(cnn(), x, names="flops")) == ["flops"]


def test_compute_static_metrics_refuses_what_it_cannot_compute() -> None:
    x, y = batch()
    with pytest.raises(ValueError, match="unknown static metric"):
        compute_static_metrics(mlp(), x, y, names=["params", "zen"])
    with pytest.raises(ValueError, match="snip and grad_norm need `targets`"):
        compute_static_metrics(mlp(), x)
    dead = mlp()
    with torch.no_grad():
        dead[0].weight.zero_()
        dead[0].bias.fill_(-1.0)
    with pytest.raises(ValueError, match="'naswot' is -inf"):
        compute_static_metrics(dead, x, y, names=["params", "naswot"])
    with pytest.raises(ValueError, match="'jacob_cov' is nan"):  # every Jacobian row is zero
        compute_static_metrics(dead, x, y, names=["jacob_cov"])


def test_the_documented_example_runs() -> None:
    assert doctest.testmod(static_module, raise_on_error=False).failed == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inputs_follow_the_model_to_its_device() -> None:
    x, y = IMAGES
    on_cpu = compute_static_metrics(cnn(), x, y)
    on_gpu = compute_static_metrics(cnn().cuda(), x, y)  # CPU batch, CUDA model
    assert on_gpu.keys() == on_cpu.keys()
    for name, value in on_cpu.items():
        assert on_gpu[name] == pytest.approx(value, rel=1e-3, abs=1e-6), name


def test_importing_the_sdk_never_needs_torch() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "import dyesp_client\n"
            "try:\n"
            "    import dyesp_client.metrics\n"
            "except ImportError as error:\n"
            "    print(error)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert "needs torch" in result.stdout and "pip install torch" in result.stdout
