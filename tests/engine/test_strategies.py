"""One contract suite run against every strategy (DESIGN rule 5; Optuna's StorageTestCase)."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.encoding import encoder_for
from service.engine.history import History, Observation, ProposalInfo, TrialState, seen_keys
from service.engine.space import config_key, enumerate_configs
from service.engine.strategies import STRATEGIES, Context, Strategy
from tests.engine.conftest import SPACES, make_history

ALL = sorted(STRATEGIES)


def context_for(space, history: History, **kwargs) -> Context:
    return Context(encoder_for(space), seen=frozenset(seen_keys(history)),
                   incumbent=history.best(), **kwargs)


def run(strategy: Strategy, space, history: History, n: int, seed: int = 0, **kwargs):
    return strategy.propose(space, history, n, np.random.default_rng(seed),
                            context_for(space, history, **kwargs))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n_trials", [0, 15])
def test_returns_n_distinct_valid_configs(name: str, space_name: str, n_trials: int) -> None:
    space = SPACES[space_name]
    history = make_history(space, min(n_trials, 2) if space_name == "tiny" else n_trials)
    out = run(STRATEGIES[name], space, history, 2)
    assert len(out) == 2
    for config in out:
        assert space.validate_config(config) == config  # active params only, in range
    assert len({config_key(c) for c in out}) == 2


@pytest.mark.parametrize("name", ALL)
def test_never_repeats_a_tried_or_running_configuration(name: str, space_name: str) -> None:
    space = SPACES[space_name]
    history = make_history(space, 1 if space_name == "tiny" else 12, running=1)
    seen = seen_keys(history)
    out = run(STRATEGIES[name], space, history, 2)
    assert out and not {config_key(c) for c in out} & seen


@pytest.mark.parametrize("name", ALL)
def test_is_deterministic_for_the_same_rng(name: str, space_name: str) -> None:
    space = SPACES[space_name]
    history = make_history(space, 2 if space_name == "tiny" else 20, seed=3)
    first = run(STRATEGIES[name], space, history, 2, seed=7)
    assert first == run(STRATEGIES[name], space, history, 2, seed=7)
    if space_name in ("float_only", "mixed_conditional"):  # continuous: a new rng must matter
        assert first != run(STRATEGIES[name], space, history, 2, seed=8)


@pytest.mark.parametrize("name", ALL)
def test_handles_an_all_failed_or_all_infeasible_history(name: str) -> None:
    space = SPACES["mixed_conditional"]
    for state in (TrialState.FAILED, TrialState.INFEASIBLE):
        history = make_history(space, 10, state=state)
        out = run(STRATEGIES[name], space, history, 3)
        assert len(out) == 3
        for config in out:
            space.validate_config(config)


@pytest.mark.parametrize("name", ALL)
def test_finds_the_last_untried_configuration_of_a_tiny_space(name: str) -> None:
    space = SPACES["tiny"]
    every = enumerate_configs(space, 100)
    assert every is not None and len(every) == 4
    trials = tuple(Observation(i, c, TrialState.COMPLETE, float(i),
                               proposal=ProposalInfo(name, 0.5)) for i, c in enumerate(every[:3]))
    out = run(STRATEGIES[name], space, History("minimize", trials), 1)
    assert [config_key(c) for c in out] == [config_key(every[3])]
    # Fully tried: fewer than asked is allowed, but whatever comes back must be valid.
    full = History("minimize", (*trials, Observation(3, every[3], TrialState.COMPLETE, 9.0)))
    for config in run(STRATEGIES[name], space, full, 2):
        space.validate_config(config)


@pytest.mark.parametrize("name", ALL)
def test_maximize_direction_is_respected(name: str) -> None:
    """A strategy that models results must exploit the high values when maximising."""
    if name == "random":
        pytest.skip("random ignores results by design")
    space = SPACES["float_only"]
    rng = np.random.default_rng(0)
    trials = []
    for i in range(40):
        params = space.sample(rng)
        trials.append(Observation(i, params, TrialState.COMPLETE, params["x"],
                                  proposal=ProposalInfo(name, 0.5)))
    history = History("maximize", tuple(trials))
    out = run(STRATEGIES[name], space, history, 6, exploration=0.1)
    assert np.mean([c["x"] for c in out]) > 0.6


def test_surrogate_ranks_by_the_scorer_when_given() -> None:
    space = SPACES["float_only"]
    history = make_history(space, 20)

    def prefers_small_x(configs, encoded=None):  # a Scorer's signature
        x = np.array([c["x"] for c in configs])
        return 1.0 - x, np.zeros(len(x))

    out = run(STRATEGIES["surrogate"], space, history, 3, scorer=prefers_small_x, exploration=0.0)
    assert max(c["x"] for c in out) < 0.25


def test_local_search_stays_near_the_incumbent() -> None:
    space = SPACES["float_only"]
    trials = [Observation(0, {"x": 0.5, "y": 1.0}, TrialState.COMPLETE, 0.0)]
    trials += [Observation(i, space.sample(np.random.default_rng(i)), TrialState.COMPLETE, 5.0)
               for i in range(1, 10)]
    out = run(STRATEGIES["local"], space, History("minimize", tuple(trials)), 8)
    assert np.mean([abs(c["x"] - 0.5) for c in out]) < 0.2
