"""The prior (``service.engine.transfer``) of each study that learns from earlier studies.

Built from the source studies' complete trials on first use and kept per process; rebuilt when a
source's revision moves (a source still running keeps teaching) or a source is deleted. Building
fits one small GP per source, so it is not redone on every ask.
"""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from service.db import study_queries, trial_queries
from service.db.models import Study
from service.engine.space import SearchSpace
from service.engine.transfer import Prior, build_prior, mapping_problems

AUTO_MIN_RESULTS = 10  # "auto" considers studies with at least this many results
AUTO_MAX_SOURCES = 16  # and at most this many of them, newest first


class PriorStore:
    def __init__(self) -> None:
        self._priors: dict[str, tuple[tuple[tuple[str, int], ...], Prior | None]] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, study: Study, space: SearchSpace) -> Prior | None:
        if not study.transfer_from:
            return None
        stamp = tuple(sorted(study_queries.revisions(session, list(study.transfer_from)).items()))
        with self._lock:
            cached = self._priors.get(study.id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        sources = []
        for source_id, _ in stamp:
            source = session.get(Study, source_id)
            if source is None:
                continue
            rows = trial_queries.complete_results(session, source_id)
            sources.append((source_id, source.direction, [p for p, _, _ in rows],
                            [v for _, v, _ in rows], [m for _, _, m in rows]))
        prior = build_prior(space, sources)
        with self._lock:
            self._priors[study.id] = (stamp, prior)
        return prior

    def forget(self, study_id: str) -> None:
        with self._lock:
            self._priors.pop(study_id, None)


def compatible_sources(session: Session, owner_id: int, space: SearchSpace) -> list[str]:
    """``transfer: "auto"``: the owner's studies with enough results whose space maps onto
    ``space`` (shared names, same types), newest first."""
    out = []
    for study in study_queries.transfer_candidates(session, owner_id, AUTO_MIN_RESULTS,
                                                   AUTO_MAX_SOURCES * 4):
        if not mapping_problems(space, SearchSpace.from_dict(study.space)):
            out.append(study.id)
        if len(out) >= AUTO_MAX_SOURCES:
            break
    return out
