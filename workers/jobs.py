"""Retrain a study's pruner from its history and store a new model version.

Idempotent and safe to retry: it trains only when enough new results arrived since the newest
version, and a version row is written in one transaction, so a killed job leaves nothing half-made.
"""

from __future__ import annotations

import time

from sqlalchemy import func, select

from service.config import Settings
from service.db.models import PrunerModel as PrunerRow
from service.db.models import Study
from service.db.session import make_engine, make_sessionmaker, transaction
from service.engine.encoding import Encoder
from service.engine.pruner import PrunerModel, make_training_set
from service.engine.space import SearchSpace
from service.history_cache import HistoryCache
from service.retraining import is_due


def retrain_pruner(study_id: str, *, database_url: str | None = None,
                   device: str | None = None) -> str | None:
    """Train the study's pruner if it is due; return a one-line summary, or None if not due."""
    settings = Settings() if database_url is None else Settings(database_url=database_url)
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    sessions = make_sessionmaker(engine)
    try:
        with sessions() as session:
            study = session.get(Study, study_id)
            if study is None:
                return None
            history = HistoryCache().load(session, study_id, study.direction)
            last = session.execute(
                select(PrunerRow.version, PrunerRow.n_train, PrunerRow.weights)
                .where(PrunerRow.study_id == study_id).order_by(PrunerRow.version.desc()).limit(1)
            ).one_or_none()
            space = SearchSpace.from_dict(study.space)
            metric_names = tuple(study.static_metrics or ())
        if not is_due(len(history.complete), last[1] if last else 0, settings):
            return None
        training_set = make_training_set(Encoder(space), history, metric_names)
        previous = PrunerModel.from_bytes(last[2]) if last else None
        import torch  # only here: the API process never imports torch

        from service.training import train_pruner

        chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
        start = time.perf_counter()
        model = train_pruner(training_set, previous, device=chosen)
        seconds = time.perf_counter() - start
        with transaction(sessions) as session:
            version = (session.scalar(select(func.max(PrunerRow.version))
                                      .where(PrunerRow.study_id == study_id)) or 0) + 1
            session.add(PrunerRow(study_id=study_id, version=version, weights=model.to_bytes(),
                                  fingerprint=model.fingerprint, n_train=model.n_train,
                                  metrics={}, device=chosen, seconds=seconds, active=True))
        return f"pruner v{version} on {model.n_train} trials ({chosen}, {seconds:.2f}s)"
    finally:
        engine.dispose()
