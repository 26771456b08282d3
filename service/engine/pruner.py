"""The pruner's numpy side: features, the exported model, inference and training labels.

A small ensemble of MLPs predicts a configuration's *goodness* (its rank among the study's results,
in [0, 1], 1 = best) from the encoded configuration plus the study's static metrics (numbers known
before training: parameter count, FLOPs, latency, zero-cost proxies). Training is torch and lives in
``service.training`` (DESIGN rules 1 and 8); this module only reads the exported weights, so asks
stay cheap and the engine imports numpy alone. Whether the model gets a say, and what it may
discard, is the pruning policy's business (``trust``, ``pruning``), not the model's.

>>> from service.engine.space import SearchSpace
>>> from service.engine.encoding import Encoder
>>> space = SearchSpace.from_dict({"params": [{"name": "x", "type": "float", "low": 0, "high": 1}]})
>>> X = featurize(Encoder(space), [{"x": 0.25}, {"x": 1.0}], [{"params": 1e6}, {}], ("params",))
>>> X.round(3).tolist()  # encoded x, signed log1p(params) (nan = missing), missing bit
[[0.25, 13.816, 0.0], [1.0, nan, 1.0]]
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.engine.encoding import Encoder
from service.engine.history import History, Observation, TrialState
from service.engine.partial_results import with_partial_results
from service.engine.stats import rank_goodness, sorted_rank_goodness
from service.engine.transfer import Prior, pruner_rows

FEATURE_VERSION = 1
MODEL_FORMAT = 1
# Standardised features are clipped here: a static metric far outside what the model was trained
# on (a sentinel like -1e8, an infinite proxy) saturates instead of producing a wild prediction.
FEATURE_CLIP = 5.0


# --- features --------------------------------------------------------------------------------

def feature_fingerprint(encoder: Encoder, metric_names: Sequence[str]) -> str:
    """Hash of the feature layout: the encoder's layout (its cells' structure features included)
    plus the static metrics, in order."""
    layout = json.dumps([FEATURE_VERSION, encoder.fingerprint, list(metric_names)])
    return hashlib.sha256(layout.encode()).hexdigest()[:16]


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): monotone, so ranks survive, and heavy tails (parameter counts,
    FLOPs, proxies spanning decades) come within a few units. Infinities stay infinite."""
    with np.errstate(invalid="ignore"):
        return np.sign(x) * np.log1p(np.abs(x))


def featurize(encoder: Encoder, configs: Sequence[Mapping[str, Any]],
              metrics: Sequence[Mapping[str, float]] | None,
              metric_names: Sequence[str], encoded: np.ndarray | None = None) -> np.ndarray:
    """Feature rows: ``encoder.encode(config)`` ++ the cells' structure features
    (``encoder.structure``, none without cells; in [0, 1] like the encoding) ++ one transformed
    value per static metric ++ one missing bit per static metric.

    Values go through ``signed_log1p``; a missing or NaN metric is written as NaN with its missing
    bit set, and the model replaces NaN by its column's centre (``standardize``), so a candidate
    without metrics is predicted from its configuration alone. ``metrics`` None means none known.
    ``encoded``: ``encoder.encode_many(configs)``, when the caller has it already.
    """
    configs = list(configs)
    encoded = encoder.encode_many(configs) if encoded is None else encoded
    if encoder.cells:
        encoded = np.concatenate([encoded, encoder.structure(configs)], axis=1)
    k = len(metric_names)
    if metrics is not None and len(metrics) != len(configs):
        raise ValueError(f"`len(metrics) == len(configs)` must hold, got {len(metrics)} metrics "
                         f"for {len(configs)} configs")
    values = np.full((len(configs), k), np.nan)
    if metrics is not None and k:
        for i, row in enumerate(metrics):
            if not row:
                continue
            for j, name in enumerate(metric_names):
                value = row.get(name)
                if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                    values[i, j] = float(value)
    missing = np.isnan(values)
    return np.concatenate([encoded, signed_log1p(values), missing.astype(np.float64)], axis=1)


