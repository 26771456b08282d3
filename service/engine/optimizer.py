"""An in-process ask/tell loop over ``propose``, for benchmarks, scripts and notebooks.

It holds the history as value objects and the current pruner, exactly what the service keeps in
its database, and retrains when the service would (``retraining_policy``), so what a benchmark
measures is what the service does. Retraining is delegated to an injected
``trainer(training_set, previous_model) -> PrunerModel`` (the torch one lives in
``service.training``; the engine never imports torch). Unlike the service it trains in line (the
next ask waits for it), holds no results out and always uses the newest model.

>>> opt = Optimizer({"params": [{"name": "x", "type": "float", "low": -2, "high": 2}]}, seed=0)
>>> for _ in range(20):
...     s = opt.ask()
...     opt.tell(s, (s.params["x"] - 1.0) ** 2)
>>> abs(opt.best().params["x"] - 1.0) < 0.5
True

With a ``fidelity``, running trials ``report`` intermediate values and are told to stop by the
same rule the service's report path applies (``early_stopping``, calibrated per study by
``stopping_policy``); a stopped trial is told ``state="stopped"`` and keeps its last value.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.engine import early_stopping
from service.engine.early_stopping import Fidelity, StopDecision
from service.engine.encoding import encoder_for
from service.engine.history import Direction, History, Observation, ProposalInfo, TrialState
from service.engine.history_ledger import HistoryLedger
from service.engine.options import EngineOptions
from service.engine.propose import propose
from service.engine.pruner import make_training_set
from service.engine.pruning import MetricsFn
from service.engine.retraining_policy import recent_trust
from service.engine.space import SearchSpace
from service.engine.transfer import teaching_prior

if TYPE_CHECKING:
    from service.engine.pruner import PrunerModel, TrainingSet
    from service.engine.transfer import Prior

Trainer = Callable[["TrainingSet", "PrunerModel | None"], "PrunerModel | None"]


@dataclass(frozen=True)
class Suggestion:
    """A configuration to evaluate; pass it back to ``Optimizer.tell``."""

    number: int
    params: dict[str, Any]
    proposal: ProposalInfo


class Optimizer:
    """Ask for configurations, tell their results; the engine does the rest."""

    def __init__(self, space: SearchSpace | Mapping[str, Any], direction: Direction = "minimize",
                 seed: int = 0, trainer: Trainer | None = None,
                 options: EngineOptions | dict[str, Any] | None = None,
                 metrics_fn: MetricsFn | None = None,
                 metric_names: Sequence[str] = (), prior: Prior | None = None,
                 fidelity: Fidelity | None = None) -> None:
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
        self.space = space if isinstance(space, SearchSpace) else SearchSpace.from_dict(space)
        self.direction: Direction = direction
        self.seed = seed
        self.trainer = trainer
        self.options = EngineOptions.coerce(options)
        self.metrics_fn = metrics_fn
        self.metric_names = tuple(metric_names)
        self.prior = prior  # finished related studies (``transfer.build_prior``), or None
        self.model: PrunerModel | None = None
        # The trials (numbered 0, 1, ... in ask order) with their History views kept up to date.
        self._ledger = HistoryLedger(direction)
        self._trained_on: int | None = None  # complete trials at the last training; None: never
        self._model_learnt_prior = False  # whether the model's weights carry the prior's ranks
        self.n_trainings = 0
        self.fidelity = fidelity  # the steps reports are made at; None: reports never stop
        self._reports: dict[int, dict[int, tuple[float, StopDecision]]] = {}
        # The newest values trials had at each rung, as the service's rung query reads them.
        self._at_rung: dict[int, deque[float]] = {}
        self._policy: early_stopping.StoppingPolicy | None = None
        self._policy_finished = -1  # finished trials the cached policy was calibrated on
        self._policy_curves = 0  # and its curves

    @property
    def history(self) -> History:
        return self._ledger.history()

    def ask(self) -> Suggestion:
        return self.ask_many(1)[0]

    def ask_many(self, n: int) -> list[Suggestion]:
        """``n`` configurations at once, distinct and spread out (as for ``n`` parallel workers)."""
        history = self.history
        self._retrain_if_due(history)  # a study with a prior pretrains before its first result
        decision = propose(self.space, history, n, seed=self.seed, pruner=self.model,
                           options=self.options,
                           metrics_fn=self.metrics_fn if self.metric_names else None,
                           prior=self.prior)
        for candidate in decision.pruned:
            self._ledger.add_pruned(candidate)
        configs = [p.params for p in decision.proposals]
        metrics = self._metrics(configs)
        out = []
        for proposal, values in zip(decision.proposals, metrics, strict=True):
            number = len(self._ledger)
            self._put(Observation(number, proposal.params, TrialState.RUNNING,
                                  metrics=values, proposal=proposal.info))
            out.append(Suggestion(number, dict(proposal.params), proposal.info))
        return out

    def tell(self, suggestion: Suggestion | int, value: float | None = None, *,
             state: TrialState | str | None = None) -> None:
        """Record a result. ``value=None`` needs ``state`` "failed" (retry elsewhere is fine) or
        "infeasible" (the configuration cannot work: the engine avoids its region)."""
        number = self._number(suggestion)
        if state is None:
            state = TrialState.COMPLETE if value is not None else TrialState.FAILED
        state = TrialState(state)
        if state is TrialState.STOPPED:  # its result is its curve: the last value it reported
            reports = self._reports.get(number)
            if not reports:
                raise ValueError(f"trial {number} reported nothing: tell a value, or failed")
            value = reports[max(reports)][0]
        if state is TrialState.COMPLETE and (value is None or not math.isfinite(value)):
            raise ValueError(f"a complete trial needs a finite value, got {value!r}")
        old = self._trial(number)
        if old.state.finished:
            raise ValueError(f"trial {number} is already {old.state.value}")
        self._put(dataclasses.replace(
            old, state=state, value=None if value is None else float(value)))
        self._retrain_if_due(self.history)

    def report(self, suggestion: Suggestion | int, step: int, value: float) -> StopDecision:
        """An intermediate ``value`` of a running trial at ``step``: whether it should stop.
        The same report again gets the same answer; another value at a reported step is refused.
        """
        number = self._number(suggestion)
        if not math.isfinite(value):
            raise ValueError(f"a reported value must be finite, got {value!r}")
        fidelity = self.fidelity
        if fidelity is not None and not fidelity.min <= step <= fidelity.max:
            raise ValueError(f"step must be within the fidelity [{fidelity.min}, "
                             f"{fidelity.max}], got {step}")
        reports = self._reports.setdefault(number, {})
        if step in reports:
            known, decision = reports[step]
            if known != value:
                raise ValueError(f"trial {number} already reported {known} at step {step}")
            return decision
        trial = self._trial(number)
        if trial.state is not TrialState.RUNNING:
            raise ValueError(f"trial {number} is {trial.state.value}, not running")
        decision = early_stopping.GO_ON
        rung = (fidelity.rung_crossed(step, max(reports) if reports else None)
                if fidelity is not None else None)
        if rung is not None:
            others = self._at_rung.setdefault(
                rung, deque(maxlen=early_stopping.RUNG_SAMPLE))
            decision = early_stopping.decide(value, list(others), self.direction, rung,
                                             rule=self._stopping_policy().rule(rung),
                                             number=number, step=step)
            others.append(value)
            self._put(dataclasses.replace(
                trial, curve=tuple(sorted((*trial.curve, (rung, float(value)))))))
        reports[step] = (float(value), decision)
        return decision

    def best(self) -> Observation | None:
        return self.history.best()

    def _put(self, trial: Observation) -> None:
        """Record a new trial or a trial's new state."""
        self._ledger.put(trial)

    def _trial(self, number: int) -> Observation:
        trial = self._ledger.get(number)
        assert trial is not None  # every number below len(self._ledger) was asked
        return trial

    def _number(self, suggestion: Suggestion | int) -> int:
        number = suggestion if isinstance(suggestion, int) else suggestion.number
        if not 0 <= number < len(self._ledger):
            raise ValueError(f"unknown trial number {number}; asked {len(self._ledger)} so far")
        return number

    def _stopping_policy(self) -> early_stopping.StoppingPolicy:
        """The calibrated policy, recomputed as the service's tells recompute it
        (``early_stopping.recalibration_due``)."""
        assert self.fidelity is not None
        history = self.history
        finished = sum(1 for t in history.trials if t.state.finished)
        if self._policy is None or early_stopping.recalibration_due(
                finished - self._policy_finished, self._policy_curves):
            curves = early_stopping.finished_curves(history)
            self._policy = early_stopping.policy_for(curves, self.direction, self.fidelity)
            self._policy_finished, self._policy_curves = finished, len(curves)
        return self._policy

    def _metrics(self, configs: list[dict[str, Any]]) -> list[dict[str, float]]:
        if not self.metric_names or self.metrics_fn is None:
            return [{} for _ in configs]
        return [dict(m) for m in self.metrics_fn(configs)]

    def _retrain_if_due(self, history: History) -> None:
        """Train when the service would: the same policy, counts and trust measure."""
        if self.trainer is None or not self.options.pruner:
            return
        trained_on = self._trained_on or 0
        # As the service: trust is measured once a version trained on results exists.
        trust = recent_trust(history) if trained_on else None
        pretrain = self.prior is not None and self._trained_on is None
        if self.options.retrain.is_due(len(history.complete), trained_on, trust, pretrain):
            self._trained_on = len(history.complete)
            self._train(history)

    def _train(self, history: History) -> None:
        prior = teaching_prior(self.prior, self.space, history)
        training_set = make_training_set(encoder_for(self.space), history, self.metric_names,
                                         prior)
        if training_set.n_trials < 2:
            return
        # A model pretrained on a prior found misleading starts over rather than fine-tunes:
        # its weights would keep the wrong ranks for many trainings.
        previous = None if self._model_learnt_prior and prior is None else self.model
        self.model = self.trainer(training_set, previous)
        self._model_learnt_prior = prior is not None
        self.n_trainings += 1
