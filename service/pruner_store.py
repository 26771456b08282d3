"""The active pruner of each study, loaded from the database and cached per model version.

Training happens elsewhere (a worker or a spawned process); servers only read the newest active
version, so a new model is picked up on the next ask without a restart.
"""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from service.db import pruner_queries
from service.engine.pruner import PrunerModel


class PrunerStore:
    def __init__(self) -> None:
        self._models: dict[str, tuple[int, PrunerModel]] = {}
        self._lock = threading.Lock()

    def active(self, session: Session, study_id: str) -> PrunerModel | None:
        newest = pruner_queries.newest_active_id(session, study_id)
        if newest is None:
            return None
        with self._lock:
            cached = self._models.get(study_id)
        if cached is not None and cached[0] == newest:
            return cached[1]
        model = PrunerModel.from_bytes(pruner_queries.weights(session, newest))
        with self._lock:
            self._models[study_id] = (newest, model)
        return model
