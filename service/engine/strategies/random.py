"""Space-filling exploration: Latin hypercube designs in unit space, decoded per param.

Uniform sampling leaves holes and clumps in a handful of points; a Latin hypercube puts exactly one
point in each of ``n`` strata of every param (and spreads categorical choices evenly), so the
initial design and every exploration batch cover the space as well as ``n`` points can.
"""

from __future__ import annotations

import numpy as np

from service.engine.encoding import from_unit
from service.engine.history import History
from service.engine.space import CategoricalParam, SearchSpace
from service.engine.strategies.base import Config, Context, Strategy, fill_random, take_unseen


def latin_hypercube(space: SearchSpace, n: int, rng: np.random.Generator) -> list[Config]:
    """``n`` configurations whose every param is stratified over its range (scrambled LHS)."""
    if n <= 0:
        return []
    d = len(space.params)
    strata = np.argsort(rng.random((d, n)), axis=1)  # an independent permutation per param
    units = (strata + rng.random((d, n))) / n
    configs: list[Config] = []
    for row in range(n):
        config: Config = {}
        for j, param in enumerate(space.params):
            if not space.is_active(param, config):
                continue
            u = float(units[j, row])
            if isinstance(param, CategoricalParam):
                config[param.name] = param.choices[min(int(u * len(param.choices)),
                                                       len(param.choices) - 1)]
            else:
                config[param.name] = from_unit(param, u)
        configs.append(config)
    return configs


class RandomStrategy(Strategy):
    """Quasi-random exploration: a fresh Latin hypercube per call, skipping tried points.

    It is the scheduler's exploration budget and the engine's fallback: it never looks at results,
    so it cannot be misled by them.
    """

    name = "random"
    # A little even when exploiting (a model can be confidently wrong), a fifth when exploring.
    exploit_weight = 0.04
    explore_weight = 0.2

    def propose(self, space: SearchSpace, history: History, n: int, rng: np.random.Generator,
                context: Context) -> list[Config]:
        design = latin_hypercube(space, n + 2, rng)
        chosen = take_unseen(design, context.seen, n)
        return fill_random(space, chosen, n, rng, context.seen)
