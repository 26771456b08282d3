"""The dashboard's reads: bounded summaries of one study, checked against its owner.

The dashboard (``service.dashboard``) is a page shell; its data comes from these use cases
through ``/v1/studies/{id}/insights/*`` like any API client's, so there is one data path. Each
read costs one pass over the study's rows at most (streamed in batches, never held), and what it
returns is bounded by its request's limits: a study of 100,000 trials sends a few thousand points.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from service.db import report_queries, trial_queries
from service.db.models import Study
from service.engine.encoding import encoder_for
from service.engine.history import TrialState
from service.engine.space import CategoricalParam, SearchSpace
from service.errors import Invalid
from service.insights import importance, projection
from service.insights.series import HistoryDigest
from service.schemas import (
    BestRegion,
    CurveOut,
    CurvesInsight,
    HistoryInsight,
    MapCluster,
    MapInsight,
    MapPoints,
    MapPruned,
    ParamsInsight,
)
from service.usecases.context import UseCaseContext
from service.usecases.study_lifecycle import find_study

HISTORY_BINS = 60  # the engine view's time axis: strategy mix, credit, exploration per bin
BEST_IN_SAMPLE = 50  # the best trials always in a parameter sample (the region users look at)
CURVE_POINTS = 200  # points per curve shown; longer curves are thinned evenly
MAX_PRUNED_ON_MAP = 500
MAP_CLUSTERS = 6
SampleRow = tuple[int, int, dict[str, Any], float]  # a complete trial's id, number, params, value


def history(ctx: UseCaseContext, session: Session, owner_id: int, study_id: str,
            max_points: int) -> HistoryInsight:
    """Every finished trial read once in number order into a ``HistoryDigest``."""
    study = find_study(session, owner_id, study_id)
    total = trial_queries.count_finished(session, study_id)
    digest = HistoryDigest(total, study.direction == "minimize", max_points, HISTORY_BINS)
    for batch in trial_queries.finished_digest_batches(session, study_id, study.next_number):
        digest.add(*batch)
    s = digest.summary()
    note = (f"showing every {s['stride']}th of {s['total']:,} finished trials; the best-so-far "
            "line and the bins use all of them" if s["sampled"]
            else f"all {s['total']:,} finished trials")
    return HistoryInsight(direction=study.direction, revision=study.revision, note=note, **s)


def parameters(ctx: UseCaseContext, session: Session, owner_id: int, study_id: str,
               max_points: int) -> ParamsInsight:
    """Complete trials sampled evenly by number plus the best ones; importance on the sample."""
    study, space, total, rows, every = _complete_sample(ctx, session, owner_id, study_id,
                                                        max_points)
    names = [p.name for p in space.params]
    columns = {name: [r[2].get(name) for r in rows] for name in names}
    numeric = {p.name: not isinstance(p, CategoricalParam) for p in space.params}
    scores = importance.main_effects(columns, numeric, [r[3] for r in rows])
    sampled = len(rows) < total
    note = (f"showing {len(rows):,} of {total:,} complete trials (every {every}th trial number "
            f"plus the {BEST_IN_SAMPLE} best)" if sampled else f"all {total:,} complete trials")
    return ParamsInsight(
        direction=study.direction, revision=study.revision, total=total, shown=len(rows),
        sampled=sampled, note=note, params=list(study.space["params"]),
        trial_ids=[r[0] for r in rows], numbers=[r[1] for r in rows],
        values=[r[3] for r in rows], columns=columns, importance=scores,
        importance_method=importance.METHOD)


def curves(ctx: UseCaseContext, session: Session, owner_id: int, study_id: str,
           best: int, recent: int) -> CurvesInsight:
    """The curves of the best finished trials and of the newest trials that reported."""
    study = find_study(session, owner_id, study_id)
    out = []
    for trial in trial_queries.reported(session, study_id, study.direction, best, recent):
        points, count = report_queries.page(session, trial.id, 0, 1000)
        thinned = len(points) > CURVE_POINTS or count > len(points)
        if len(points) > CURVE_POINTS:
            keep = np.unique(np.linspace(0, len(points) - 1, CURVE_POINTS).round().astype(int))
            points = [points[k] for k in keep]
        out.append(CurveOut(trial_id=trial.id, number=trial.number, state=trial.state,
                            value=trial.value, points=points, thinned=thinned))
    note = (f"the {best} best trials that reported and the {recent} newest; at most "
            f"{CURVE_POINTS} points per curve")
    return CurvesInsight(revision=study.revision, note=note, curves=out)


def architecture_map(ctx: UseCaseContext, session: Session, owner_id: int, study_id: str,
                     max_points: int) -> MapInsight:
    """Sampled complete trials and the newest pruned candidates in one 2-D layout."""
    study, space, total, rows, every = _complete_sample(ctx, session, owner_id, study_id,
                                                        max_points)
    encoder = encoder_for(space)
    layout = projection.classical_mds(encoder.encode_many([r[2] for r in rows])
                                      if rows else np.zeros((0, encoder.dim)))
    pruned = trial_queries.pruned_sample(session, study_id, MAX_PRUNED_ON_MAP)
    pruned_xy = layout.place(encoder.encode_many([p for p, _ in pruned]) if pruned
                             else np.zeros((0, encoder.dim)))
    values = np.array([r[3] for r in rows])
    labels, centres = (projection.kmeans(layout.xy, MAP_CLUSTERS, seed=0) if len(rows)
                       else (np.zeros(0, dtype=int), np.zeros((0, 2))))
    clusters = [MapCluster(x=float(c[0]), y=float(c[1]), size=int(np.sum(labels == j)),
                           median_value=float(np.median(values[labels == j])))
                for j, c in enumerate(centres) if np.any(labels == j)]
    shown = len(rows)
    note = (f"{shown:,} of {total:,} complete trials (every {every}th trial number plus the "
            f"{BEST_IN_SAMPLE} best) and the newest {len(pruned)} pruned candidates"
            if shown < total else
            f"all {total:,} complete trials and the newest {len(pruned)} pruned candidates")
    return MapInsight(
        revision=study.revision, explained=layout.explained, total=total, shown=shown,
        method="classical MDS of the engine's encoding (its two principal axes); clusters by "
               "k-means on the layout; the best tenth of the shown trials ringed in red, the "
               "circle around their centre holds the nearer half of them",
        note=note,
        points=MapPoints(x=layout.xy[:, 0].tolist(), y=layout.xy[:, 1].tolist(),
                         value=values.tolist(), number=[r[1] for r in rows],
                         trial_id=[r[0] for r in rows], cluster=labels.tolist(),
                         label=[_label(r[2]) for r in rows]),
        pruned=MapPruned(x=pruned_xy[:, 0].tolist(), y=pruned_xy[:, 1].tolist(),
                         predicted=[p for _, p in pruned], label=[_label(p) for p, _ in pruned]),
        clusters=clusters, best_region=_best_region(layout.xy, values, [r[0] for r in rows],
                                                    study.direction))


def table_filters(space: SearchSpace, ranges: list[str], choices: list[str]
                  ) -> tuple[list[tuple[str, float, float]], list[tuple[str, Any]]]:
    """``name:low:high`` and ``name:choice`` filters, checked against the space (422 naming the
    filter and the reason otherwise)."""
    params = {p.name: p for p in space.params}
    out_ranges = []
    for text in ranges:
        name, _, rest = text.partition(":")
        low, _, high = rest.partition(":")
        param = params.get(name)
        if param is None or isinstance(param, CategoricalParam):
            raise Invalid(f"range filter {text!r}: {name!r} is not a numeric parameter "
                               "of the space", "range")
        try:
            bounds = float(low), float(high)
        except ValueError:
            raise Invalid(f"range filter {text!r}: expected name:low:high with numbers",
                               "range") from None
        if not all(math.isfinite(b) for b in bounds) or bounds[0] > bounds[1]:
            raise Invalid(f"range filter {text!r}: low and high must be finite, low <= "
                               "high", "range")
        out_ranges.append((name, *bounds))
    out_choices = []
    for text in choices:
        name, _, wanted = text.partition(":")
        param = params.get(name)
        if not isinstance(param, CategoricalParam):
            raise Invalid(f"choice filter {text!r}: {name!r} is not a categorical "
                               "parameter of the space", "choice")
        match = [c for c in param.choices if str(c) == wanted]
        if not match:
            raise Invalid(f"choice filter {text!r}: {wanted!r} is not one of {name!r}'s "
                               "choices", "choice")
        out_choices.append((name, match[0]))
    return out_ranges, out_choices


def _complete_sample(ctx: UseCaseContext, session: Session, owner_id: int, study_id: str,
                     max_points: int) -> tuple[Study, SearchSpace, int, list[SampleRow], int]:
    """The study, its space, its complete trials' count, and a sample of them: those whose
    number is a multiple of a stride sized from the numbers issued, plus the best ones."""
    study = find_study(session, owner_id, study_id)
    total = trial_queries.count_in_state(session, study_id, TrialState.COMPLETE)
    every = max(1, math.ceil(study.next_number / max_points)) if total > max_points else 1
    rows = trial_queries.sample_complete(session, study.id, study.direction, every,
                                         min(BEST_IN_SAMPLE, max_points))
    return study, ctx.spaces.get(study), total, rows[: max_points + BEST_IN_SAMPLE], every


def _best_region(xy: np.ndarray, values: np.ndarray, trial_ids: list[int],
                 direction: str) -> BestRegion | None:
    """The best tenth's centre and median distance to it: a radius holding all of them would
    cover the whole map whenever good configurations lie in several places."""
    if len(values) < 10:
        return None
    k = max(1, len(values) // 10)
    order = np.argsort(values if direction == "minimize" else -values, kind="stable")[:k]
    centre = xy[order].mean(axis=0)
    radius = float(np.median(np.linalg.norm(xy[order] - centre, axis=1)))
    return BestRegion(x=float(centre[0]), y=float(centre[1]), radius=radius, count=k,
                      trial_ids=[trial_ids[i] for i in order])


def _label(params: dict[str, Any]) -> str:
    """The hover text of a point: its parameters, short."""
    return "<br>".join(f"{k}={_short(v)}" for k, v in list(params.items())[:16])


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
