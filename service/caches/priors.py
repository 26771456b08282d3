"""The prior (``service.engine.transfer``) of each study that learns from earlier studies.

Built from the source studies' complete trials on first use and kept per process; rebuilt when a
source's revision moves (a source still running keeps teaching) or a source is deleted. Building
fits one small GP per source, so it is not redone on every ask.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.caches.lru import LRU
from service.db import study_queries, trial_queries
from service.db.models import Study
from service.engine.space import SearchSpace
from service.engine.transfer import Prior, build_prior

# Studies whose prior a process keeps. A prior holds every complete trial of up to 16 source
# studies plus a GP per source: the heaviest entry per study after a history, and a rebuild
# costs reading the sources and refitting, so only studies in active use keep theirs.
MAX_STUDIES = 256

# (source id, source revision) of every source the prior was built from: a change rebuilds it.
_Stamp = tuple[tuple[str, int], ...]


class PriorStore:
    def __init__(self, max_studies: int = MAX_STUDIES) -> None:
        self._priors: LRU[str, tuple[_Stamp, Prior | None]] = LRU(max_studies)

    def __len__(self) -> int:
        return len(self._priors)

    def get(self, session: Session, study: Study, space: SearchSpace) -> Prior | None:
        if not study.transfer_from:
            return None
        stamp = tuple(sorted(study_queries.revisions(session, list(study.transfer_from)).items()))
        cached = self._priors.get(study.id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        sources = []
        for source_id, _ in stamp:
            source = study_queries.by_id(session, source_id)
            if source is None:
                continue
            rows = trial_queries.complete_results(session, source_id)
            sources.append((source_id, source.direction, [p for p, _, _ in rows],
                            [v for _, v, _ in rows], [m for _, _, m in rows]))
        prior = build_prior(space, sources)
        self._priors.put(study.id, (stamp, prior))
        return prior

    def forget(self, study_id: str) -> None:
        self._priors.pop(study_id)