def fit_scaling(X: np.ndarray, n_metrics: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale per feature column, for ``standardize``.

    Encoded columns (structure features too) and missing bits live in [0, 1]: centre 0.5, scale
    0.5. Static-metric columns get a robust centre (median) and scale (1.4826 x MAD, else IQR,
    else std, else 1), because proxies carry sentinels (-1e8, -inf) that would swamp a mean and
    standard deviation.
    """
    X = np.asarray(X, dtype=np.float64)
    d = X.shape[1]
    dim = d - 2 * n_metrics
    if dim < 0:
        raise ValueError(f"`n_features >= 2 * n_metrics` must hold, got {d} and {n_metrics}")
    center = np.full(d, 0.5)
    scale = np.full(d, 0.5)
    for j in range(dim, dim + n_metrics):
        column = X[:, j]
        column = column[np.isfinite(column)]
        if column.size == 0:
            center[j], scale[j] = 0.0, 1.0
            continue
        med = float(np.median(column))
        spread = 1.4826 * float(np.median(np.abs(column - med)))
        if spread <= 1e-12:
            q75, q25 = np.percentile(column, [75, 25])
            spread = float(q75 - q25) / 1.349
        if spread <= 1e-12:
            spread = float(np.std(column))
        center[j], scale[j] = med, spread if spread > 1e-12 else 1.0
    return center, scale


def standardize(X: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(X - centre) / scale, missing (NaN) -> 0 (the column's centre), clipped to +-FEATURE_CLIP."""
    Z = (np.asarray(X, dtype=np.float64) - center) / scale
    Z = np.where(np.isnan(Z), 0.0, Z)
    return np.clip(Z, -FEATURE_CLIP, FEATURE_CLIP)


# --- the exported model ----------------------------------------------------------------------

Layer = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class TrainingSet:
    """What training sees: feature rows and their goodness in [0, 1] (1 = best, rank-based)."""

    X: np.ndarray
    y: np.ndarray
    fingerprint: str
    metric_names: tuple[str, ...]
    n_trials: int
    n_prior: int = 0  # of which rows borrowed from prior studies (``transfer.pruner_rows``)


@dataclass(frozen=True, eq=False)
class PrunerModel:
    """An ensemble of MLPs exported from training, run with numpy.

    Each member is a tuple of layers ``(W, b)`` with ``h = relu(h @ W + b)`` between layers and a
    sigmoid on the last one's single output, applied to ``standardize(X, x_mean, x_std)``.
    ``x_mean``/``x_std`` are the centre and scale of ``fit_scaling`` (robust for static metrics).
    """

    members: tuple[tuple[Layer, ...], ...]
    x_mean: np.ndarray
    x_std: np.ndarray
    fingerprint: str
    metric_names: tuple[str, ...]
    n_train: int
    n_prior: int = 0  # training rows that came from prior studies: the model learnt their ranks

    @property
    def n_features(self) -> int:
        return int(self.x_mean.shape[0])

    @property
    def hidden(self) -> tuple[int, ...]:
        return tuple(int(W.shape[1]) for W, _ in self.members[0][:-1])

    def applies_to(self, encoder: Encoder, metric_names: Sequence[str]) -> bool:
        """Whether this model was trained for this encoder layout and these static metrics."""
        return self.fingerprint == feature_fingerprint(encoder, metric_names)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread (std over the ensemble) of the predicted goodness of each row."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n, {self.n_features}), got {X.shape}")
        Z = standardize(X, self.x_mean, self.x_std)
        outputs = np.stack([_forward(member, Z) for member in self.members])
        return outputs.mean(axis=0), outputs.std(axis=0)

    def to_bytes(self) -> bytes:
        """An ``.npz`` archive (no pickle), for the database."""
        meta = {"format": MODEL_FORMAT, "fingerprint": self.fingerprint,
                "metric_names": list(self.metric_names), "n_train": self.n_train,
                "n_prior": self.n_prior,
                "n_members": len(self.members), "n_layers": len(self.members[0])}
        arrays: dict[str, np.ndarray] = {
            "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            "x_mean": self.x_mean, "x_std": self.x_std,
        }
        for m, member in enumerate(self.members):
            for i, (W, b) in enumerate(member):
                arrays[f"m{m}_l{i}_W"] = W
                arrays[f"m{m}_l{i}_b"] = b
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> PrunerModel:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes().decode())
            if meta.get("format") != MODEL_FORMAT:
                raise ValueError(f"pruner model format must be {MODEL_FORMAT}, "
                                 f"got {meta.get('format')!r}")
            members = tuple(
                tuple((archive[f"m{m}_l{i}_W"], archive[f"m{m}_l{i}_b"])
                      for i in range(meta["n_layers"]))
                for m in range(meta["n_members"]))
            return cls(members, archive["x_mean"], archive["x_std"], meta["fingerprint"],
                       tuple(meta["metric_names"]), int(meta["n_train"]),
                   int(meta.get("n_prior", 0)))


