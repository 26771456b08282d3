"""The numbers that matter to the engine, in one settings object, each with its reason (rule 12)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from service.engine.retraining_policy import RetrainPolicy
from service.engine.trust import TRUST_FLOOR


@dataclass(frozen=True)
class EngineOptions:
    """Ablation switches and tuning constants of ``propose``; defaults generalise.

    >>> EngineOptions.coerce({"scheduler": False}).scheduler
    False
    >>> EngineOptions.coerce({"retrain": {"min_new": 3}}).retrain.min_new
    3
    """

    # Ablations: False = a fixed default strategy mix with no adaptation / never consult a pruner.
    scheduler: bool = True
    pruner: bool = True
    # Quasi-random points before any model: None = 4 (fewer for tiny spaces), so the models
    # start early; the surrogate's own candidate pool keeps exploring.
    n_initial: int | None = None
    # Candidates a ranking strategy draws and ranks at exploration 0.5; doubles at full
    # exploitation and halves at full exploration (Optuna draws 24; more ranks greedier).
    pool_size: int = 64
    # The pruner must predict new trials with at least this Spearman correlation before it may
    # prune anything: below it, its predictions are barely better than coin flips (the floor
    # below which ``trust_strength`` gives it no say).
    trust_min: float = TRUST_FLOOR
    # At full trust the pruner may discard candidates predicted below this quantile of the
    # observed results; never more, so a confidently wrong model cannot starve the search.
    prune_quantile_max: float = 0.5
    # Candidates per proposal put through the pruner when it prunes (the strategy's best first).
    prune_candidates: int = 4
    # When the in-process ``Optimizer`` retrains its pruner: the service's rule, so benchmarks
    # measure what the service does (the service builds it from its settings).
    retrain: RetrainPolicy = field(default_factory=RetrainPolicy)
    # Trials (most recent) over which strategies are credited: long enough to average out luck,
    # short enough to follow a study as it moves from exploring to refining.
    credit_window: int = 60

    @classmethod
    def coerce(cls, value: EngineOptions | dict[str, Any] | None) -> EngineOptions:
        """Accept options as an object, a dict of overrides (benchmarks, API) or None."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown engine options {sorted(unknown)}; known: {sorted(known)}")
        if isinstance(value.get("retrain"), dict):
            value = {**value, "retrain": RetrainPolicy(**value["retrain"])}
        return cls(**value)
