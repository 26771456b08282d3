"""The one small interface every proposal strategy implements, and the context it receives.

A strategy is a pure function of (space, history, n, rng, context): it keeps no state between
calls, so any server process can answer any ask and the same inputs give the same proposals.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from service.engine.encoding import Encoder
from service.engine.history import History, Key, Observation
from service.engine.space import SearchSpace, config_key

Config = dict[str, Any]
# The pruner's view of candidates: predicted goodness in [0, 1] (1 = best) and its uncertainty.
Scorer = Callable[[Sequence[Mapping[str, Any]]], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Context:
    """What the scheduler tells a strategy for this ask, beyond the space and the history.

    ``exploration`` in [0, 1]: 0 = exploit the incumbents hard, 1 = spread out. ``pool_size``: how
    many candidates a ranking strategy may generate and rank. ``seen``: keys of configurations
    already complete, running or infeasible (and of earlier picks in this batch), which a strategy
    should not propose again. ``scorer``: the pruner's predictions, when it has any.
    """

    encoder: Encoder
    exploration: float = 0.5
    pool_size: int = 64
    incumbent: Observation | None = None
    seen: frozenset[Key] = field(default_factory=frozenset)
    scorer: Scorer | None = None
    # The prior studies' opinion (``service.engine.transfer``), while it is trusted: a ranking
    # strategy mixes it in with ``transfer.weight`` and adds its best configurations to its pool.
    transfer: Any = None


class Strategy(ABC):
    """A way of proposing configurations. The contract, pinned by tests/engine/test_strategies.py:

    - return at most ``n`` configurations, each valid under ``space.validate_config`` (only active
      params, in range), distinct from each other, best first; fewer than ``n`` only when the space
      has no more untried configurations; avoid ``context.seen`` unless nothing else is left;
    - treat ``history.running`` as pending points (other workers are training them), so
      concurrent asks spread out; avoid the region of ``history.infeasible``;
    - be deterministic: the same inputs and rng state give the same output;
    - work with any history: empty, all failed, categorical-only, float-only, conditional;
    - keep no state between calls: whatever it needs it re-derives from the history (the
      strategy that produced each trial is in ``Observation.proposal.strategy``).

    ``exploit_weight`` and ``explore_weight`` are its share of the scheduler's mix at exploration
    0 and 1 (interpolated between, then scaled by the credit it earns); the registry in
    ``strategies/__init__.py`` is the one list of strategies. ``ranks_with_pruner``: it ranks
    with ``context.scorer``, so its share grows with the pruner's trust.
    """

    name: ClassVar[str]
    exploit_weight: ClassVar[float]
    explore_weight: ClassVar[float]
    ranks_with_pruner: ClassVar[bool] = False

    @abstractmethod
    def propose(self, space: SearchSpace, history: History, n: int, rng: np.random.Generator,
                context: Context) -> list[Config]:
        """Up to ``n`` new configurations, best first."""


def take_unseen(candidates: Iterable[Mapping[str, Any]], seen: frozenset[Key] | set[Key],
                n: int, also: frozenset[Key] | set[Key] = frozenset()) -> list[Config]:
    """The first ``n`` candidates that are neither in ``seen`` or ``also`` nor repeated, in
    order (``also``: a few more keys, so callers never copy the history-sized ``seen``)."""
    return unseen_with_keys(candidates, seen, n, also)[0]


def unseen_with_keys(candidates: Iterable[Mapping[str, Any]], seen: frozenset[Key] | set[Key],
                     n: int, also: frozenset[Key] | set[Key] = frozenset()
                     ) -> tuple[list[Config], set[Key]]:
    """``take_unseen`` and the keys of what it took: a caller that adds more candidates later
    passes them as ``also`` instead of computing every key again."""
    out: list[Config] = []
    taken: set[Key] = set()
    for config in candidates:
        key = config_key(config)
        if key in seen or key in also or key in taken:
            continue
        taken.add(key)
        out.append(dict(config))
        if len(out) == n:
            break
    return out, taken


def fill_random(space: SearchSpace, chosen: list[Config], n: int, rng: np.random.Generator,
                seen: frozenset[Key] | set[Key], attempts: int = 64) -> list[Config]:
    """Top ``chosen`` up to ``n`` with uniform samples that are not seen, so a strategy whose own
    generator is stuck (a converged neighbourhood) still returns fresh points when there are any.
    ``seen`` is read, never copied: it holds every trial's key."""
    taken = {config_key(c) for c in chosen}
    for _ in range(attempts * max(1, n - len(chosen))):
        if len(chosen) >= n:
            break
        config = space.sample(rng)
        key = config_key(config)
        if key not in seen and key not in taken:
            taken.add(key)
            chosen.append(config)
    return chosen
