"""FLAML CFO (cost-frugal local search with restarts), defaults apart from metric/mode/space/seed.

See `_flaml.py` for the space mapping, conditional params and the rare None from `suggest`.
"""

from __future__ import annotations

import warnings
from typing import Any

from benchmarks.optimizers._flaml import METRIC, FlamlSearcher


class FlamlCFO(FlamlSearcher):
    searcher_name = "CFO"

    def _make(self, space: dict, mode: str, seed: int) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from flaml.tune.searcher.blendsearch import CFO
        return CFO(metric=METRIC, mode=mode, space=space, seed=seed)
