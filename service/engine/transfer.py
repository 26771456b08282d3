"""Transfer from prior studies: what finished studies on related tasks say about a new one.

A user's past studies (other datasets, same kind of model) are the cheapest knowledge there is. Each
prior study is mapped into the new space and its results turned into ranks *within that study*, so
studies with different scales (accuracy on one dataset, loss on another) combine. A GP per prior
study learns its normal-scored ranks; their mean prediction is the prior's opinion of a
configuration. The engine then

- starts with the prior's consensus incumbents instead of quasi-random points,
- keeps ranking candidates with the prior mixed into its own model while the prior predicts the new
  study's results well, and
- drops the prior completely (cold-start behaviour) once it measurably does not.

Trust is measured, never assumed, and weighted toward the top (``top_weighted_trust``): the Spearman
correlation between the prior's prediction and the result of every finished trial of the new
study, capped by the same correlation over the study's better half of results once that half has
``MIN_RESULTS_FOR_TRUST`` of them. A prior that only tells bad regions from good ones scores well
overall (most pairs it orders are a bad and a good trial) yet knows nothing about where the
optimum is; trust is what licenses exploiting it (its incumbents, its say in the surrogate), so it
must hold where the study's best results are. The better half leaves out the prior's own
incumbents: they were tried *because* the prior rates them highest, so among the study's best they
carry its top scores whatever their rank there, and a useful prior whose incumbents were good but
not the best would read as inverted. The prior does not learn from the new study, so its
predictions for those trials are honest out-of-sample forecasts.

Compatibility (``mapping_problems``): the spaces must share at least one parameter name with the
same type. How the rest is handled, explicitly:

- a parameter only the prior has is dropped from its configurations (its effect is averaged into
  the ranks);
- a parameter only the new space has is unknown in prior configurations: the models encode it as
  absent (like an inactive conditional), and a transferred incumbent gets it sampled;
- a number outside the new range is clipped into it; a categorical value the new space lacks
  makes that parameter unknown for that configuration.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.engine import gp
from service.engine.encoding import Encoder, encoder_for
from service.engine.history import INITIAL, TRANSFER, History
from service.engine.identity_memo import IdentityMemo
from service.engine.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    SearchSpace,
    _same_choice,
    config_key,
)
from service.engine.stats import normal_scores, rank_goodness, spearman

MIN_RESULTS_FOR_TRUST = 4  # Spearman on fewer points is noise; also the better half's minimum
TOP_SHARE = 0.5  # trust also asks how the prior orders this share of the study's best results
TRUST_MIN = 0.1  # below this measured trust the prior is ignored: cold-start behaviour
PRIOR_POINTS = 150  # each prior study's GP conditions on at most this many of its trials
INCUMBENTS = 2  # prior incumbents tried before the (unchanged) initial design: few, so a
# misleading prior costs little; the design after them gives its trust measurement contrast
INCUMBENT_SHARE = 0.5  # later, at full weight, up to this share of proposals are incumbents
RECENT = 10  # the window that share is counted over
# The proposals a prior-pretrained pruner forecast before the prior's trust was measured.
PRETRAINED_FORECASTS = frozenset({TRANSFER, INITIAL})
WEIGHT_HALVING = 5  # results after which the prior's weight has halved: it shapes the first trials;
# after that the study's own evidence decides (on tasks whose optimum moved, a longer-lived prior
# kept pulling towards the siblings' optimum: 20 was 1.17x slower than 5, geometric mean of 5
# HPOBench/HPOLib tasks on 6 fresh seeds 10-15, never the reported seeds)
POOL_TOP = 24  # the prior's best configurations offered to the surrogate's candidate pool
TRIAL_SCORES_LIMIT = 200_000  # trials' scores a prior model keeps (one study's, in practice)


@dataclass(frozen=True)
class PriorStudy:
    """One finished study in the new space's terms: its configurations and their goodness."""

    name: str
    configs: tuple[dict[str, Any], ...]
    scores: np.ndarray  # normal scores of the study's own ranks; lower is better (gp convention)
    goodness: np.ndarray  # the same ranks as the pruner's labels: in [0, 1], 1 = best
    metrics: tuple[dict[str, float], ...] = ()  # static metrics per configuration, when known


