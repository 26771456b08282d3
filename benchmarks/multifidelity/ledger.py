"""Epoch accounting and target detection, one ledger per run, shared by every method.

What a user pays is epochs, so the ledger charges them, sequentially, one worker:

- a trial that trains on (`TrialRun.advance`) pays only the new epochs; stopped, it has paid the
  epochs it ran (`stop`); trained to the maximum fidelity, it has paid the maximum (`complete`);
- a method that evaluates a configuration from scratch at some budget (`Ledger.evaluate`:
  SMAC/DEHB/Hyperband-style restarts, which are not resumed) pays that whole budget every time,
  even for a configuration it already trained at a lower one.

The run ends (`RunOver`) when a trial trained to the maximum fidelity reaches the target: its
epochs-to-target is everything spent so far, that trial included. It also ends when the next
charge would exceed the budget: censored, with no epochs-to-target. Only full-fidelity values
count for the target: a low-fidelity value above it means nothing to a user who wants a trained
model. Per trial the ledger keeps the furthest step trained, so that at the end the stopped
trials and the quality of those stops can be counted: a trial told to stop (`TrialRun.stop`), or
a restarted configuration never evaluated at the maximum. The trial in flight when the budget
ran out counts as a trial, but neither as stopped nor as full.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from benchmarks.multifidelity.tasks import MFTask


class RunOver(Exception):  # a normal end of a run, not an error
    """The run is over: the target was reached (`reached`) or the budget is spent."""

    def __init__(self, reached: bool) -> None:
        super().__init__("target reached" if reached else "budget spent")
        self.reached = reached


class Ledger:
    def __init__(self, task: MFTask, budget: int | None = None) -> None:
        self.task = task
        self.budget = task.budget if budget is None else int(budget)
        self.spent = 0
        self.epochs_to_target: int | None = None
        self.best_full: float | None = None
        self.n_evaluations = 0  # objective calls at a charged step (a trial may make several)
        self.n_full = 0  # trainings to the maximum fidelity
        self.notes: Counter[str] = Counter()  # method-specific counts (e.g. stop reasons)
        self._trials: list[dict[str, Any]] = []  # {"params", "step"}: furthest step trained
        self._restarts: dict[str, int] = {}  # config key -> index in _trials (evaluate())

    # -- charging --------------------------------------------------------------------------
    def _charge(self, epochs: int) -> None:
        if epochs < 0:
            raise ValueError(f"cannot charge {epochs} epochs")
        if self.spent + epochs > self.budget:
            raise RunOver(False)
        self.spent += epochs

    def _full(self, value: float) -> None:
        """A training reached the maximum fidelity with `value`: the target check."""
        self.n_full += 1
        if self.best_full is None or self.task.sign * value < self.task.sign * self.best_full:
            self.best_full = value
        if self.task.reached(value):
            self.epochs_to_target = self.spent
            raise RunOver(True)

    def start(self, params: dict[str, Any]) -> TrialRun:
        """A trial that trains on step by step (resumed, not restarted)."""
        self._trials.append({"params": dict(params), "step": 0})
        return TrialRun(self, len(self._trials) - 1)

    def evaluate(self, params: dict[str, Any], step: int) -> float:
        """Train `params` from scratch to `step` (an available one) and pay all of it."""
        if step not in self.task.steps:
            raise ValueError(f"step {step} is not one of {self.task.name}'s steps")
        key = json.dumps(params, sort_keys=True, default=str)
        if key not in self._restarts:
            self._trials.append({"params": dict(params), "step": 0, "restart": True})
            self._restarts[key] = len(self._trials) - 1
        self._charge(step)
        trial = self._trials[self._restarts[key]]
        trial["step"] = max(trial["step"], step)
        value = self.task.value(params, step)
        self.n_evaluations += 1
        if step == self.task.fmax:
            self._full(value)
        return value

    # -- the record ------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Trials, stopped trials (never trained to the maximum) and how good those were."""
        stopped = [t for t in self._trials if 0 < t["step"] < self.task.fmax
                   and t.get("stopped", t.get("restart", False))]
        good = sum(self.task.in_top5(self.task.value(t["params"], self.task.fmax))
                   for t in stopped)
        return {"reached": self.epochs_to_target is not None,
                "epochs_to_target": self.epochs_to_target, "spent": self.spent,
                "budget": self.budget, "best_full": self.best_full,
                "n_trials": sum(1 for t in self._trials if t["step"] > 0),
                "n_stopped": len(stopped), "n_stopped_top5": int(good),
                "n_full": self.n_full, "n_evaluations": self.n_evaluations,
                "hindsight_epochs_to_target": self.hindsight_epochs_to_target(),
                "notes": dict(self.notes)}

    def hindsight_epochs_to_target(self) -> int | None:
        """What the same configurations, in the same order, would have cost with perfect stop
        decisions: each trained to the maximum only if its final value beats every earlier
        configuration's, else stopped after the task's first step; over at the first one
        whose final value reaches the target (None if none does). The gap between a method's
        epochs and this bound is what its stop decisions cost; the bound itself is what its
        proposals cost.

        >>> from benchmarks.multifidelity.tasks import MFTask
        >>> task = MFTask("toy", {}, "maximize", 1, 10, tuple(range(1, 11)), target=9.0,
        ...               top5=8.0, value_fn=lambda p, step: p["x"] * step / 10)
        >>> ledger = Ledger(task)
        >>> [ledger.start({"x": x}).advance(10) for x in (5, 4, 6, 3)]
        [5.0, 4.0, 6.0, 3.0]
        >>> ledger.start({"x": 9.5}).advance(2)  # stopped at step 2: it would have reached 9.5
        1.9
        >>> ledger.spent, ledger.hindsight_epochs_to_target()  # 10 + 1 + 10 + 1 + 10
        (42, 32)
        """
        best, spent = None, 0
        first = self.task.steps[0]
        for trial in self._trials:
            if trial["step"] == 0:
                continue
            final = self.task.value(trial["params"], self.task.fmax)
            if best is None or self.task.sign * final < self.task.sign * best:
                best, spent = final, spent + self.task.fmax
                if self.task.reached(final):
                    return spent
            else:
                spent += first
        return None


class TrialRun:
    """One trial trained on epoch by epoch: pays each new epoch once."""

    def __init__(self, ledger: Ledger, index: int) -> None:
        self.ledger = ledger
        self.index = index
        self.step = 0
        self.done = False

    @property
    def params(self) -> dict[str, Any]:
        return self.ledger._trials[self.index]["params"]

    def advance(self, step: int) -> float:
        """Train on to `step` (an available step, after the current one); its value."""
        if self.done:
            raise ValueError("the trial is finished")
        if step <= self.step or step not in self.ledger.task.steps:
            raise ValueError(f"cannot advance from step {self.step} to {step}")
        self.ledger._charge(step - self.step)
        self.step = step
        self.ledger._trials[self.index]["step"] = step
        self.ledger.n_evaluations += 1
        value = self.ledger.task.value(self.params, step)
        if step == self.ledger.task.fmax:
            self.done = True
            self.ledger._full(value)
        return value

    def stop(self) -> None:
        """Stopped early: it has paid the epochs it ran; nothing more to charge."""
        self.done = True
        self.ledger._trials[self.index]["stopped"] = True
