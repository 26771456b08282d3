"""Proposal strategies, one per module, behind ``base.Strategy`` (DESIGN rule 4).

``STRATEGIES`` is the one list: the scheduler reads the names and mix weights from it, so adding a
strategy is one new module and one line here. Its order is the order ties are broken in.
"""

from service.engine.strategies.base import Context, Strategy
from service.engine.strategies.local import LocalStrategy
from service.engine.strategies.parzen import ParzenStrategy
from service.engine.strategies.random import RandomStrategy
from service.engine.strategies.surrogate import SurrogateStrategy

STRATEGIES: dict[str, Strategy] = {
    s.name: s for s in (
        RandomStrategy(),
        ParzenStrategy(),
        LocalStrategy(),
        SurrogateStrategy(),
    )
}

__all__ = ["STRATEGIES", "Context", "LocalStrategy", "ParzenStrategy", "RandomStrategy",
           "Strategy", "SurrogateStrategy"]