def _forward(member: tuple[Layer, ...], Z: np.ndarray) -> np.ndarray:
    h = Z
    for W, b in member[:-1]:
        h = np.maximum(h @ W + b, 0.0)
    W, b = member[-1]
    logits = (h @ W + b)[:, 0]
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))


# --- labels ----------------------------------------------------------------------------------

def observed_goodness(history: History) -> tuple[list[Observation], np.ndarray]:
    """Finished trials that carry a label, with their goodness: complete ones by rank of their
    loss (direction-aware through ``history.loss``); infeasible ones 0, below every complete one.
    Failed trials (infrastructure) say nothing about the configuration and are left out."""
    complete = history.complete
    goodness = rank_goodness(np.array([history.loss(t) for t in complete]))
    by_number = {t.number: g for t, g in zip(complete, goodness, strict=True)}
    observations, labels = [], []
    for t in history.trials:
        if t.number in by_number:
            observations.append(t)
            labels.append(by_number[t.number])
        elif t.state is TrialState.INFEASIBLE:
            observations.append(t)
            labels.append(0.0)
    return observations, np.array(labels, dtype=np.float64)


def observed_labels(history: History) -> np.ndarray:
    """The labels of ``observed_goodness`` without their trials, ascending: what a quantile of
    them needs (``pruning.prune_mask``), from the history's ranking, without a pass over every
    trial in Python or a sort on each ask."""
    goodness = sorted_rank_goodness(history.complete_losses[history.rank_order])
    return np.concatenate([np.zeros(len(history.infeasible)), goodness])


def make_training_set(encoder: Encoder, history: History, metric_names: Sequence[str],
                      prior: Prior | None = None) -> TrainingSet:
    """Complete and infeasible trials as feature rows and goodness labels, plus, for a study that
    learns from prior studies, their rows ranked within each study (``transfer.pruner_rows``:
    many before the study has results, none once it has enough of its own).

    Pruned candidates are not labels: nobody trained them, their "value" is only our own guess.
    Stopped trials are, at the final value their curve maps to (``partial_results``): someone
    trained them, and what they showed is evidence the proposals use too.
    """
    metric_names = tuple(metric_names)
    observations, y = observed_goodness(with_partial_results(history))
    configs = [t.params for t in observations]
    metrics = [t.metrics for t in observations]
    borrowed = pruner_rows(prior, len(observations))
    if borrowed:
        configs += [c for c, _, _ in borrowed]
        metrics += [m for _, m, _ in borrowed]
        y = np.concatenate([y, [g for _, _, g in borrowed]])
    X = featurize(encoder, configs, metrics, metric_names)
    return TrainingSet(X, y, feature_fingerprint(encoder, metric_names), metric_names,
                       len(observations) + len(borrowed), len(borrowed))
