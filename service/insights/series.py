"""A study's finished trials in number order, streamed in batches into a bounded digest.

The history plot and the engine's view both read every finished trial once; keeping all of them
would make a page's memory grow with the study. The digest keeps a stride sample of the points,
the best-so-far line at each improvement (thinned past ``max_points``), and per-bin counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MISSING = float("nan")


@dataclass
class _Bin:
    first: int = -1
    last: int = -1
    count: int = 0
    by_strategy: dict[str, int] = field(default_factory=dict)
    improved_by: dict[str, int] = field(default_factory=dict)
    exploration_sum: float = 0.0
    exploration_n: int = 0


class HistoryDigest:
    """Feed batches of finished trials in number order with ``add``; read ``summary``.

    ``total`` is the number of rows expected (counted before streaming): it sets the sampling
    stride and the bin width. Rows beyond it (a study that grew meanwhile) land in the last bin.

    >>> d = HistoryDigest(total=4, minimize=True, max_points=2, n_bins=2)
    >>> d.add([0, 1, 2, 3], [3.0, 1.0, 2.0, 0.5], ["complete"] * 4, ["random", "tpe", "tpe", "tpe"],
    ...       [1.0, 0.5, 0.5, 0.2], [None, 0.4, 0.6, 0.9])
    >>> s = d.summary()
    >>> s["points"]["number"], s["best"]["value"], s["sampled"]  # 3 bests, thinned to 2
    ([0, 2], [3.0, 0.5], True)
    >>> [b["improved_by"] for b in s["bins"]]
    [{'random': 1, 'tpe': 1}, {'tpe': 1}]
    """

    def __init__(self, total: int, minimize: bool, max_points: int, n_bins: int) -> None:
        self.total = max(total, 0)
        self.sign = 1.0 if minimize else -1.0
        self.max_points = max_points
        self.stride = max(1, math.ceil(self.total / max_points)) if max_points else 1
        self.n_bins = max(1, min(n_bins, self.total or 1))
        self.seen = 0
        self.best = math.inf  # in loss terms (sign-adjusted)
        self.points: dict[str, list[Any]] = {k: [] for k in
                                             ("number", "value", "state", "strategy",
                                              "predicted")}
        self.best_number: list[int] = []
        self.best_value: list[float] = []
        self.bins = [_Bin() for _ in range(self.n_bins)]
        self.strategies: set[str] = set()

    def add(self, numbers, values, states, strategies, explorations, predicted) -> None:
        """One batch: parallel sequences of equal length, ``values`` possibly None."""
        for i, number in enumerate(numbers):
            value = values[i]
            state = states[i]
            strategy = strategies[i] or "enqueued"
            position = self.seen
            self.seen += 1
            self.strategies.add(strategy)
            b = self.bins[min(position * self.n_bins // max(self.total, 1), self.n_bins - 1)]
            if b.first < 0:
                b.first = int(number)
            b.last = int(number)
            b.count += 1
            b.by_strategy[strategy] = b.by_strategy.get(strategy, 0) + 1
            if explorations[i] is not None:
                b.exploration_sum += float(explorations[i])
                b.exploration_n += 1
            if value is not None and state == "complete":
                loss = self.sign * float(value)
                if loss < self.best:
                    self.best = loss
                    self.best_number.append(int(number))
                    self.best_value.append(float(value))
                    b.improved_by[strategy] = b.improved_by.get(strategy, 0) + 1
            if position % self.stride == 0:
                self.points["number"].append(int(number))
                self.points["value"].append(None if value is None else float(value))
                self.points["state"].append(state)
                self.points["strategy"].append(strategy)
                self.points["predicted"].append(predicted[i])

    def summary(self) -> dict[str, Any]:
        numbers, values = self.best_number, self.best_value
        if len(numbers) > self.max_points:  # thin the line, keeping its last (current) best
            keep = np.unique(np.linspace(0, len(numbers) - 1, self.max_points).round()
                             .astype(int))
            numbers = [numbers[k] for k in keep]
            values = [values[k] for k in keep]
        bins = [{"first": b.first, "last": b.last, "count": b.count,
                 "by_strategy": b.by_strategy, "improved_by": b.improved_by,
                 "exploration": (b.exploration_sum / b.exploration_n
                                 if b.exploration_n else None)}
                for b in self.bins if b.count]
        return {"total": self.seen, "shown": len(self.points["number"]),
                "sampled": self.stride > 1, "stride": self.stride,
                "points": self.points, "best": {"number": numbers, "value": values},
                "bins": bins, "strategies": sorted(self.strategies)}
