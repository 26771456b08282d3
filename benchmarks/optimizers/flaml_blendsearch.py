"""FLAML BlendSearch (CFO local threads blended with a global Optuna TPE), defaults otherwise.

BlendSearch's global search is `flaml`'s wrapper of Optuna's TPE, so optuna is needed here too.
See `_flaml.py` for the space mapping, conditional params and the rare None from `suggest`.
"""

from __future__ import annotations

import warnings
from typing import Any

from benchmarks.optimizers._flaml import METRIC, FlamlSearcher


class FlamlBlendSearch(FlamlSearcher):
    searcher_name = "BlendSearch"

    def _make(self, space: dict, mode: str, seed: int) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from flaml.tune.searcher.blendsearch import BlendSearch
        return BlendSearch(metric=METRIC, mode=mode, space=space, seed=seed)
