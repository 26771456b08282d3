"""The active pruner of each study, loaded from the database and cached per model version.

Training happens elsewhere (a worker or a spawned process); servers only read the newest active
version, so a new model is picked up on the next ask without a restart.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.caches.lru import LRU
from service.db import pruner_queries
from service.engine.pruner import PrunerModel

# Studies whose active pruner a process keeps. A model is a small ensemble (typically ~100 kB,
# a few MB at the widest encodable space); reloading one costs a query and a deserialisation,
# so the bound only keeps a long-lived process from holding every study it ever served.
MAX_STUDIES = 512


class PrunerStore:
    def __init__(self, max_studies: int = MAX_STUDIES) -> None:
        # study id -> (row id of the version it was loaded from, the model)
        self._models: LRU[str, tuple[int, PrunerModel]] = LRU(max_studies)

    def __len__(self) -> int:
        return len(self._models)

    def active(self, session: Session, study_id: str) -> PrunerModel | None:
        newest = pruner_queries.newest_active_id(session, study_id)
        if newest is None:
            return None
        cached = self._models.get(study_id)
        if cached is not None and cached[0] == newest:
            return cached[1]
        model = PrunerModel.from_bytes(pruner_queries.weights(session, newest))
        self._models.put(study_id, (newest, model))
        return model

    def forget(self, study_id: str) -> None:
        self._models.pop(study_id)
