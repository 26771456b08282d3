"""A Parzen-estimator strategy (TPE-like): sample where good trials are dense and bad ones sparse.

Trials split into a small "good" group (the best few) and a "bad" group (the rest, plus infeasible
trials, pruned candidates and running trials as a constant liar, so concurrent asks spread out and
known-bad regions are avoided). Each group is a multivariate kernel mixture, one component per
observation plus a uniform prior: joint kernels keep interactions between params that independent
per-param TPE loses. Discrete params (categoricals, int and stepped grids up to ``MAX_GRID``
values) use a kernel matrix over their values: ordinal grids (numbers, numeric choices) a
discretised Gaussian over their positions, nominal choices an "own value or anything" kernel. An
inactive conditional param is its own symbol. Candidates drawn from the good mixture are ranked by
log l(x) - log g(x), the density ratio that is monotone in expected improvement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.engine.encoding import from_units, ordinal_positions, to_unit, to_units
from service.engine.history import History
from service.engine.space import CategoricalParam, IntParam, Param, SearchSpace, n_values
from service.engine.stats import erf
from service.engine.strategies.base import (
    Config,
    Context,
    Strategy,
    fill_random,
    take_unseen,
)

MAX_GRID = 64  # discrete params up to this many values get an exact kernel matrix over values
MAX_BAD = 400  # bad-group components kept: bounds the cost per ask at 10,000 trials
MAX_GOOD = 25  # as Optuna: beyond this the good group stops being "the best few"
PRUNED_WEIGHT = 0.5  # a pruned candidate is a prediction, not a measurement: half a bad trial
ACTIVITY_MISMATCH = math.log(0.1)  # active against inactive: a different symbol, rarely shared
BANDWIDTH = 0.2  # Optuna's multivariate sigma0 magnitude in unit space
JOINT_SHARE = 1.0
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)




class _Dim:
    """How one param is represented: an index into a value list, or a unit-scale real."""

    def __init__(self, param: Param) -> None:
        self.param = param
        self.values: list[Any] | None = None
        self.positions: np.ndarray | None = None  # None for nominal choices
        self.lookup: dict[tuple[bool, bool, Any], int] = {}
        if isinstance(param, CategoricalParam):
            self.values = list(param.choices)
            # (is bool, is str, value): the distinctions _same_choice makes, at dict speed.
            self.lookup = {(isinstance(c, bool), isinstance(c, str), c): i
                           for i, c in enumerate(param.choices)}
            self.positions = ordinal_positions(param)
        elif n_values(param) <= MAX_GRID:
            count = int(n_values(param))
            step = param.step if param.step is not None else 1
            self.values = [param.clip(param.low + k * step) for k in range(count)]
            self.positions = np.array([to_unit(param, v) for v in self.values])  # type: ignore[arg-type]

    @property
    def indexed(self) -> bool:
        return self.values is not None

    def column(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Index (-1 inactive) or unit value (NaN inactive) of each configuration."""
        name, param = self.param.name, self.param
        rows = [i for i, c in enumerate(configs) if name in c]
        if self.values is None:
            out = np.full(len(configs), np.nan)
            values = np.array([configs[i][name] for i in rows], dtype=np.float64)
            out[rows] = to_units(param, values)  # type: ignore[arg-type]
            return out
        out = np.full(len(configs), -1, dtype=np.int64)
        if isinstance(param, CategoricalParam):
            out[rows] = [self._index(configs[i][name]) for i in rows]
            return out
        step = param.step if param.step is not None else 1
        values = np.array([configs[i][name] for i in rows], dtype=np.float64)
        out[rows] = np.clip(np.round((values - param.low) / step), 0, len(self.values) - 1)
        return out

    def _index(self, value: Any) -> int:
        """A categorical value's position among the choices (numbers are indexed in ``column``)."""
        param = self.param
        assert isinstance(param, CategoricalParam)
        index = self.lookup.get((isinstance(value, bool), isinstance(value, str), value))
        return param.index(value) if index is None else index

    def log_matrix(self, n_obs: int, sigma: float) -> np.ndarray:
        """log P(value i | component at value j), shape (K, K), with the prior's share mixed in."""
        assert self.values is not None
        k = len(self.values)
        if self.positions is None:
            kernel = np.eye(k)
        else:
            spacing = 1.0 / max(k - 1, 1)
            s = max(sigma, 0.5 * spacing)
            diff = self.positions[:, None] - self.positions[None, :]
            kernel = np.exp(-0.5 * (diff / s) ** 2)
            kernel /= kernel.sum(axis=1, keepdims=True)
        # As Optuna's categorical kernel: each component lends 1/(n+1) of a count to every value.
        eps = 1.0 / (n_obs + 1)
        matrix = (kernel + eps) / (1.0 + k * eps)
        return np.log(matrix)


