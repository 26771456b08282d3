"""Rows -> engine value objects (DESIGN rule 2): the only place that knows both shapes."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from service.db import report_queries
from service.db.models import PrunedCandidate as PrunedRow
from service.db.models import Study, Trial
from service.engine.early_stopping import Fidelity
from service.engine.history import Observation, ProposalInfo, PrunedCandidate, TrialState


def to_observation(row: Trial, curve: Iterable[tuple[int, float]] = ()) -> Observation:
    return Observation(
        number=row.number,
        params=dict(row.params),
        state=TrialState(row.state),
        value=row.value,
        metrics=dict(row.static_metrics or {}),
        proposal=ProposalInfo.from_dict(row.proposal),
        curve=tuple(curve),
        revision=row.revision,
    )


def to_observations(session: Session, rows: Iterable[Trial],
                    rungs: tuple[int, ...]) -> list[Observation]:
    """``rows`` as observations, each finished trial that reported with its values at the
    study's rungs (one query for all of them; none when ``rungs`` is empty: no fidelity): what
    early stopping calibrates on and what a stopped trial's estimated result is mapped through.
    A running trial's curve is still growing and left out; at most ``len(rungs)`` points a
    trial, however long its curve."""
    rows = list(rows)
    with_curve = [r.id for r in rows if rungs and r.last_step is not None
                  and TrialState(r.state).finished]
    curves = report_queries.rung_points(session, with_curve)
    return [to_observation(r, curves.get(r.id, ())) for r in rows]


def study_fidelity(study: Study) -> Fidelity | None:
    """The study's declared fidelity as the engine's value object; None without one."""
    return fidelity_from(study.fidelity)


def fidelity_from(stored: dict | None) -> Fidelity | None:
    """A fidelity as stored in the study's ``fidelity`` column (read alone, as a report reads
    it with its trial) as the engine's value object; None without one."""
    return Fidelity(**stored) if stored else None


def study_rungs(study: Study) -> tuple[int, ...]:
    """The rung steps of the study's declared fidelity; none without one."""
    fidelity = study_fidelity(study)
    return tuple(fidelity.rungs()) if fidelity is not None else ()


def to_pruned(row: PrunedRow) -> PrunedCandidate:
    return PrunedCandidate(params=dict(row.params), predicted=row.predicted,
                           metrics=dict(row.static_metrics or {}))
