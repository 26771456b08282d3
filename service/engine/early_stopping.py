"""When a running trial should stop: asynchronous successive halving (ASHA) over its reports,
with each rung's cut set by the study's measured evidence (``stopping_policy``).

A study that declares a fidelity (integer steps from ``min`` to ``max``, e.g. epochs) has rungs
at ``min * eta**k`` steps below ``max`` (``eta`` = 3; a ``min`` of 0 counts from 1). A trial's first
report at or past a rung it had not reached (``Fidelity.rung_crossed``) is its value at that rung,
as in Optuna's successive halving and Ray Tune's ASHA: a job that validates every 2 or 5 epochs is
judged at rungs 1, 3, 9, 27 like one that reports every epoch. It goes on only if that value is
within the best ``keep`` of the values the study's trials had at the rung (the newest
``RUNG_SAMPLE``), its own included, direction-aware; ``keep`` is the rung's calibrated fraction
(``1/eta`` without a policy). It always goes on while fewer than ``eta`` other trials reached the
rung, so no worker ever waits for another. Reports that reach no new rung never stop a trial.

One trial in ``HEDGE_EVERY`` (by trial number) is never stopped: a *hedge*, as Hyperband's
most conservative bracket. Only trials that reach the end pair their rung values with a final one,
and without hedges those are the trials every rung already liked: a configuration that starts
slowly and ends best (a small learning rate, say) would be stopped every time and never seen to
end best, so the policy could not learn that its rungs mislead. The hedges are the unbiased sample
the policy measures its wrong stops on (``stopping_policy``).

Pure: the caller reads the values at the rung and calibrates the policy; the service's report path
and the in-process ``Optimizer`` both decide here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.engine.history import Direction, History, TrialState
from service.engine.stopping_policy import (
    CALIBRATION_WINDOW,
    RungRule,
    StoppingPolicy,
    TrialCurve,
    calibrate,
)

ETA = 3
MAX_FIDELITY = 10**6
# A rung decision ranks against at most this many values reported at the rung (the newest): a
# report's cost stays constant however many trials the study has, and a sample of 1,000 puts
# the cut within about 1.5 % of its quantile.
RUNG_SAMPLE = 1000
# Every HEDGE_EVERY-th trial (numbers HEDGE_EVERY - 1, 2 * HEDGE_EVERY - 1, ...) runs to the end.
# Tuned on 10 LCBench tasks x 5 fresh seeds (none held out): pooled geometric mean of
# epochs-to-target 807 with 5, 828 with none, 851 with 3, 890 with 8 (benchmarks.multifidelity).
HEDGE_EVERY = 5
# Measured against this policy (then with a miss of 0.1 a rung) and not adopted (10 LCBench
# tuning tasks, seeds 100-109, geometric mean of epochs-to-target over 100 pairs): stopping a
# trial whose value at rung 9 or 27 is below the best complete trial's value there, 0.95x
# (within noise; twice the stopped top-5 % trials; with 0.02 a rung, 1.02x and 1.06x on
# seeds 100-109 and 110-119); the same at rung 27 only, 0.95x; stopping
# when a copula puts the chance of beating the best complete trial below 5 %, 1.07x; one hedge
# in 10, 1.04x. Stopping more starts more trials, and the search learns less from a stopped
# trial than from a complete one; the benchmark's headroom table shows how far perfect stop
# decisions would go on the same proposals.
# A policy calibrated on n curves is recomputed once max(1, RECALIBRATE_GROWTH x n) more trials
# have finished (``recalibration_due``).
RECALIBRATE_GROWTH = 0.05


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

    def rung_crossed(self, step: int, reached: int | None, eta: int = ETA) -> int | None:
        """The rung a report at ``step`` is the trial's value at, ``reached`` being the furthest
        step the trial reported before (None: nothing yet): the highest rung in
        ``(reached, step]``, else None. A report that skips rungs counts at the last of them; a
        report at or below ``reached`` reaches nothing new, nor does one at ``max``: the
        training is over, there is nothing left to stop. O(log max): no list is built.

        >>> fidelity = Fidelity("epoch", 1, 52)
        >>> [fidelity.rung_crossed(s, s - 2 if s > 2 else None) for s in (2, 4, 6, 8, 10, 28)]
        [1, 3, None, None, 9, 27]
        >>> [fidelity.rung_crossed(3, None), fidelity.rung_crossed(3, 3)]
        [3, None]
        >>> fidelity.rung_crossed(52, 9) is None  # the report at the maximum
        True
        """
        if step >= self.max:
            return None
        crossed, rung = None, max(self.min, 1)
        while rung < self.max and rung <= step:
            if reached is None or rung > reached:
                crossed = rung
            rung *= eta
        return crossed

    def rung_points(self, curve: Sequence[tuple[int, float]],
                    eta: int = ETA) -> list[tuple[int, int, float]]:
        """``(rung, step, value)`` for the reports of ``curve`` that reached a new rung, taken in
        step order (``rung_crossed``): what a curve recorded in one go (an import) stores as its
        rung values, the same a trial reporting those steps one by one would have.

        >>> Fidelity("epoch", 1, 52).rung_points([(2, 0.5), (4, 0.4), (6, 0.3), (30, 0.2)])
        [(1, 2, 0.5), (3, 4, 0.4), (27, 30, 0.2)]
        """
        out, reached = [], None
        for step, value in sorted(curve):
            rung = self.rung_crossed(step, reached, eta)
            if rung is not None:
                out.append((rung, step, value))
            reached = step if reached is None else max(reached, step)
        return out


@dataclass(frozen=True)
class StopDecision:
    should_stop: bool
    reason: str | None = None


GO_ON = StopDecision(False, None)


def is_hedge(number: int) -> bool:
    """Whether trial ``number`` runs to the end whatever it reports (one in ``HEDGE_EVERY``).

    >>> [n for n in range(12) if is_hedge(n)] == [HEDGE_EVERY - 1, 2 * HEDGE_EVERY - 1]
    True
    """
    return HEDGE_EVERY > 0 and number % HEDGE_EVERY == HEDGE_EVERY - 1


def decide(value: float, others: Sequence[float], direction: Direction, rung: int,
           eta: int = ETA, rule: RungRule | None = None,
           number: int | None = None, step: int | None = None) -> StopDecision:
    """Whether a trial reporting ``value`` at ``rung`` should stop, given the values ``others``
    (the study's other trials) had at that rung and the rung's calibrated ``rule``. Trial
    ``number`` (when given) is never stopped if it is a hedge (``is_hedge``); ``step`` (when
    given) is the step of the report, named in the reason when it is past the rung.

    >>> decide(0.9, [0.1, 0.2, 0.3], "minimize", 9).should_stop
    True
    >>> decide(0.05, [0.1, 0.2, 0.3], "minimize", 9).should_stop
    False
    >>> decide(0.9, [0.1, 0.2], "minimize", 9).should_stop  # fewer than eta others: go on
    False
    >>> lenient = RungRule(9, keep=1.0, trust=0.0, measured=None, pairs=0, wrong_stop_rate=None)
    >>> decide(0.9, [0.1, 0.2, 0.3], "minimize", 9, rule=lenient).should_stop  # untrusted rung
    False
    """
    keep = rule.keep if rule is not None else 1.0 / eta
    if len(others) < eta or keep >= 1.0 or (number is not None and is_hedge(number)):
        return GO_ON
    sign = 1.0 if direction == "minimize" else -1.0
    losses = sorted(sign * v for v in [*others, value])
    kept = max(1, int(len(losses) * keep + 1e-9))  # 1/eta of 3k values is k, not k - 1
    cut = sign * losses[kept - 1]
    if sign * value > sign * cut:
        return StopDecision(True, _reason(value, rung, kept, len(losses), cut, rule, step))
    return GO_ON


def _reason(value: float, rung: int, kept: int, n: int, cut: float,
            rule: RungRule | None, step: int | None = None) -> str:
    """Why a trial stopped (DESIGN rule 11): the rung, the cut, and the evidence behind it.

    >>> _reason(0.9, 3, 1, 4, 0.2, None, step=4)
    'rung 3 (reported at step 4): 0.9 is not in the best 1 of 4 values at this rung (cut 0.2)'
    """
    at = f" (reported at step {step})" if step is not None and step != rung else ""
    where = "rung" if at else "step"
    text = (f"rung {rung}{at}: {value:.6g} is not in the best {kept} of {n} values at this "
            f"{where} (cut {cut:.6g}")
    if rule is None:
        return text + ")"
    text += f", keep {rule.keep:.2f} from trust {rule.trust:.2f}"
    if rule.measured is not None:
        text += f" (measured {rule.measured:.2f} on {rule.pairs} curves)"
    predicted = rule.forecast(value)
    if predicted is not None:
        text += f"; predicted final {predicted:.6g}"
    return text + ")"


def recalibration_due(finished_since: int, calibrated_on: int) -> bool:
    """Whether a study's stopping policy is recomputed, ``finished_since`` trials having
    finished since it was calibrated on ``calibrated_on`` curves: after every one while the
    curves are few, then once per ``RECALIBRATE_GROWTH`` of them (every 25 trials at the
    ``CALIBRATION_WINDOW`` of 512). One more curve barely moves a policy over hundreds, and a
    calibration reads and ranks all of them, after a tell.

    >>> [recalibration_due(1, n) for n in (0, 39, 40)]
    [True, True, False]
    >>> recalibration_due(25, CALIBRATION_WINDOW), recalibration_due(24, CALIBRATION_WINDOW)
    (True, False)
    """
    return finished_since >= max(1, int(RECALIBRATE_GROWTH * calibrated_on))


def policy_for(curves: Sequence[TrialCurve], direction: Direction,
               fidelity: Fidelity, eta: int = ETA) -> StoppingPolicy:
    """The study's calibrated rule for each of ``fidelity``'s rungs (``stopping_policy``)."""
    return calibrate(curves, direction, fidelity.rungs(eta), fidelity.max, eta)


def finished_curves(history: History, window: int = CALIBRATION_WINDOW) -> list[TrialCurve]:
    """The curves of the last ``window`` complete or stopped trials that reported at a rung."""
    out: list[TrialCurve] = []
    for t in reversed(history.trials):
        if len(out) >= window:
            break
        if not t.curve or t.state not in (TrialState.COMPLETE, TrialState.STOPPED):
            continue
        final = t.value if t.state is TrialState.COMPLETE else None
        out.append(TrialCurve(dict(t.curve), final))
    out.reverse()
    return out