@dataclass(frozen=True, eq=False)
class Prior:
    """The prior studies a study learns from (compared by identity: models are cached on it)."""

    studies: tuple[PriorStudy, ...]
    _models: dict[int, Any] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return sum(len(s.configs) for s in self.studies)


def mapping_problems(target: SearchSpace, source: SearchSpace) -> list[str]:
    """Why ``source`` cannot transfer to ``target`` (empty: it can)."""
    problems = []
    shared = [p for p in target.params if p.name in source]
    for param in shared:
        other = source[param.name]
        if type(other) is not type(param):
            problems.append(f"{param.name}: {_kind(other)} in the prior study, {_kind(param)} here")
    if not shared:
        problems.append("no parameter name in common")
    return problems


def _kind(param: Any) -> str:
    return {FloatParam: "float", IntParam: "int", CategoricalParam: "categorical"}[type(param)]


def map_config(target: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """A prior configuration in the target's terms (see the module docstring); only parameters
    that are active in the target given the mapped values are kept."""
    mapped: dict[str, Any] = {}
    for param in target.params:
        if param.name not in params or not target.is_active(param, mapped):
            continue
        value = params[param.name]
        if isinstance(param, CategoricalParam):
            for choice in param.choices:
                if _same_choice(choice, value):
                    mapped[param.name] = choice
                    break
        elif isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(float(value)):
            mapped[param.name] = param.clip(float(value))
    return mapped


def build_prior(target: SearchSpace, studies: Sequence[Sequence[Any]]) -> Prior | None:
    """``studies``: (name, direction, configurations, values[, static metrics]) of each prior
    study's complete trials. Values become ranks within their own study. None if none usable."""
    out = []
    for name, direction, configs, values, *rest in studies:
        metrics = rest[0] if rest else [{}] * len(configs)
        rows = [(map_config(target, c), float(v), dict(m or {}))
                for c, v, m in zip(configs, values, metrics, strict=True)
                if v is not None and math.isfinite(float(v))]
        rows = [row for row in rows if row[0]]
        if len(rows) < 2:
            continue
        losses = np.array([v if direction == "minimize" else -v for _, v, _ in rows])
        out.append(PriorStudy(name, tuple(c for c, _, _ in rows), normal_scores(losses),
                              rank_goodness(losses), tuple(m for _, _, m in rows)))
    return Prior(tuple(out)) if out else None


PRETRAIN_ROWS = 200  # prior rows in the pruner's training set before the study has results


def pruner_rows(prior: Prior | None, n_own: int) -> list[tuple[dict[str, Any], dict[str, float],
                                                               float]]:
    """(config, static metrics, goodness) rows of the prior for the pruner's training set: up to
    ``PRETRAIN_ROWS`` while the study has no results, fewer as its own results arrive (two own
    results displace one prior row), none from 100 on. Each study's best rows first."""
    limit = max(0, PRETRAIN_ROWS - 2 * n_own)
    if prior is None or limit == 0:
        return []
    per = max(1, limit // len(prior.studies))
    rows = []
    for study in prior.studies:
        keep = gp.subset(-study.goodness, per)  # the best half plus a spread of the rest
        metrics = study.metrics or ({},) * len(study.configs)
        rows += [(study.configs[i], metrics[i], float(study.goodness[i])) for i in keep]
    return rows


class PriorModel:
    """The prior's opinion of configurations: the mean of its studies' GP predictions."""

    def __init__(self, prior: Prior, encoder: Encoder) -> None:
        self.features = gp.Features(encoder)
        self.models = []
        for study in prior.studies:
            rows = gp.subset(study.scores, PRIOR_POINTS)
            X = self.features([study.configs[i] for i in rows])
            self.models.append(gp.fit(X, study.scores[rows], self.features.groups))
        # Scores of a study's own trials by identity (the service re-sends the same Observation
        # objects every ask): trust is measured on every result, and scoring 10,000 of them
        # anew on each ask was a quarter of a second. Bounded like the GP's feature rows.
        self._trial_scores: IdentityMemo[Any, float] = IdentityMemo(TRIAL_SCORES_LIMIT)

    def score(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted goodness (higher is better) on a common scale across studies: each study's
        prediction weighted by its confidence (1 / variance), so a study that never saw that
        region does not drown one that did."""
        if not configs:
            return np.zeros(0)
        X = self.features(list(configs))
        means, precisions = [], []
        for model in self.models:
            mean, std = model.predict(X)
            means.append(mean)
            precisions.append(1.0 / np.maximum(std, 1e-6) ** 2)
        weights = np.array(precisions)
        return -(weights * np.array(means)).sum(0) / weights.sum(0)

    def score_trials(self, trials: Sequence[Any]) -> np.ndarray:
        """``score`` of each trial's params, scoring only trials not scored before (a GP's
        prediction for a row does not depend on the other rows scored with it)."""
        scores = self._trial_scores.values(
            trials, lambda missing: self.score([t.params for t in missing]).tolist())
        return np.array(scores, dtype=float)


def prior_model(prior: Prior, encoder: Encoder) -> PriorModel:
    """One model per prior and space, built on first use (a few GP fits) and kept on the prior."""
    model = prior._models.get(id(encoder))
    if model is None:
        model = prior._models[id(encoder)] = PriorModel(prior, encoder)
    return model


@dataclass(frozen=True)
class TransferView:
    """What an ask needs of the prior: its model, the measured trust, and whether it is used."""

    prior: Prior
    model: PriorModel
    trust: float | None  # None until MIN_RESULTS_FOR_TRUST results
    n_measured: int

    @property
    def active(self) -> bool:
        return self.trust is None or self.trust >= TRUST_MIN

    @property
    def weight(self) -> float:
        """How much the prior counts against the study's own model: full while unmeasured or
        trusted, less as the study's own evidence grows."""
        if not self.active:
            return 0.0
        trust = 1.0 if self.trust is None else self.trust
        return trust * WEIGHT_HALVING / (WEIGHT_HALVING + self.n_measured)


def view(prior: Prior | None, encoder: Encoder, history: History) -> TransferView | None:
    if prior is None or not prior.studies:
        return None
    model = prior_model(prior, encoder)
    done = history.complete
    trust = None
    if len(done) >= MIN_RESULTS_FOR_TRUST:
        prior_picks = np.array([t.proposal is not None and t.proposal.strategy == TRANSFER
                                for t in done], dtype=bool)
        trust = top_weighted_trust(_predicted(model, done), -np.asarray(history.complete_losses),
                                   prior_picks)
    return TransferView(prior, model, trust, len(done))


def top_weighted_trust(predicted: np.ndarray, goodness: np.ndarray,
                       prior_picks: np.ndarray | None = None) -> float:
    """How far the prior's predictions (higher = better) order the study's results (``goodness``,
    higher = better) right, where it matters: the Spearman correlation over all results, or the
    one over the study's better half (``TOP_SHARE``) when that is lower and the half holds at
    least ``MIN_RESULTS_FOR_TRUST`` results. ``prior_picks`` marks the trials the prior proposed
    itself (its incumbents): they count overall but not in the better half, where the prior's
    choosing them would bias the correlation down (see the module docstring). In [-1, 1]; two
    rank correlations on cached predictions, so cheap on every ask.

    >>> good = np.arange(10.0)  # the study's results, best last
    >>> round(top_weighted_trust(good, good), 2)  # ranks everything right
    1.0
    >>> knows_bad_half = np.concatenate([good[:5], good[5:][::-1]])  # the better half reversed
    >>> round(spearman(knows_bad_half, good), 2), round(top_weighted_trust(knows_bad_half, good), 2)
    (0.76, -1.0)
    """
    predicted = np.asarray(predicted, dtype=float)
    goodness = np.asarray(goodness, dtype=float)
    overall = spearman(predicted, goodness)
    if prior_picks is not None:
        others = ~np.asarray(prior_picks, dtype=bool)
        predicted, goodness = predicted[others], goodness[others]
    k = int(len(goodness) * TOP_SHARE)
    if k < MIN_RESULTS_FOR_TRUST:
        return overall
    best = np.argsort(-goodness, kind="stable")[:k]
    return min(overall, spearman(predicted[best], goodness[best]))


def teaching_prior(prior: Prior | None, space: SearchSpace, history: History) -> Prior | None:
    """The prior the pruner may learn from: none once the prior is measured to mislead, so a
    distrusted prior stops shaping the pruner as it stops shaping proposals."""
    trust = prior_trust(prior, space, history)
    return prior if trust is None or trust >= TRUST_MIN else None


def prior_trust(prior: Prior | None, space: SearchSpace, history: History) -> float | None:
    """How far the prior's predictions order the study's results right, weighted toward the top
    (``top_weighted_trust``: the Spearman correlation over all complete trials, capped by the one
    over the study's better half, the prior's own incumbents left out of that half); None without
    a prior or before MIN_RESULTS_FOR_TRUST results.
    Below ``TRUST_MIN`` the prior is ignored. The pruner's own trust is ``trust.measure_trust``."""
    transfer = view(prior, encoder_for(space), history)
    return None if transfer is None else transfer.trust


def _predicted(model: PriorModel, done: Sequence[Any]) -> np.ndarray:
    return model.score_trials(done)


@functools.lru_cache(maxsize=64)
def _ranked_incumbents(prior: Prior, encoder: Encoder) -> tuple[dict[str, Any], ...]:
    """Each prior study's own best configuration, then each one's second best, and so on; within
    a round, the one the prior as a whole rates highest first. A configuration one study found
    best is a real result, not a model's guess: it is tried before any extrapolation."""
    model = prior_model(prior, encoder)
    per_study = [[study.configs[i] for i in np.argsort(-study.goodness, kind="stable")]
                 for study in prior.studies]
    ordered: list[dict[str, Any]] = []
    taken: set[Any] = set()
    for rank in range(max(len(c) for c in per_study)):
        round_ = [configs[rank] for configs in per_study if rank < len(configs)]
        round_ = [c for c in round_ if config_key(c) not in taken]
        for i in np.argsort(-model.score(round_), kind="stable") if round_ else []:
            taken.add(config_key(round_[i]))
            ordered.append(round_[i])
    return tuple(ordered)


def incumbents(prior: Prior, encoder: Encoder, seen: Container[Any],
               n: int) -> list[dict[str, Any]]:
    """The ``n`` best prior configurations not tried yet, completed in the new space (parameters
    the prior lacks are sampled)."""
    space = encoder.space
    out: list[dict[str, Any]] = []
    taken: set[Any] = set()  # beside ``seen``, which holds every trial's key: never copied
    for config in _ranked_incumbents(prior, encoder):
        # Missing params are sampled from the configuration's own seed: the same incumbent is
        # the same configuration on every ask, so "already tried" recognises it.
        own = np.random.default_rng(zlib.crc32(repr(config_key(config)).encode()))
        full = space.complete(config, own)
        key = config_key(full)
        if key in seen or key in taken:
            continue
        taken.add(key)
        out.append(full)
        if len(out) >= n:
            break
    return out


def wants_incumbent(view: TransferView, history: History) -> bool:
    """After the initial design, whether the next slot goes to the prior's next incumbent: while
    the prior is trusted, up to ``INCUMBENT_SHARE x weight`` of the latest proposals do."""
    share = INCUMBENT_SHARE * view.weight
    latest = [t.proposal.strategy for t in history.trials[-RECENT:] if t.proposal is not None]
    return share > 0 and latest.count(TRANSFER) < share * RECENT
