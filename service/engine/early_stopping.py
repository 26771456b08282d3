"""When a running trial should stop: asynchronous successive halving (ASHA) over its reports.

A study that declares a fidelity (integer steps from ``min`` to ``max``, e.g. epochs) has rungs
at ``min * eta**k`` steps below ``max`` (``eta`` = 3; a ``min`` of 0 counts from 1). A trial that
reports exactly at a rung goes on only if its value is within the best ``1/eta`` of the values
reported at that rung by the study's trials so far, its own included, direction-aware; it always
goes on while fewer than ``eta`` other trials reported at that rung, so no worker ever waits for
another. Reports between rungs never stop a trial. Pure: the caller reads the values at the rung.

Adaptivity (the meta-scheduler tuning ``eta`` and the rungs) and the pruner's curve forecast are
later work; this is the fixed rule they will refine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.engine.history import Direction

ETA = 3
MAX_FIDELITY = 10**6


@dataclass(frozen=True)
class Fidelity:
    """The resource a trial spends in integer steps, ``min <= step <= max``."""

    name: str
    min: int
    max: int

    def rungs(self, eta: int = ETA) -> list[int]:
        """The rung steps, ascending: ``base * eta**k < max`` with ``base = max(min, 1)``.

        >>> Fidelity("epoch", 1, 52).rungs()
        [1, 3, 9, 27]
        >>> Fidelity("epoch", 0, 10).rungs()
        [1, 3, 9]
        """
        out, step = [], max(self.min, 1)
        while step < self.max:
            out.append(step)
            step *= eta
        return out

    def rung_of(self, step: int, eta: int = ETA) -> int | None:
        """``step`` when it is a rung, else None (no list is built: a report pays O(log max))."""
        rung = max(self.min, 1)
        while rung < self.max:
            if rung == step:
                return step
            if rung > step:
                return None
            rung *= eta
        return None


@dataclass(frozen=True)
class StopDecision:
    should_stop: bool
    reason: str | None = None


GO_ON = StopDecision(False, None)


def decide(value: float, others: Sequence[float], direction: Direction, rung: int,
           eta: int = ETA) -> StopDecision:
    """Whether a trial reporting ``value`` at ``rung`` should stop, given the values ``others``
    (the study's other trials) reported at that rung.

    >>> decide(0.9, [0.1, 0.2, 0.3], "minimize", 9).should_stop
    True
    >>> decide(0.05, [0.1, 0.2, 0.3], "minimize", 9).should_stop
    False
    >>> decide(0.9, [0.1, 0.2], "minimize", 9).should_stop  # fewer than eta others: go on
    False
    """
    if len(others) < eta:
        return GO_ON
    sign = 1.0 if direction == "minimize" else -1.0
    losses = sorted(sign * v for v in [*others, value])
    keep = max(1, len(losses) // eta)
    cut = sign * losses[keep - 1]
    if sign * value <= sign * cut:
        return GO_ON
    return StopDecision(True, f"rung {rung}: {value:.6g} is not in the best 1/{eta} of "
                              f"{len(losses)} values at this step (cut {cut:.6g})")
