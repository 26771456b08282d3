"""What an ask decides: the proposals, each with why, and the candidates the pruner discarded.

Its own module because two paths decide (``propose`` and, for static-metrics studies, ``selection``)
and the service records either the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.engine.history import ProposalInfo, PrunedCandidate

if TYPE_CHECKING:
    from service.engine.scheduler import Plan


@dataclass(frozen=True)
class Proposal:
    """One configuration to train and why it was proposed."""

    params: dict[str, Any]
    info: ProposalInfo


@dataclass(frozen=True)
class Decision:
    """The outcome of one ask: the proposals and the candidates the pruner discarded."""

    proposals: tuple[Proposal, ...]
    pruned: tuple[PrunedCandidate, ...] = ()
    plan: Plan | None = None
