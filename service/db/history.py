"""Rows -> engine value objects (DESIGN rule 2): the only place that knows both shapes."""

from __future__ import annotations

from service.db.models import PrunedCandidate as PrunedRow
from service.db.models import Trial
from service.engine.history import Observation, ProposalInfo, PrunedCandidate, TrialState


def to_observation(row: Trial) -> Observation:
    return Observation(
        number=row.number,
        params=dict(row.params),
        state=TrialState(row.state),
        value=row.value,
        metrics=dict(row.static_metrics or {}),
        proposal=ProposalInfo.from_dict(row.proposal),
    )


def to_pruned(row: PrunedRow) -> PrunedCandidate:
    return PrunedCandidate(params=dict(row.params), predicted=row.predicted,
                           metrics=dict(row.static_metrics or {}))
