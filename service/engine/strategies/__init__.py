"""Proposal strategies, one per module, behind ``base.Strategy`` (DESIGN rule 4)."""

from service.engine.strategies.base import Context, Strategy
from service.engine.strategies.local import LocalStrategy
from service.engine.strategies.parzen import ParzenStrategy
from service.engine.strategies.random import RandomStrategy
from service.engine.strategies.surrogate import SurrogateStrategy

STRATEGIES: dict[str, Strategy] = {
    s.name: s for s in (RandomStrategy(), ParzenStrategy(), LocalStrategy(), SurrogateStrategy())
}

__all__ = ["STRATEGIES", "Context", "LocalStrategy", "ParzenStrategy", "RandomStrategy",
           "Strategy", "SurrogateStrategy"]
