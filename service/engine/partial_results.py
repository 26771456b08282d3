"""Stopped trials as evidence: the final value each would have reached, estimated from its curve.

A trial stopped at a rung says something about its region: it was worse, at that rung, than the
trials that went on. Leaving it out would let the strategies propose its neighbours again as if
nothing were known; counting its partial value as final would compare an epoch-3 accuracy with
epoch-52 ones. So each stopped trial enters the strategies' history as a complete trial whose
value is mapped from its rung value to the final scale through the complete trials that reported
at the same rung: its rank among their rung values picks the same quantile of their final values
(beyond the worst, the gap is extrapolated with the two spreads' ratio), and the estimate is pulled
towards their median final as far as the rung's rank correlation falls short of 1. With no
complete trial to map through, its own last value stands.

Without stopped trials the history is returned as it is, so full-fidelity studies are unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from service.engine.history import History, Observation, TrialState
from service.engine.stats import spearman

MIN_ANCHORS = 3  # complete trials at a rung before its values are mapped to the final scale


def with_partial_results(history: History) -> History:
    """``history`` with each stopped trial turned into a complete one at its estimated value.

    >>> done = [Observation(i, {"x": i}, TrialState.COMPLETE, value=float(10 + i),
    ...                     curve=((3, float(i)),)) for i in range(5)]
    >>> stopped = Observation(5, {"x": 9}, TrialState.STOPPED, value=-1.0, curve=((3, -1.0),))
    >>> view = with_partial_results(History("maximize", (*done, stopped)))
    >>> view.trials[5].state.value, view.trials[5].value < 10
    ('complete', True)
    """
    stopped = [t for t in history.trials if t.state is TrialState.STOPPED and t.value is not None]
    if not stopped:
        return history
    sign = 1.0 if history.direction == "minimize" else -1.0
    anchors = _anchors(history.complete, sign)
    estimates = {t.number: _estimate(t, anchors, sign) for t in stopped}
    trials = tuple(
        dataclasses.replace(t, state=TrialState.COMPLETE, value=estimates[t.number])
        if t.number in estimates and t.state is TrialState.STOPPED else t
        for t in history.trials)
    return History(history.direction, trials, history.pruned, history.seen)


@dataclasses.dataclass(frozen=True)
class _Anchor:
    """The complete trials that reported at one rung, as losses: rung values sorted, finals."""

    rung_losses: np.ndarray  # ascending
    final_losses: np.ndarray  # ascending (a quantile map, not paired)
    correlation: float
    slope: float  # spread of finals over spread of rung values: extrapolation past the worst


def _anchors(complete: tuple[Observation, ...], sign: float) -> dict[int, _Anchor]:
    pairs: dict[int, list[tuple[float, float]]] = {}
    for t in complete:
        for step, value in t.curve:
            pairs.setdefault(step, []).append((sign * value, sign * t.value))
    out = {}
    for step, rows in pairs.items():
        if len(rows) < MIN_ANCHORS:
            continue
        rung = np.array([r[0] for r in rows])
        final = np.array([r[1] for r in rows])
        spread = float(np.std(rung))
        out[step] = _Anchor(np.sort(rung), np.sort(final), spearman(rung, final),
                            float(np.std(final)) / spread if spread > 0 else 0.0)
    return out


def _estimate(trial: Observation, anchors: dict[int, _Anchor], sign: float) -> float:
    """The estimated final value (not a loss) of a stopped trial."""
    usable = [(step, v) for step, v in trial.curve if step in anchors]
    if not usable:
        return float(trial.value)
    step, value = max(usable)  # the highest rung it reached that complete trials also reported
    anchor, loss = anchors[step], sign * value
    n = anchor.rung_losses.size
    rank = int(np.searchsorted(anchor.rung_losses, loss, side="left"))  # complete ones better
    if rank >= n:  # worse than every complete trial at the rung: extrapolate past the worst
        mapped = anchor.final_losses[-1] + (loss - anchor.rung_losses[-1]) * anchor.slope
    else:
        mapped = float(np.quantile(anchor.final_losses, rank / max(n - 1, 1)))
    weight = max(0.0, anchor.correlation)
    estimate = weight * mapped + (1 - weight) * float(np.median(anchor.final_losses))
    return float(sign * estimate)
