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

import math
from collections import deque
from dataclasses import dataclass, replace

from service.engine.history import History, Observation, TrialState
from service.engine.trust import (
    TRUST_FLOOR,
    TRUST_WINDOW,
    measure_trust,
    prediction_pairs,
    rank_trust,
)

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

    def results_before_recheck(self, n_complete: int, trained_on: int | None) -> int:
        """After ``is_due`` said no: how many more results may arrive before asking again. The
        growth rule cannot say yes sooner, and the trust trigger is asked again at least every
        ``min_new`` results, so a pruner that stops predicting well is noticed at most that late.
        A checker that counts results (or anything that grows at least as fast, such as the
        study's revision) skips the reads the question costs in between.

        >>> policy = RetrainPolicy()
        >>> policy.results_before_recheck(4, None), policy.results_before_recheck(12, 10)
        (6, 3)
        >>> policy.results_before_recheck(1060, 1000)  # due by growth at 1100; trust every 5
        5
        """
        if n_complete < self.min_trials:
            return self.min_trials - n_complete
        new = n_complete - (trained_on or 0)
        growth_left = max(self.min_new, int(self.growth * (trained_on or 0))) - new
        trust_left = self.min_new - new if new < self.min_new else self.min_new
        return max(1, min(growth_left, trust_left))


def recent_trust(history: History, window: int = TRUST_WINDOW) -> float | None:
    """The pruner's trust over the study's ``window`` most recent finished (complete or
    infeasible) trials: the retraining trigger's measure, a bounded read for the service.
    ``history`` may hold just those trials (the service reads no more) or the whole study."""
    finished = tuple(t for t in history.trials
                     if t.state in (TrialState.COMPLETE, TrialState.INFEASIBLE))[-window:]
    return measure_trust(replace(history, trials=finished, pruned=(), seen=None), window=window)


# --- the deterministic schedule (studies whose asks must replay from the seed) -------------------

# Trials whose result the pruner learns from: complete and infeasible ones are labels, stopped
# ones are evidence through their curves (``pruner.make_training_set``); failed ones say nothing.
_RESULTS = (TrialState.COMPLETE, TrialState.INFEASIBLE, TrialState.STOPPED)


@dataclass(frozen=True)
class ScheduledTraining:
    """One retraining the deterministic schedule calls for: the version it stores is trained on
    the first ``arrived`` results of ``arrival_order``, ``n_results`` of them complete (the
    version's ``n_train``, which names it: no two scheduled trainings share one)."""

    n_results: int
    arrived: int


def arrival_order(history: History) -> tuple[Observation, ...]:
    """The study's results in the order they arrived: by the revision that finished each (ties,
    several results in one write, by trial number). Append-only: a result never changes once
    told, and a trial failed for silence whose result arrives late joins at the end, so the
    first N results are the same set forever, whoever tells what afterwards."""
    return tuple(sorted((t for t in history.trials if t.state in _RESULTS),
                        key=lambda t: (t.revision, t.number)))


@dataclass(frozen=True)
class Replay:
    """Where a replay of the schedule may resume: ``trained_on``, a scheduled training's
    complete results; ``results``, how many results in arrival order were replayed by then (the
    last one trial ``last``), or None: just past the ``trained_on``-th complete result (its
    training lies at or after that result, and nothing between the two is due: no new results).
    """

    trained_on: int
    results: int | None = None
    last: int | None = None


def training_schedule(policy: RetrainPolicy, history: History, *, pretrain: bool = False,
                      resume: Replay | None = None
                      ) -> tuple[tuple[ScheduledTraining, ...], Replay | None]:
    """Every retraining ``policy`` makes due when the study's results are replayed one at a time
    in ``arrival_order``: what a retrainer checking after each tell would have trained, made a
    function of the results alone (not of when a background training happened to finish).
    Returns them and where the replay ended (to ``resume`` from next time).

    ``pretrain``: the study learns from prior studies (a training on theirs before any result).
    ``resume``: replay only what came after (and return only the trainings after it); ignored
    where it does not fit ``history`` (an older snapshot). Trust is measured as the retrainer
    does (``recent_trust``, once a version learnt from results), on the latest results to arrive.

    >>> done = [Observation(i, {"x": i}, TrialState.COMPLETE, float(i)) for i in range(17)]
    >>> due, replay = training_schedule(RetrainPolicy(), History("minimize", tuple(done)))
    >>> [s.n_results for s in due], replay
    ([10, 15], Replay(trained_on=15, results=17, last=16))
    """
    results = arrival_order(history)
    due: list[ScheduledTraining] = []
    trained_on, start = _resume_at(results, resume)
    if trained_on is None and pretrain:
        trained_on = 0
        due.append(ScheduledTraining(0, 0))
    n = sum(_scored(t) for t in results[:start])
    recent: deque[Observation] = deque(
        (t for t in results[:start] if t.state is not TrialState.STOPPED), maxlen=TRUST_WINDOW)
    for i in range(start, len(results)):
        result = results[i]
        if result.state is TrialState.STOPPED:
            continue  # neither a count nor a trust changes: nothing newly due
        recent.append(result)
        n += _scored(result)
        if n == trained_on:
            continue
        # Trust only where the growth rule alone says no: measuring it costs a rank correlation.
        due_now = policy.is_due(n, trained_on or 0) or (bool(trained_on) and policy.is_due(
            n, trained_on or 0, _window_trust(history, recent)))
        if due_now:
            due.append(ScheduledTraining(n, i + 1))
            trained_on = n
    end = Replay(trained_on, len(results), results[-1].number if results else None) \
        if trained_on is not None else None
    return tuple(due), end


def _resume_at(results: tuple[Observation, ...], resume: Replay | None) -> tuple[int | None, int]:
    """(trained_on, results replayed) to start from: ``resume`` where it fits, else the start."""
    if resume is None:
        return None, 0
    if resume.results is not None:
        fits = resume.results <= len(results) and (
            resume.results == 0 or results[resume.results - 1].number == resume.last)
        return (resume.trained_on, resume.results) if fits else (None, 0)
    if resume.trained_on == 0:
        return 0, 0
    seen = 0
    for i, t in enumerate(results):
        seen += _scored(t)
        if seen == resume.trained_on:
            return resume.trained_on, i + 1
    return None, 0


def _window_trust(history: History, recent: deque[Observation]) -> float | None:
    """``recent_trust`` on the results in ``recent`` (the window, oldest first)."""
    return rank_trust(*prediction_pairs(history, reversed(recent), _scored, len(recent)))


def _scored(t: Observation) -> bool:
    """Counted among the complete results (``History.complete``: a finite value to rank)."""
    return t.state is TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)


def results_up_to(history: History, scheduled: ScheduledTraining) -> History:
    """The history a scheduled training learns from: its first ``arrived`` results, in trial
    number order (the engine's order), nothing running or pruned."""
    kept = arrival_order(history)[:scheduled.arrived]
    return replace(history, trials=tuple(sorted(kept, key=lambda t: t.number)), pruned=(),
                   seen=None)


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