class _Mixture:
    """A weighted kernel mixture over observations plus a uniform prior component."""

    def __init__(self, dims: list[_Dim], columns: list[np.ndarray], weights: np.ndarray,
                 prior_weight: float = 1.0) -> None:
        self.dims = dims
        self.columns = columns
        n = len(weights)
        total = float(weights.sum()) + prior_weight
        self.log_weights = np.log(np.maximum(weights, 1e-300) / total)
        self.log_prior_weight = math.log(prior_weight / total)
        self.sampling_p = np.append(weights, prior_weight) / total
        self.sigma = BANDWIDTH * max(n, 1) ** (-1.0 / (len(dims) + 4))
        self.matrices = [d.log_matrix(n, self.sigma) if d.indexed else None for d in dims]
        self.real_sigma = max(self.sigma, 0.01)

    def log_pdf(self, cand: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Joint log density of each candidate, and the sum of its per-param marginal log
        densities (the independent-TPE view, which learns additive structure from few trials)."""
        k = len(cand[0]) if cand else 0
        m = len(self.log_weights)
        total = np.zeros((m, k))
        prior = np.zeros(k)
        marginal = np.zeros(k)
        for comp, y, matrix in zip(self.columns, cand, self.matrices, strict=True):
            if matrix is not None:
                ca, ya = comp >= 0, y >= 0
                term = matrix[np.maximum(comp, 0)[:, None], np.maximum(y, 0)[None, :]]
                prior_term = np.where(ya, -math.log(len(matrix)), 0.0)
            else:
                ca, ya = ~np.isnan(comp), ~np.isnan(y)
                s = self.real_sigma
                c = np.nan_to_num(comp, nan=0.5)[:, None]
                z = (np.nan_to_num(y, nan=0.5)[None, :] - c) / s
                mass = 0.5 * (erf((1.0 - c) / (s * math.sqrt(2))) - erf(-c / (s * math.sqrt(2))))
                term = -0.5 * z * z - math.log(s) - _LOG_SQRT_2PI - np.log(np.maximum(mass, 1e-12))
                prior_term = np.zeros(k)
            both = ca[:, None] & ya[None, :]
            same = ca[:, None] == ya[None, :]
            term = np.where(both, term, np.where(same, 0.0, ACTIVITY_MISMATCH))
            total += term
            prior += prior_term
            marginal += self._mix(term, prior_term)
        return self._mix(total, prior), marginal

    def _mix(self, per_component: np.ndarray, prior: np.ndarray) -> np.ndarray:
        parts = np.vstack([per_component + self.log_weights[:, None],
                           (prior + self.log_prior_weight)[None, :]])
        top = parts.max(axis=0)
        return top + np.log(np.exp(parts - top).sum(axis=0))

    def sample(self, space: SearchSpace, k: int, rng: np.random.Generator) -> list[Config]:
        """``k`` draws from the mixture, one numpy pass per param over all of them (params in
        space order, so a child's activity follows its parent's drawn value)."""
        m = len(self.log_weights)
        components = rng.choice(m + 1, size=k, p=self.sampling_p)
        uniforms = rng.random((k, len(self.dims)))
        normals = rng.standard_normal((k, len(self.dims)))
        from_mixture = components < m
        at = np.minimum(components, max(m - 1, 0))  # a valid row for every draw; masked below
        out: list[Config] = [{} for _ in range(k)]
        active: dict[str, np.ndarray] = {}
        for j, dim in enumerate(self.dims):
            param = dim.param
            condition = param.condition
            if condition is None:
                here = np.ones(k, dtype=bool)
            else:
                parent = active.get(condition.parent, np.zeros(k, dtype=bool))
                here = parent & np.fromiter(
                    (bool(p) and condition.holds(c[condition.parent])
                     for p, c in zip(parent.tolist(), out, strict=True)), dtype=bool, count=k)
            active[param.name] = here
            if not here.any():
                continue
            column = self.columns[j]
            if m:
                picked = column[at]
                valid = from_mixture & (picked >= 0 if dim.indexed else ~np.isnan(picked))
            else:
                picked, valid = np.zeros(k), np.zeros(k, dtype=bool)
            drawn = here & valid
            rows = np.flatnonzero(drawn)
            if rows.size and dim.indexed:
                assert dim.values is not None
                cumulative = np.cumsum(np.exp(self.matrices[j]), axis=1)[  # type: ignore[arg-type]
                    picked[rows].astype(np.intp)]
                limit = uniforms[rows, j] * cumulative[:, -1]
                index = np.minimum((cumulative <= limit[:, None]).sum(axis=1),
                                   len(dim.values) - 1)
                for i, v in zip(rows.tolist(), index.tolist(), strict=True):
                    out[i][param.name] = dim.values[v]
            elif rows.size:
                unit = picked[rows] + self.real_sigma * normals[rows, j]
                unit = np.where(unit < 0, np.abs(unit), np.where(unit > 1, 2.0 - unit, unit))
                values = from_units(param, unit)  # type: ignore[arg-type]
                cast = int if isinstance(param, IntParam) else float
                for i, v in zip(rows.tolist(), values.tolist(), strict=True):
                    out[i][param.name] = cast(v)
            for i in np.flatnonzero(here & ~valid).tolist():  # the prior's share: uniform
                out[i][param.name] = param.sample(rng)
        return out  # each draw's params were set in space order


def good_fraction(exploration: float) -> float:
    """Share of trials in the good group: smaller is greedier (fewer, better centres)."""
    return 0.08 + 0.12 * exploration


class DensityRatio:
    """l(x) / g(x) for one history; the surrogate strategy also ranks its pool with it."""

    def __init__(self, space: SearchSpace, history: History, exploration: float) -> None:
        self.space = space
        self.dims = [_Dim(p) for p in space.params]
        ranked = history.ranked
        n_good = min(MAX_GOOD, math.ceil(good_fraction(exploration) * len(ranked)))
        if ranked:
            n_good = max(1, min(n_good, len(ranked) - 1 if len(ranked) > 1 else 1))
        good = [t.params for t in ranked[:n_good]]
        bad: list[Mapping[str, Any]] = [t.params for t in _thin(ranked[n_good:], MAX_BAD // 2)]
        bad_weights = [1.0] * len(bad)
        others = [t.params for t in history.infeasible] + [t.params for t in history.running]
        others = _thin(others, MAX_BAD // 4)
        pruned = _thin([c.params for c in history.pruned[-max(len(ranked), 1) * 2:]],
                       MAX_BAD // 4)
        bad += others + pruned
        bad_weights += [1.0] * len(others) + [PRUNED_WEIGHT] * len(pruned)
        self.good = self._mixture(good, np.ones(len(good)))
        self.bad = self._mixture(bad, np.array(bad_weights, dtype=float))

    def _mixture(self, configs: Sequence[Mapping[str, Any]], weights: np.ndarray) -> _Mixture:
        return _Mixture(self.dims, [d.column(configs) for d in self.dims], weights)

    def columns(self, configs: Sequence[Mapping[str, Any]]) -> list[np.ndarray]:
        return [d.column(configs) for d in self.dims]

    def score(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """log l(x) - log g(x) per configuration: higher is more promising.

        A blend of the joint ratio (interactions) and the sum of per-param ratios (additive
        effects, learnt from far fewer trials); JOINT_SHARE sets the mix.
        """
        if not configs:
            return np.zeros(0)
        cols = self.columns(configs)
        good_joint, good_marginal = self.good.log_pdf(cols)
        bad_joint, bad_marginal = self.bad.log_pdf(cols)
        return (JOINT_SHARE * (good_joint - bad_joint)
                + (1.0 - JOINT_SHARE) * (good_marginal - bad_marginal))

    def sample(self, k: int, rng: np.random.Generator) -> list[Config]:
        return self.good.sample(self.space, k, rng)


def _thin(items: list[Any], limit: int) -> list[Any]:
    """At most ``limit`` items, evenly spaced and always including the newest (deterministic)."""
    if len(items) <= limit:
        return items
    picks = np.unique(np.linspace(len(items) - 1, 0, limit).round().astype(int))
    return [items[i] for i in picks]


class ParzenStrategy(Strategy):
    """TPE: draw ``context.pool_size`` candidates from l(x), return the best by l(x) / g(x)."""

    name = "parzen"
    # Its global density is the explorer's main tool; it keeps a share when exploiting too.
    exploit_weight = 0.25
    explore_weight = 0.45

    def propose(self, space: SearchSpace, history: History, n: int, rng: np.random.Generator,
                context: Context) -> list[Config]:
        ratio = DensityRatio(space, history, context.exploration)
        pool = ratio.sample(max(context.pool_size, 2 * n), rng)
        fresh = take_unseen(pool, context.seen, len(pool))
        if fresh:
            scores = ratio.score(fresh)
            order = np.argsort(-scores, kind="stable")
            fresh = [fresh[i] for i in order[:n]]
        return fill_random(space, fresh, n, rng, context.seen)
