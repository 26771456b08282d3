"""Rank statistics and the normal distribution, in numpy: the engine compares results by rank.

Studies differ in scale (accuracy here, a loss spanning decades there) and a diverged run can score
a million times the optimum, so the engine's models, labels and trust measures all work on ranks.
Every rule for turning numbers into ranks lives here, once, with the two normal-distribution
functions the models need. They are closed-form approximations, not scipy.special's: swapping them
moved a pruner-driven golden trace, and a seeded study proposes the same configurations only while
its numerics stay bit for bit. Where the approximation's absolute error matters, far in a tail, the
caller uses scipy.special (the GP's expected improvement, ``gp.log_expected_improvement``).

>>> rank_goodness(np.array([0.3, 0.1, 0.9])).tolist()  # lower loss = better = closer to 1
[0.5, 1.0, 0.0]
>>> spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 40.0]))
1.0
"""

from __future__ import annotations

import math

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x`` ascending, ties given their average rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    new_group = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.concatenate([starts[1:], [x.size]])
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = ((starts + ends + 1) / 2.0)[group]
    return ranks


def scaled_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (higher = better), so two scores on different scales can be mixed.
    Ties are broken by position (stable), not averaged: a ranking needs a strict order."""
    order = np.argsort(np.argsort(x, kind="stable"), kind="stable")
    return order / max(len(x) - 1, 1)


def rank_goodness(losses: np.ndarray) -> np.ndarray:
    """Goodness in [0, 1] from losses (lower is better): 1 = best, 0 = worst, ties share a rank."""
    losses = np.asarray(losses, dtype=np.float64)
    n = losses.size
    if n == 0:
        return np.zeros(0)
    if n == 1:
        return np.full(1, 0.5)
    return (n - average_ranks(losses)) / (n - 1)


def sorted_rank_goodness(sorted_losses: np.ndarray) -> np.ndarray:
    """``np.sort(rank_goodness(losses))`` from the losses already sorted ascending (a history's
    ranking has them): the same values, bit for bit, in O(n) without sorting again, for a
    quantile of the labels on every ask.

    >>> sorted_rank_goodness(np.array([0.1, 0.3, 0.3, 0.9])).tolist()
    [0.0, 0.5, 0.5, 1.0]
    """
    x = np.asarray(sorted_losses, dtype=np.float64)
    n = x.size
    if n < 2:
        return np.full(n, 0.5)
    new_group = np.concatenate([[True], x[1:] != x[:-1]])
    starts = np.flatnonzero(new_group)
    ends = np.concatenate([starts[1:], [n]])
    ranks = ((starts + ends + 1) / 2.0)[np.cumsum(new_group) - 1]  # as ``average_ranks``
    return ((n - ranks) / (n - 1))[::-1]


def normal_scores(losses: np.ndarray) -> np.ndarray:
    """Ranks mapped through the standard normal quantile (ties share a rank); lower = better.

    The GP's targets: Gaussian-shaped whatever the losses' scale or outliers."""
    losses = np.asarray(losses, dtype=np.float64)
    n = len(losses)
    if n == 0:
        return np.zeros(0)
    return norm_ppf((average_ranks(losses) - 0.5) / n)


def normal_scores_at(losses: np.ndarray, order: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``normal_scores(losses)[rows]``, given ``order``, the stable ascending argsort of
    ``losses``: a binary search per row instead of sorting every loss (the GP conditions on a
    few hundred rows of a history that may hold 10,000). The same arithmetic, so the same bits.
    """
    losses = np.asarray(losses, dtype=np.float64)
    ordered = losses[order]
    x = losses[rows]
    starts = np.searchsorted(ordered, x, side="left")
    ends = np.searchsorted(ordered, x, side="right")
    return norm_ppf(((starts + ends + 1) / 2.0 - 0.5) / len(losses))


def growth_ladder(n: int, every_until: int, growth: float) -> int:
    """``n`` itself up to ``every_until``, then the largest step <= ``n`` of the ladder that
    starts there and grows by ``growth`` (at least 1) a step: what a model refreshed only at
    those sizes was last refreshed on, so a study of n results pays O(log n) refreshes."""
    if n <= every_until:
        return n
    c = every_until
    while True:
        nxt = max(c + 1, int(c * growth))
        if nxt > n:
            return c
        c = nxt


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); 0.0 when either side is constant."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size != b.size:
        raise ValueError(f"`len(a) == len(b)` must hold, got {a.size} and {b.size}")
    if a.size < 2:
        return 0.0
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb / denominator) if denominator > 0 else 0.0


def norm_ppf(p: np.ndarray) -> np.ndarray:
    """The standard normal quantile: Acklam's rational approximation (relative error < 1.2e-9)."""
    a = (-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.383577518672690e2,
         -3.066479806614716e1, 2.506628277459239e0)
    b = (-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1,
         -1.328068155288572e1)
    c = (-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838e0, -2.549732539343734e0,
         4.374664141464968e0, 2.938163982698783e0)
    d = (7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996e0, 3.754408661907416e0)
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    out = np.empty_like(p)
    low, high = p < 0.02425, p > 1 - 0.02425
    mid = ~(low | high)
    q = p[mid] - 0.5
    r = q * q
    out[mid] = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (
        ((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    for mask, sign in ((low, 1.0), (high, -1.0)):
        q = np.sqrt(-2 * np.log(np.where(sign > 0, p[mask], 1 - p[mask])))
        out[mask] = sign * (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    return out


def erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7); see the module docstring for why not scipy."""
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                         + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))
