"""Golden traces: what the engine proposes, ask after ask, for fixed spaces, seeds and results.

A refactor of the engine must leave these byte-for-byte alone (within 10 significant digits, so a
float that only changed in its last bit of noise is not a change). A deliberate change of
behaviour regenerates them and says why in its commit:
``DYESP_REGEN_GOLDEN=1 pytest tests/engine/test_golden_proposals.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.engine import transfer
from service.engine.optimizer import Optimizer
from service.engine.space import SearchSpace
from tests.engine.conftest import SPACES, DistanceModel, toy_loss

GOLDEN = Path(__file__).parent / "golden" / "proposals.json"
REGENERATE = os.environ.get("DYESP_REGEN_GOLDEN") == "1"


def _canonical(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.10g}")
    return value


def _trace(optimizer: Optimizer, rounds: int, batch: int = 1) -> list[list[Any]]:
    """Run ``rounds`` asks of ``batch`` configurations, telling each its toy loss."""
    out = []
    for _ in range(rounds):
        for suggestion in optimizer.ask_many(batch):
            info = suggestion.proposal
            out.append([info.strategy, _canonical(info.exploration),
                        None if info.predicted is None else _canonical(info.predicted),
                        {k: _canonical(v) for k, v in sorted(suggestion.params.items())}])
            optimizer.tell(suggestion, toy_loss(suggestion.params))
    return out


def _distance_trainer(space: SearchSpace):
    """A real numpy model in place of torch: every 'training' returns a model that prefers the
    configuration nearest the toy optimum, so the pruner's whole path (trust, pruning) runs."""
    target = SPACES["mixed_conditional"].sample(np.random.default_rng(11)) \
        if space is SPACES["mixed_conditional"] else space.sample(np.random.default_rng(11))

    def train(_training_set, _previous):
        return DistanceModel(space, target)

    return train


def _prior_studies() -> list[tuple[Any, ...]]:
    space = SPACES["mixed_conditional"]
    out = []
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        configs = [space.sample(rng) for _ in range(30)]
        out.append((f"prior{seed}", "minimize", configs, [toy_loss(c) for c in configs]))
    return out


def cases() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, space in sorted(SPACES.items()):
        out[f"{name}/sequential"] = lambda space=space: _trace(Optimizer(space, seed=3), 24)
        out[f"{name}/batches"] = lambda space=space: _trace(Optimizer(space, seed=5), 6, 3)
    mixed = SPACES["mixed_conditional"]
    out["mixed_conditional/pruner"] = lambda: _trace(
        Optimizer(mixed, seed=7, trainer=_distance_trainer(mixed)), 40)
    out["mixed_conditional/transfer"] = lambda: _trace(
        Optimizer(mixed, seed=9, prior=transfer.build_prior(mixed, _prior_studies())), 20)
    out["maximize/float_only"] = lambda: _trace(
        Optimizer(SPACES["float_only"], direction="maximize", seed=13), 20)
    return out


CASES = cases()


@pytest.mark.skipif(REGENERATE, reason="regenerating the golden file")
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_engine_proposes_exactly_what_it_did(case: str) -> None:
    golden = json.loads(GOLDEN.read_text())
    assert case in golden, f"no golden trace for {case}: regenerate (see the module docstring)"
    assert CASES[case]() == golden[case]


@pytest.mark.skipif(not REGENERATE, reason="set DYESP_REGEN_GOLDEN=1 to regenerate")
def test_regenerate_golden_traces() -> None:
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({case: run() for case, run in sorted(CASES.items())},
                                 indent=0) + "\n")
