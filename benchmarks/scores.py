"""The scores of the quality table, as pure functions of a run's best-so-far trace.

Kept apart from I/O so the tests can pin down exactly how they count:
- trials-to-target: the 1-based index of the first trial whose best-so-far is at least as good as
  the task's target; None when the budget ran out first (reported as "> budget" and counted as
  budget + 1 in medians and spreads, i.e. censored, which flatters failures, never hides them);
- normalised regret after n trials: `task.regret(best_so_far[n - 1])`;
- spread across seeds: the standard deviation of log10(trials-to-target); 0.3 means a typical seed
  is a factor of 2 away from the geometric mean. It is scale-free, so tasks compare.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

CHECKPOINTS = (25, 50, 100, 200)


def best_so_far(values: Sequence[float], direction: str) -> list[float]:
    out: list[float] = []
    for v in values:
        if not out:
            out.append(v)
        elif direction == "minimize":
            out.append(min(out[-1], v))
        else:
            out.append(max(out[-1], v))
    return out


def trials_to_target(best: Sequence[float], reached: Callable[[float], bool]) -> int | None:
    """1-based index of the first best-so-far value that `reached` accepts; None if never."""
    for i, b in enumerate(best):
        if reached(b):
            return i + 1
    return None


def censored(ttt: Sequence[int | None], budget: int) -> np.ndarray:
    """Trials-to-target with failures counted as budget + 1."""
    return np.asarray([budget + 1 if t is None else t for t in ttt], dtype=float)


def median_iqr(x: Sequence[float]) -> tuple[float, float, float]:
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    q25, q50, q75 = np.percentile(np.asarray(x, dtype=float), [25, 50, 75])
    return float(q50), float(q25), float(q75)


def bootstrap_medians(x: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` medians of ``x`` resampled with replacement (for percentile intervals).

    >>> bootstrap_medians(np.array([3.0, 3.0]), np.random.default_rng(0), 4).tolist()
    [3.0, 3.0, 3.0, 3.0]
    """
    x = np.asarray(x)
    return np.median(x[rng.integers(0, len(x), (n, len(x)))], axis=1)


def log_spread(ttt: Sequence[int | None], budget: int) -> float:
    """Standard deviation (ddof=0) of log10 trials-to-target over seeds, failures at budget + 1."""
    x = censored(ttt, budget)
    return float(np.std(np.log10(x))) if len(x) else math.nan


def regret_at(best: Sequence[float], regret: Callable[[float], float],
              checkpoints: Sequence[int] = CHECKPOINTS) -> dict[int, float]:
    """Normalised regret of the best-so-far after each checkpoint the run reached."""
    return {c: regret(best[c - 1]) for c in checkpoints if c <= len(best)}


def stored(value: float) -> float:
    """A value as a report keeps it: 7 significant digits (the runs' JSON stays small)."""
    return float(f"{value:.7g}")


def improvements(best: Sequence[float]) -> list[list[float]]:
    """Compact best-so-far: [[trial (1-based), value], ...] at every change."""
    out: list[list[float]] = []
    previous = None
    for i, b in enumerate(best):
        if previous is None or b != previous:
            out.append([i + 1, stored(b)])
            previous = b
    return out


def expand(points: Sequence[Sequence[float]], budget: int) -> list[float]:
    """Inverse of `improvements`: the best-so-far at every trial 1..budget."""
    out: list[float] = []
    j = 0
    for t in range(1, budget + 1):
        while j + 1 < len(points) and points[j + 1][0] <= t:
            j += 1
        out.append(points[j][1])
    return out
