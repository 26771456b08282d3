"""How hard each rung cuts, measured from a study's curves (``engine.stopping_policy``)."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.early_stopping import Fidelity, decide, finished_curves, policy_for
from service.engine.history import History, Observation, TrialState
from service.engine.stopping_policy import (
    MIN_KEEP_EXPONENT,
    TrialCurve,
    calibrate,
    keep_for_trust,
    miss_per_rung,
    prior_trust,
)

RUNGS = [1, 3, 9, 27]


def test_more_trust_keeps_less_and_no_trust_keeps_everything() -> None:
    keeps = [keep_for_trust(t, 3, 0.02) for t in (0.2, 0.5, 0.8, 0.95, 0.999)]
    assert keeps == sorted(keeps, reverse=True) and len(set(keeps)) == len(keeps)
    assert keep_for_trust(0.0, 3, 0.02) == keep_for_trust(-0.7, 3, 0.02) == 1.0
    assert keep_for_trust(1.0, 3, 0.02) == pytest.approx(1 / 3**MIN_KEEP_EXPONENT)
    assert keep_for_trust(0.8, 3, 0.08) < keep_for_trust(0.8, 3, 0.02)  # a larger miss budget


def test_a_rung_cuts_harder_where_trials_reach_fewer_rungs() -> None:
    rng = np.random.default_rng(0)
    finals = rng.normal(size=40)
    noisy = finals + rng.normal(scale=0.6, size=40)  # what every rung sees
    everywhere = [TrialCurve({r: float(v) for r in RUNGS}, float(f))
                  for v, f in zip(noisy, finals, strict=True)]
    only_nine = [TrialCurve({9: float(v)}, float(f)) for v, f in zip(noisy, finals, strict=True)]
    four = calibrate(everywhere, "minimize", RUNGS, 52, 3).rule(9)
    one = calibrate(only_nine, "minimize", RUNGS, 52, 3).rule(9)
    assert four.trust == one.trust and four.measured == one.measured
    # the same evidence at rung 9, but a top trial of the second study meets no other rung
    assert one.keep < four.keep
    assert miss_per_rung(everywhere, RUNGS) * 4 == miss_per_rung(only_nine, RUNGS)


def test_without_evidence_later_rungs_cut_harder() -> None:
    policy = calibrate([], "minimize", RUNGS, 52, 3)
    keeps = [r.keep for r in policy.rules]
    assert keeps == sorted(keeps, reverse=True) and keeps[0] > keeps[-1]
    assert [r.trust for r in policy.rules] == [prior_trust(s, 52) for s in RUNGS]
    assert all(r.measured is None and r.pairs == 0 for r in policy.rules)


def predictive_and_misleading(n: int, seed: int = 0) -> list[TrialCurve]:
    """Rung 3 predicts the final value (minimised); rung 9 is anti-correlated with it."""
    rng = np.random.default_rng(seed)
    finals = rng.uniform(0, 1, n)
    return [TrialCurve({3: f + rng.normal(0, 0.02), 9: -f}, final=float(f)) for f in finals]


def test_a_predictive_rung_cuts_harder_than_its_prior_and_a_misleading_one_not_at_all() -> None:
    prior = calibrate([], "minimize", RUNGS, 52, 3)
    policy = calibrate(predictive_and_misleading(40), "minimize", RUNGS, 52, 3)
    assert policy.rule(3).measured > 0.95 and policy.rule(3).keep < prior.rule(3).keep
    assert policy.rule(9).measured < -0.95 and policy.rule(9).keep == 1.0
    # rung 1 has no evidence: its prior trust alone, at the miss share of the 2 rungs reached
    curves = predictive_and_misleading(40)
    assert policy.rule(1).pairs == 0 and policy.rule(1).trust == prior.rule(1).trust
    assert policy.rule(1).keep == keep_for_trust(prior_trust(1, 52), 3,
                                                 miss_per_rung(curves, RUNGS))
    assert miss_per_rung(curves, RUNGS) == 2 * miss_per_rung([], RUNGS)
    # the same value and the same values at the rung: stopped at 3, not at 9
    others = [0.1 * i for i in range(10)]
    assert decide(0.75, others, "minimize", 3, rule=policy.rule(3)).should_stop
    assert not decide(0.75, others, "minimize", 9, rule=policy.rule(9)).should_stop


def test_slow_starting_best_trials_loosen_the_cut_until_they_would_have_passed() -> None:
    """The bulk correlates, but the three best finals were among the worst at the rung."""
    rng = np.random.default_rng(1)
    bulk = [TrialCurve({3: f + rng.normal(0, 0.01)}, final=float(f))
            for f in rng.uniform(0.3, 1.0, 30)]
    slow = [TrialCurve({3: 2.0 + i}, final=0.01 * i) for i in range(3)]
    loose = calibrate(bulk + slow, "minimize", RUNGS, 52, 3).rule(3)
    tight = calibrate(bulk, "minimize", RUNGS, 52, 3).rule(3)
    assert tight.keep < 0.5 and loose.keep == 1.0
    # the best tenth is 4 trials: the trust-based cut would have stopped the 3 slow starters
    assert loose.wrong_stop_rate == 3 / 4


def test_directions_mirror_each_other() -> None:
    curves = predictive_and_misleading(30)
    flipped = [TrialCurve({s: -v for s, v in c.points.items()}, final=-c.final) for c in curves]
    low = calibrate(curves, "minimize", RUNGS, 52, 3)
    high = calibrate(flipped, "maximize", RUNGS, 52, 3)
    assert [r.keep for r in low.rules] == [r.keep for r in high.rules]


def test_the_forecast_maps_a_rung_value_through_the_complete_trials() -> None:
    rule = calibrate([TrialCurve({3: v}, final=10 * v) for v in range(10)], "minimize",
                     RUNGS, 52, 3).rule(3)
    assert rule.forecast(4.5) == pytest.approx(45.0)
    assert rule.forecast(-3) == 0.0 and rule.forecast(99) == 90.0  # clamped at the ends
    assert calibrate([], "minimize", RUNGS, 52, 3).rule(3).forecast(1.0) is None


def test_only_finished_trials_with_a_curve_calibrate() -> None:
    trials = (Observation(0, {}, TrialState.COMPLETE, 0.5, curve=((3, 0.6),)),
              Observation(1, {}, TrialState.STOPPED, 0.9, curve=((3, 0.9),)),
              Observation(2, {}, TrialState.RUNNING, curve=((3, 0.1),)),
              Observation(3, {}, TrialState.COMPLETE, 0.4),
              Observation(4, {}, TrialState.FAILED, curve=((3, 0.2),)))
    curves = finished_curves(History("minimize", trials))
    assert [(dict(c.points), c.final) for c in curves] == [({3: 0.6}, 0.5), ({3: 0.9}, None)]
    policy = policy_for(curves, "minimize", Fidelity("epoch", 1, 52))
    assert policy.rule(3).pairs == 1  # a stopped trial has no final to pair with
