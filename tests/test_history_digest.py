"""``HistoryDigest.add`` works per batch with numpy; it must leave exactly what adding the rows
one at a time leaves (the reference below is the row loop it replaced), whatever the batches."""

from __future__ import annotations

import math
import random

import pytest

from service.insights.series import HistoryDigest


def reference(total, minimize, max_points, n_bins, rows) -> dict:
    """The row-by-row digest: the specification."""
    d = HistoryDigest(total, minimize, max_points, n_bins)
    for number, value, state, strategy, exploration, predicted in rows:
        strategy = strategy or "enqueued"
        position = d.seen
        d.seen += 1
        d.strategies.add(strategy)
        b = d.bins[min(position * d.n_bins // max(d.total, 1), d.n_bins - 1)]
        if b.first < 0:
            b.first = number
        b.last = number
        b.count += 1
        b.by_strategy[strategy] = b.by_strategy.get(strategy, 0) + 1
        if exploration is not None:
            b.exploration_sum += float(exploration)
            b.exploration_n += 1
        if value is not None and state == "complete":
            loss = d.sign * float(value)
            if loss < d.best:
                d.best = loss
                d.best_number.append(number)
                d.best_value.append(float(value))
                b.improved_by[strategy] = b.improved_by.get(strategy, 0) + 1
        if position % d.stride == 0:
            for key, item in zip(("number", "value", "state", "strategy", "predicted"),
                                 (number, None if value is None else float(value), state,
                                  strategy, predicted), strict=True):
                d.points[key].append(item)
    return d.summary()


@pytest.mark.parametrize("seed", range(40))
def test_batches_equal_rows(seed: int) -> None:
    rng = random.Random(seed)
    total = rng.randint(0, 2000)
    odd = [None, math.nan, math.inf, -math.inf]
    rows = [(2 * i, rng.choice(odd) if rng.random() < 0.1 else rng.gauss(0, 1),
             rng.choice(["complete"] * 8 + ["stopped", "failed"]),
             rng.choice([None, "", "random", "parzen", "local"]),
             rng.choice([None, rng.random()]), rng.choice([None, rng.random()]))
            for i in range(total + rng.randint(0, 20))]  # a study that grew while streamed
    minimize, max_points, n_bins = rng.random() < 0.5, rng.choice([10, 300, 5000]), rng.choice(
        [1, 7, 60])
    batch = rng.choice([1, 7, 500, 5000])
    digest = HistoryDigest(total, minimize, max_points, n_bins)
    for k in range(0, len(rows), batch):
        digest.add(*[list(c) for c in zip(*rows[k:k + batch], strict=True)])
    assert repr(digest.summary()) == repr(reference(total, minimize, max_points, n_bins, rows))
