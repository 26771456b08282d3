"""Parsed search spaces by study id: parsing is pure and a study's space never changes."""

from __future__ import annotations

from service.caches.lru import LRU
from service.db.models import Study
from service.engine.space import SearchSpace

# Studies whose parsed space a process keeps. A parsed space is small (at most 256 params) and
# cheap to parse again, so this bound is generous: it only stops unbounded growth.
MAX_STUDIES = 1024


class SpaceCache:
    def __init__(self, max_studies: int = MAX_STUDIES) -> None:
        self._spaces: LRU[str, SearchSpace] = LRU(max_studies)

    def __len__(self) -> int:
        return len(self._spaces)

    def get(self, study: Study) -> SearchSpace:
        space = self._spaces.get(study.id)
        if space is None:
            space = SearchSpace.from_dict(study.space)
            self._spaces.put(study.id, space)
        return space

    def forget(self, study_id: str) -> None:
        self._spaces.pop(study_id)
