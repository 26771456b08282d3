"""How aggressively a study stops trials at each rung, measured from the curves it has seen.

A rung is worth stopping at only as far as the values reported there predict the final ones, and
that differs by task and by rung (on LCBench the epoch-1 accuracy has a rank correlation of about 0
with the epoch-52 one, epoch 9 about 0.6-0.98). So each rung gets its own *keep fraction* (the share
of the values reported there that go on), from two pieces of evidence over the study's finished
trials:

- **trust**: the Spearman correlation between the rung's value and the final value over complete
  trials that reported at the rung, shrunk towards a prior that grows with the share of the
  (log) budget the rung has spent, so a cold study stops cautiously and a few lucky pairs cannot
  make it reckless;
- **wrong-stop rate**: of the complete trials that ended in the study's best tenth, the share
  the trust-based cut would have stopped; the cut is loosened until every one of them passes,
  with a margin.

The keep fraction is the smallest one (down to ``1/eta**2``) at which a trial whose final value is
in the study's top 5 % still passes the rung with probability ``1 - miss``, with the rung value and
the final value modelled as a Gaussian copula of correlation ``trust``; ``miss`` is
``MISS_PER_TRIAL`` shared among the rungs the study's trials reach, so such a trial survives all of
them with probability about ``1 - MISS_PER_TRIAL`` whether its job reports at four rungs or one.
A rung with no trust (at or below 0) keeps everything. The same policy is what the service's
report path and the in-process ``Optimizer`` use; ``forecast`` turns a rung value into the
predicted final one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from service.engine.history import Direction
from service.engine.stats import norm_ppf, spearman

# Finished trials (the most recent) a policy is calibrated on: enough for stable correlations,
# and a bound on the work a calibration costs whatever the study's size.
CALIBRATION_WINDOW = 512
# Pseudo-pairs the log-budget prior weighs as: with fewer measured pairs it dominates, so the
# first few complete trials cannot make a rung look perfectly predictive by luck.
PRIOR_PAIRS = 6
# A trial whose final value is in the study's top TOP_FRACTION must survive all the rungs it
# reaches with probability about 1 - MISS_PER_TRIAL under the copula model: each rung that the
# study's trials reach gets an equal share (``miss_per_rung``). A wrong stop costs more than the
# epochs a lenient rung spends: the search learns less from a stopped trial. Measured as a share
# per rung on 10 LCBench tuning tasks, where trials reach all 4 rungs (benchmarks.multifidelity's
# dyesp-es, seeds 100-109 and 110-119, 100 pairs each, geometric mean of epochs-to-target
# against 0.1 a rung): 0.02 0.93x and 0.89x; 0.05 0.92x and 0.94x; 0.01 0.94x and 0.89x; 0.2
# 1.09x (first set). Shared rather than per rung (against 0.02 at each rung): where trials reach
# one rung only (NAS-Bench-201 cifar10, cifar100 and ImageNet16-120 at 12 and 200 epochs, three
# sets of 60 fresh-seed runs) 0.96x, 0.90x and 0.95x; LCBench jobs reporting every 5 epochs
# (rungs 3, 9, 27) 0.97x, every 10 (rungs 9, 27) 1.02x (100 runs each); every epoch: the same.
TOP_FRACTION = 0.05
MISS_PER_TRIAL = 0.08
# Measured: the best TOP_SHARE of the complete trials (at least MIN_TOP) must all have passed each
# rung's cut, with TOP_MARGIN to spare: where the copula's trust says "predictive" but the best
# trials were slow starters (on LCBench 167168 the eventual top configurations are among the worst
# at epoch 1 while the bulk correlates at 0.7), the measured positions win.
TOP_SHARE = 0.1
MIN_TOP = 3
TOP_MARGIN = 0.2
MIN_KEEP_EXPONENT = 2  # the keep fraction never goes below 1/eta**2
# A stored rule keeps at most this many forecast anchors (equal-count bins of the rung values):
# the forecast only names a predicted final in a stop's reason, and a report reads the rule.
STORED_ANCHORS = 32


@dataclass(frozen=True)
class TrialCurve:
    """One finished trial as calibration sees it: its rung values, and its final value when it
    completed (None for a stopped trial)."""

    points: Mapping[int, float]
    final: float | None = None


@dataclass(frozen=True)
class RungRule:
    """What a rung does: keep the best ``keep`` of the values reported there."""

    step: int
    keep: float
    trust: float  # the shrunk correlation the keep fraction was chosen from
    measured: float | None  # the raw Spearman over ``pairs`` complete trials (None: < 3 pairs)
    pairs: int
    wrong_stop_rate: float | None  # share of the best complete trials this cut would have stopped
    # (rung value, final value) of the complete trials, sorted by rung value: the forecast's map
    anchors: tuple[tuple[float, float], ...] = ()

    def forecast(self, value: float) -> float | None:
        """The final value predicted for ``value`` at this rung: the trials' own finals, linearly
        interpolated by rung value (clamped at the ends); None with fewer than 3 anchors."""
        if len(self.anchors) < 3:
            return None
        xs = np.array([a[0] for a in self.anchors])
        ys = np.array([a[1] for a in self.anchors])
        return float(np.interp(value, xs, ys))

    def to_dict(self) -> dict:
        """The rule as JSON, its anchors thinned to ``STORED_ANCHORS`` bins."""
        return {"step": self.step, "keep": self.keep, "trust": self.trust,
                "measured": self.measured, "pairs": self.pairs,
                "wrong_stop_rate": self.wrong_stop_rate,
                "anchors": [list(a) for a in _thin(self.anchors, STORED_ANCHORS)]}

    @classmethod
    def from_dict(cls, data: Mapping) -> RungRule:
        return cls(int(data["step"]), float(data["keep"]), float(data["trust"]),
                   data.get("measured"), int(data.get("pairs", 0)),
                   data.get("wrong_stop_rate"),
                   tuple((float(x), float(y)) for x, y in data.get("anchors", ())))


@dataclass(frozen=True)
class StoppingPolicy:
    """One rule per rung, ascending; a step that is no rung never stops a trial."""

    rules: tuple[RungRule, ...]

    def rule(self, step: int) -> RungRule | None:
        for r in self.rules:
            if r.step == step:
                return r
        return None

    def to_dict(self) -> dict:
        """JSON for storage (the service keeps one per study; ``from_dict`` reads it back).

        >>> policy = calibrate([TrialCurve({3: v}, final=v) for v in range(50)], "maximize",
        ...                    [1, 3], 52, 3)
        >>> back = StoppingPolicy.from_dict(policy.to_dict())
        >>> [r.keep for r in back.rules] == [r.keep for r in policy.rules]
        True
        >>> len(back.rule(3).anchors), back.rule(3).forecast(49.0) > 40
        (32, True)
        """
        return {"rules": [r.to_dict() for r in self.rules]}

    @classmethod
    def from_dict(cls, data: Mapping) -> StoppingPolicy:
        return cls(tuple(RungRule.from_dict(r) for r in data.get("rules", ())))


def _thin(anchors: Sequence[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    """At most ``n`` anchors: the means of equal-count runs of the (sorted) anchors."""
    if len(anchors) <= n:
        return [tuple(a) for a in anchors]
    bins = np.array_split(np.asarray(anchors, dtype=float), n)
    return [(float(b[:, 0].mean()), float(b[:, 1].mean())) for b in bins]


def prior_trust(step: int, max_step: int) -> float:
    """The share of the log budget spent at ``step``: what a rung is assumed to predict before
    any evidence (epoch 1 of 52: 0.17; 9: 0.58; 27: 0.84).

    >>> round(prior_trust(9, 52), 2)
    0.58
    """
    return math.log1p(step) / math.log1p(max_step)


def miss_per_rung(curves: Sequence[TrialCurve], rungs: Sequence[int]) -> float:
    """``MISS_PER_TRIAL`` shared equally among the rungs the complete ``curves`` reached (all of
    ``rungs`` before any did): a job that reports every epoch passes 4 rungs of 1-52, one that
    reports at 12 and 200 epochs passes 1, and both keep a top trial with the same chance.

    >>> miss_per_rung([TrialCurve({1: 0.5, 3: 0.4, 9: 0.3, 27: 0.2}, 0.1)], [1, 3, 9, 27])
    0.02
    >>> miss_per_rung([TrialCurve({12: 0.5}, 0.9)], [12, 36, 108]), miss_per_rung([], [12, 36])
    (0.08, 0.04)
    """
    reached = {step for c in curves if c.final is not None for step in c.points} & set(rungs)
    return MISS_PER_TRIAL / max(1, len(reached) or len(rungs))


def keep_for_trust(trust: float, eta: int, miss: float) -> float:
    """The smallest keep fraction at which a top-``TOP_FRACTION`` trial survives the rung with
    probability ``1 - miss`` when rung and final values correlate by ``trust``.

    >>> [round(keep_for_trust(t, 3, 0.02), 3) for t in (0.0, 0.84, 0.99)]
    [1.0, 0.395, 0.111]
    """
    floor = 1.0 / eta**MIN_KEEP_EXPONENT
    if not trust > 0:
        return 1.0
    rho = min(trust, 0.999)
    z_top = float(norm_ppf(np.array([1 - TOP_FRACTION]))[0])
    z_pass = float(norm_ppf(np.array([1 - miss]))[0])
    # survive(q) = Phi((rho z_top - z_q) / sqrt(1 - rho^2)) >= 1 - MISS  <=>  z_q <= this bound
    bound = rho * z_top - z_pass * math.sqrt(1 - rho * rho)
    keep = 0.5 * math.erfc(bound / math.sqrt(2))  # 1 - Phi(bound)
    return float(min(1.0, max(floor, keep)))


def calibrate(curves: Sequence[TrialCurve], direction: Direction, rungs: Sequence[int],
              max_step: int, eta: int) -> StoppingPolicy:
    """The policy for ``rungs`` from the study's finished trials (the last CALIBRATION_WINDOW).

    >>> curves = [TrialCurve({3: v, 9: v + 1}, final=v + 2) for v in range(12)]
    >>> policy = calibrate(curves, "maximize", [1, 3, 9, 27], 52, 3)
    >>> [r.keep < 1 for r in policy.rules]  # rung 1 has no evidence: its prior only
    [True, True, True, True]
    >>> policy.rule(9).measured, policy.rule(9).pairs
    (1.0, 12)
    """
    curves = list(curves)[-CALIBRATION_WINDOW:]
    sign = 1.0 if direction == "minimize" else -1.0
    complete = [c for c in curves if c.final is not None]
    rung_miss = miss_per_rung(complete, rungs)
    n_top = max(MIN_TOP, math.ceil(TOP_SHARE * len(complete)))
    top = sorted(complete, key=lambda c: sign * c.final)[:n_top] if len(complete) >= n_top else []
    rules = []
    for step in rungs:
        pairs = [(c.points[step], c.final) for c in complete if step in c.points]
        measured = (spearman(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
                    if len(pairs) >= 3 else None)
        n = len(pairs) if measured is not None else 0
        trust = (n * (measured or 0.0) + PRIOR_PAIRS * prior_trust(step, max_step)) / (
            n + PRIOR_PAIRS)
        keep = keep_for_trust(trust, eta, rung_miss)
        at_rung = np.sort([sign * c.points[step] for c in curves if step in c.points])
        positions = [float(np.searchsorted(at_rung, sign * c.points[step])) / at_rung.size
                     for c in top if step in c.points]
        miss = None
        if len(positions) >= MIN_TOP:
            miss = float(np.mean([q >= keep for q in positions]))
            # the cut must have let every one of the best trials through, with a margin
            keep = max(keep, min(1.0, max(positions) * (1 + TOP_MARGIN) + TOP_MARGIN / 4))
        anchors = tuple(sorted((float(v), float(f)) for v, f in pairs))
        rules.append(RungRule(step, keep, trust, measured, len(pairs), miss, anchors))
    return StoppingPolicy(tuple(rules))
