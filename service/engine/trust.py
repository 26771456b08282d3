"""How far the pruner has earned its say: its measured trust, and what that trust allows.

Trust is measured, never assumed: the rank correlation between what the pruner predicted for trials
before they ran (``ProposalInfo.predicted``) and how they then scored. Pruning (``pruning``),
the surrogate's use of the pruner (``scheduler``) and early retraining (``retraining_policy``)
all read it through this module, so they agree on what "trusted" means.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from service.engine.history import History, Observation, TrialState
from service.engine.stats import spearman

# Fewer than this many predicted-then-scored trials and a rank correlation is mostly noise.
MIN_TRUST_SAMPLES = 6
# The most recent predicted trials trust is measured over: long enough for a stable correlation,
# short enough that a pruner which stopped predicting well loses its say within a few asks.
TRUST_WINDOW = 20
# Trust at or below TRUST_FLOOR: the pruner has no say; at TRUST_FULL and above: its full say.
TRUST_FLOOR = 0.2
TRUST_FULL = 0.6


def measure_trust(history: History, window: int = TRUST_WINDOW,
                  skip: frozenset[str] = frozenset()) -> float | None:
    """Spearman between the pruner's prediction for each of the last ``window`` trials that had
    one (recorded before it ran, in ``proposal.predicted``) and how it then scored; infeasible
    trials count as worst. None while fewer than MIN_TRUST_SAMPLES such trials exist. Trials
    proposed by a strategy in ``skip`` don't count (predictions made by an earlier model)."""
    # A trial is in ``history.complete`` exactly when it is complete with a finite value: asked
    # of the few trials the window reads, not by collecting every complete trial's number.
    return rank_trust(*prediction_pairs(history, reversed(history.trials), _is_scored,
                                        window, skip))


def _is_scored(t: Observation) -> bool:
    return t.state is TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)


def prediction_pairs(history: History, newest_first: Iterable[Observation],
                     scored: Callable[[Observation], bool], window: int,
                     skip: frozenset[str] = frozenset()) -> tuple[list[float], list[float]]:
    """(predicted, actual) for the first ``window`` of ``newest_first`` that carry a prediction:
    actual is the negated loss of a ``scored`` trial, ``-inf`` for an infeasible one; others
    (running, failed, stopped) are passed over."""
    predicted: list[float] = []
    actual: list[float] = []
    for t in newest_first:
        if len(predicted) >= window:
            break
        if t.proposal is None or t.proposal.predicted is None or t.proposal.strategy in skip:
            continue
        if scored(t):
            actual.append(-history.loss(t))
        elif t.state is TrialState.INFEASIBLE:
            actual.append(-math.inf)
        else:
            continue
        predicted.append(float(t.proposal.predicted))
    return predicted, actual


def rank_trust(predicted: list[float], actual: list[float]) -> float | None:
    """``measure_trust`` on pairs already gathered (newest first): an actual of ``-inf`` is an
    infeasible trial, ranked below every scored one. None below MIN_TRUST_SAMPLES pairs."""
    if len(predicted) < MIN_TRUST_SAMPLES:
        return None
    finite = np.array(actual)
    floor = np.min(finite[np.isfinite(finite)]) - 1.0 if np.isfinite(finite).any() else 0.0
    finite = np.where(np.isfinite(finite), finite, floor)
    return spearman(np.array(predicted), finite)


def trust_strength(trust: float | None) -> float:
    """How much say the pruner gets, in [0, 1]: none up to TRUST_FLOOR, full from TRUST_FULL."""
    if trust is None or not math.isfinite(trust) or trust <= TRUST_FLOOR:
        return 0.0
    return min(1.0, (trust - TRUST_FLOOR) / (TRUST_FULL - TRUST_FLOOR))
