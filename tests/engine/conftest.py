"""Shared spaces, histories and a tiny real pruner model for the engine tests."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.encoding import Encoder
from service.engine.history import History, Observation, ProposalInfo, TrialState
from service.engine.pruner import feature_fingerprint
from service.engine.space import SearchSpace

SPACES = {
    "mixed_conditional": SearchSpace.from_dict({"params": [
        {"name": "x", "type": "float", "low": -5.0, "high": 5.0},
        {"name": "n", "type": "int", "low": 1, "high": 64, "log": True},
        {"name": "kind", "type": "categorical", "choices": ["a", "b", "c"]},
        {"name": "a_rate", "type": "float", "low": 1e-4, "high": 1.0, "log": True,
         "condition": {"parent": "kind", "values": ["a"]}},
        {"name": "b_depth", "type": "int", "low": 1, "high": 4,
         "condition": {"parent": "kind", "values": ["b"]}},
    ]}),
    "categorical_only": SearchSpace.from_dict({"params": [
        {"name": f"op{i}", "type": "categorical", "choices": ["none", "skip", "conv", "pool"]}
        for i in range(4)]}),
    "ordinal_grid": SearchSpace.from_dict({"params": [
        {"name": "lr", "type": "categorical", "choices": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]},
        {"name": "width", "type": "categorical", "choices": [16, 32, 64, 128]},
        {"name": "depth", "type": "int", "low": 1, "high": 3}]}),
    "float_only": SearchSpace.from_dict({"params": [
        {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
        {"name": "y", "type": "float", "low": 1e-3, "high": 10.0, "log": True}]}),
    "tiny": SearchSpace.from_dict({"params": [
        {"name": "a", "type": "categorical", "choices": [True, False]},
        {"name": "b", "type": "int", "low": 0, "high": 1}]}),
}


def toy_loss(params: dict) -> float:
    """A deterministic loss any space above can be scored with (distance from a fixed point)."""
    total = 0.0
    for _name, value in sorted(params.items()):
        if isinstance(value, str | bool):
            total += 0.0 if value in ("conv", "a", True) else 1.0
        else:
            total += (np.log10(abs(float(value)) + 1e-3) - 0.3) ** 2
    return total


def make_history(space: SearchSpace, n: int, seed: int = 0, *, strategy: str = "random",
                 state: TrialState = TrialState.COMPLETE, running: int = 0,
                 direction: str = "minimize") -> History:
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n + running):
        params = space.sample(rng)
        if i < n:
            value = toy_loss(params) if state is TrialState.COMPLETE else None
            trials.append(Observation(i, params, state, value,
                                      proposal=ProposalInfo(strategy, 0.5)))
        else:
            trials.append(Observation(i, params, TrialState.RUNNING,
                                      proposal=ProposalInfo(strategy, 0.5)))
    return History(direction, tuple(trials))  # type: ignore[arg-type]


class DistanceModel:
    """A real (numpy) pruner stand-in: predicted goodness falls with distance from ``target``
    in encoded space. Fingerprinted like the real model so the engine accepts it."""

    def __init__(self, space: SearchSpace, target: dict, metric_names: tuple[str, ...] = ()):
        self.encoder = Encoder(space)
        self.target = self.encoder.encode(target)
        self.metric_names = metric_names
        self.fingerprint = feature_fingerprint(self.encoder, metric_names)
        self.n_train = 50

    def applies_to(self, encoder: Encoder, metric_names) -> bool:
        return self.fingerprint == feature_fingerprint(encoder, metric_names)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        width = self.encoder.dim
        distance = np.linalg.norm(X[:, :width] - self.target, axis=1)
        mean = np.exp(-4.0 * distance)
        return mean, np.full(len(X), 0.05)


@pytest.fixture(params=sorted(SPACES))
def space_name(request: pytest.FixtureRequest) -> str:
    return request.param
