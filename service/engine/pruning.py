"""The pruning policy: whether the pruner is consulted, how far it is trusted, what it discards.

Candidates reach the pruner two ways: ``propose`` puts each slot's few best candidates of a strategy
through it, and ``selection`` the pool a static-metrics client sent back with its metrics. Both
follow the rules here, so a study behaves the same whichever way it asks:

- a model is consulted only if it was trained for this feature layout (``PrunerModel.applies_to``)
  and, when it reads static metrics, they are known; a model that learnt a prior study's ranks is
  set aside while that prior is found misleading (or gone), until its retraining;
- its trust is measured on the trials it predicted (``trust.measure_trust``), leaving out, under a
  misleading prior, the forecasts its prior-pretrained predecessor made;
- it discards only once trusted, and never more than ``prune_mask`` allows; of the survivors the
  strategies' order decides, so the engine is never worse than its strategies alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from service.engine.encoding import Encoder
from service.engine.history import History, Key, PrunedCandidate
from service.engine.options import EngineOptions
from service.engine.pruner import featurize, observed_labels
from service.engine.space import config_key
from service.engine.transfer import PRETRAINED_FORECASTS, TransferView
from service.engine.trust import measure_trust, trust_strength

if TYPE_CHECKING:
    from service.engine.pruner import PrunerModel

MetricsFn = Callable[[list[dict[str, Any]]], list[dict[str, float]]]
MAX_PRUNED_PER_ASK = 64  # pruned candidates recorded per ask: enough to learn from, bounded rows
# Above this share of pruned candidates among all recorded, the prune quantile is halved: the
# pruner is discarding more than the study trains, and pruning must not run away.
PRUNE_RATIO_BRAKE = 0.75


class Scorer:
    """The pruner as a strategy sees it: configurations -> (mean, std) of predicted goodness.

    Static metrics come from ``metrics_fn`` (the client's, in the benchmarks and ``selection``),
    asked once per configuration."""

    def __init__(self, model: PrunerModel, encoder: Encoder,
                 metrics_fn: MetricsFn | None) -> None:
        self.model, self.encoder, self.metrics_fn = model, encoder, metrics_fn
        self._metrics: dict[Key, dict[str, float]] = {}

    def metrics(self, configs: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
        if not self.model.metric_names or self.metrics_fn is None:
            return [{} for _ in configs]
        missing = [dict(c) for c in configs if config_key(c) not in self._metrics]
        if missing:
            for config, values in zip(missing, self.metrics_fn(missing), strict=True):
                self._metrics[config_key(config)] = dict(values)
        return [self._metrics[config_key(c)] for c in configs]

    def __call__(self, configs: Sequence[Mapping[str, Any]],
                 encoded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread of each configuration's predicted goodness. ``encoded``: their
        ``encoder.encode_many``, when the caller has it already."""
        features = featurize(self.encoder, list(configs), self.metrics(configs),
                             self.model.metric_names, encoded)
        mean, std = self.model.predict(features)
        return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)


def consult(model: PrunerModel | None, encoder: Encoder, history: History,
            transfer: TransferView | None, options: EngineOptions,
            metrics_fn: MetricsFn | None) -> tuple[Scorer | None, float | None]:
    """The pruner this ask consults (None: none may be) and its measured trust (None: unknown)."""
    misled = transfer is not None and not transfer.active
    if getattr(model, "n_prior", 0) and (transfer is None or misled):
        return None, None  # it learnt a prior since found misleading: wait for its retraining
    if model is None or not options.pruner or not model.applies_to(encoder, model.metric_names):
        return None, None  # trained for another layout (DESIGN rule 3): never applied
    if model.metric_names and metrics_fn is None:
        return None, None
    # Under a misleading prior, the forecasts on the first trials came from the model pretrained
    # on it: they would hold the retrained pruner's trust down for a whole window.
    trust = measure_trust(history, skip=PRETRAINED_FORECASTS if misled else frozenset())
    trust = None if trust is None or not math.isfinite(trust) else float(trust)
    return Scorer(model, encoder, metrics_fn), trust


def is_trusted(trust: float | None, options: EngineOptions) -> bool:
    """Whether the pruner may prune and the surrogate rank with it."""
    return trust is not None and options.pruner and trust >= options.trust_min


def prune_ratio(history: History) -> float:
    """The share of pruned candidates among everything recorded (trials and pruned)."""
    n_recorded = len(history.pruned) + len(history.trials)
    return len(history.pruned) / n_recorded if n_recorded else 0.0


def prune_quantile(trust: float | None, ratio: float, options: EngineOptions) -> float:
    """The largest quantile of the observed results below which this ask may discard candidates;
    ``prune_mask`` scales it by the pruner's trust strength (none at its floor, full from
    ``TRUST_FULL``), so the effective quantile rises with trust."""
    if not is_trusted(trust, options):
        return 0.0
    quantile = options.prune_quantile_max
    return quantile * 0.5 if ratio > PRUNE_RATIO_BRAKE else quantile


def prune_mask(predicted: np.ndarray, history: History, trust: float | None, quantile: float,
               *, std: np.ndarray | None = None, min_history: int = 10,
               min_keep_fraction: float = 0.25) -> np.ndarray:
    """Keep-mask over a candidate pool (True = keep).

    A candidate is discarded when its predicted goodness (optimistically ``predicted + std`` when
    the ensemble spread is given) is below the ``quantile x trust_strength(trust)`` quantile of
    the observed goodness. Nothing is discarded while trust is None or <= TRUST_FLOOR, or while
    fewer than ``min_history`` trials have a label; the best-predicted
    ``ceil(min_keep_fraction x pool)`` (at least one) candidates are always kept.
    """
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    n = predicted.size
    keep = np.ones(n, dtype=bool)
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"`0 <= quantile <= 1` must hold, got {quantile}")
    strength = trust_strength(trust)
    if n == 0 or strength == 0.0 or quantile == 0.0:
        return keep
    observed = observed_labels(history)
    if observed.size < min_history:
        return keep
    threshold = float(np.quantile(observed, quantile * strength))
    score = predicted if std is None else predicted + np.asarray(std, dtype=np.float64).ravel()
    keep = ~(score < threshold)  # NaN predictions are kept
    n_keep = max(1, math.ceil(min_keep_fraction * n))
    if keep.sum() < n_keep:
        order = np.argsort(-np.nan_to_num(predicted, nan=np.inf), kind="stable")
        keep[order[:n_keep]] = True
    return keep


def pick(predicted: np.ndarray, keep: np.ndarray, k: int) -> list[int]:
    """The first ``k`` survivors in the strategies' order (the order of the pool); when fewer
    survive, the best-predicted of the discarded make up the number."""
    chosen = [int(i) for i in np.flatnonzero(keep)[:k]]
    if len(chosen) < k:
        rest = [int(i) for i in np.argsort(-np.asarray(predicted), kind="stable") if not keep[i]]
        chosen += rest[:k - len(chosen)]
    return chosen


def discarded(configs: Sequence[Mapping[str, Any]], predicted: np.ndarray,
              metrics: Sequence[Mapping[str, float]], keep: np.ndarray, chosen: Sequence[int],
              room: int) -> list[PrunedCandidate]:
    """Records of the candidates the pruner discarded (those not taken to make up the number),
    at most ``room`` of them: what the study keeps to learn from and to steer Parzen away."""
    out: list[PrunedCandidate] = []
    for i in np.flatnonzero(~np.asarray(keep)):
        if len(out) >= room:
            break
        if i not in chosen:
            out.append(PrunedCandidate(dict(configs[i]), float(predicted[i]), dict(metrics[i])))
    return out
