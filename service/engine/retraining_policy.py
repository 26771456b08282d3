"""When the pruner is retrained, and whether a newly trained version replaces the active one.

One rule for every place that retrains: the service (its retrainer thread, the RQ worker, the
spawned child) and the in-process ``Optimizer`` the benchmarks run, so a benchmark measures what
the service does. Pure functions and values: the service reads the counts from its database,
the optimizer from its history, and both ask the same questions here.

>>> policy = RetrainPolicy()
>>> policy.is_due(10, 0), policy.is_due(14, 10), policy.is_due(1060, 1000, trust=0.1)
(True, False, True)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from service.engine.history import History, TrialState
from service.engine.trust import TRUST_FLOOR, TRUST_WINDOW, measure_trust

HOLDOUT_SHARE = 0.2  # the newest fifth of the results judges the new model
MIN_HOLDOUT = 5  # fewer held-out results than this say nothing reliable about ranking
ACTIVATION_SLACK = 0.05  # Spearman noise on a few results: don't refuse a model for less


@dataclass(frozen=True)
class RetrainPolicy:
    """When retraining is due, counted in complete trials (those with a value to rank).

    ``min_trials``: fewer results than this teach a model nothing worth trusting. Then retrain when
    results grew by the larger of ``min_new`` and ``growth`` x the last training size: cheap early,
    bounded work late (a 10,000-trial study retrains every 1,000 results, not every 5).
    """

    min_trials: int = 10
    min_new: int = 5
    growth: float = 0.1

    def is_due(self, n_complete: int, trained_on: int, trust: float | None = None,
               pretrain: bool = False) -> bool:
        """Whether to train now, with ``n_complete`` results and the newest version trained when
        there were ``trained_on``. Sooner (after ``min_new`` results) when the pruner's recent
        trust (``recent_trust``) dropped to the floor where it has no say: a pruner that stopped
        predicting well should learn from what fooled it now. ``pretrain``: the study learns from
        prior studies and has no version yet: train on theirs before any result."""
        if pretrain:
            return True
        if n_complete < self.min_trials:
            return False
        new = n_complete - trained_on
        if trust is not None and trust <= TRUST_FLOOR and new >= self.min_new:
            return True
        return new >= max(self.min_new, int(self.growth * trained_on))


def recent_trust(history: History, window: int = TRUST_WINDOW) -> float | None:
    """The pruner's trust over the study's ``window`` most recent finished (complete or
    infeasible) trials: the retraining trigger's measure, a bounded read for the service.
    ``history`` may hold just those trials (the service reads no more) or the whole study."""
    finished = tuple(t for t in history.trials
                     if t.state in (TrialState.COMPLETE, TrialState.INFEASIBLE))[-window:]
    return measure_trust(replace(history, trials=finished, pruned=(), seen=None), window=window)


def holdout_split(history: History, labelled_numbers: list[int]) -> tuple[History, History | None]:
    """Older results to fit on, the newest ``HOLDOUT_SHARE`` of the labelled trials to judge the
    new model; no split (None) while that would be fewer than ``MIN_HOLDOUT``."""
    n_holdout = int(len(labelled_numbers) * HOLDOUT_SHARE)
    if n_holdout < MIN_HOLDOUT:
        return history, None
    cut = sorted(labelled_numbers)[-n_holdout]
    fit = replace(history, trials=tuple(t for t in history.trials if t.number < cut))
    held = replace(history, trials=tuple(t for t in history.trials if t.number >= cut),
                   pruned=())
    return fit, held


def should_activate(new_spearman: float | None, active_spearman: float | None) -> bool:
    """Whether a new version replaces the active one: yes unless both were judged on the held-out
    results and the new one ranks them worse by more than ``ACTIVATION_SLACK`` (a worse version
    is kept for the record, not served)."""
    if new_spearman is None or active_spearman is None:
        return True
    return new_spearman >= active_spearman - ACTIVATION_SLACK
