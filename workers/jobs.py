"""Retrain a study's pruner from its history and store a new model version.

Idempotent and safe to retry: it trains only when the engine's ``RetrainPolicy`` says so, and a
version row is written in one transaction, so a killed job leaves nothing half-made. The newest
results are held out: the new model is activated only if it ranks them at least about as well as
the active one does (``retraining_policy.should_activate``; a worse version is kept, for the
record, but not served).
A study deleted before or during the training is an ordinary outcome (users delete studies while
jobs are queued), not an error: the job ends quietly and writes nothing.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import func, select

from service.config import Settings
from service.db.models import PrunerModel as PrunerRow
from service.db.models import Study
from service.db.session import make_engine, make_sessionmaker, transaction
from service.engine.encoding import Encoder
from service.engine.pruner import PrunerModel, make_training_set, observed_goodness
from service.engine.retraining_policy import holdout_split, recent_trust, should_activate
from service.engine.space import SearchSpace
from service.engine.transfer import teaching_prior
from service.history_cache import HistoryCache
from service.prior_store import PriorStore

log = logging.getLogger("dyesp.retraining")


def _study_gone(study_id: str) -> str:
    """The outcome of retraining a study that was deleted before its model could be stored."""
    log.info("study %s no longer exists: nothing to retrain", study_id)
    return f"study {study_id} no longer exists: nothing retrained"


def retrain_pruner(study_id: str, *, database_url: str | None = None,
                   device: str | None = None) -> str | None:
    """Train the study's pruner if it is due; return a one-line summary (also when the study was
    deleted meanwhile), or None if not due."""
    settings = Settings() if database_url is None else Settings(database_url=database_url)
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0,
                         connect_timeout_s=settings.db_connect_timeout_s,
                         statement_timeout_s=settings.db_statement_timeout_s,
                         pool_timeout_s=settings.db_pool_timeout_s)
    sessions = make_sessionmaker(engine)
    try:
        with sessions() as session:
            study = session.get(Study, study_id)
            if study is None:
                return _study_gone(study_id)
            history = HistoryCache().load(session, study_id, study.direction)
            last = session.execute(
                select(PrunerRow.n_train, PrunerRow.weights)
                .where(PrunerRow.study_id == study_id).order_by(PrunerRow.version.desc()).limit(1)
            ).one_or_none()
            active = session.scalar(
                select(PrunerRow.weights).where(PrunerRow.study_id == study_id, PrunerRow.active)
                .order_by(PrunerRow.version.desc()).limit(1))
            space = SearchSpace.from_dict(study.space)
            metric_names = tuple(study.static_metrics or ())
            prior = PriorStore().get(session, study, space)
        labelled, _ = observed_goodness(history)
        trained_on = last[0] if last else 0
        # The retrainer dispatched this on the same policy, trust included: check it alike.
        trust = recent_trust(history) if trained_on else None
        if not settings.retrain_policy.is_due(len(history.complete), trained_on, trust,
                                              pretrain=prior is not None and last is None):
            return None
        encoder = Encoder(space)
        fit, held_out = holdout_split(history, [t.number for t in labelled])
        teacher = teaching_prior(prior, space, history)
        training_set = make_training_set(encoder, fit, metric_names, teacher)
        previous = PrunerModel.from_bytes(last[1]) if last else None
        if previous is not None and previous.n_prior and teacher is None:
            previous = None  # it learnt a prior since found misleading: start over
        import torch  # only here: the API process never imports torch

        from service.training import evaluate, train_pruner

        chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
        start = time.perf_counter()
        model = train_pruner(training_set, previous, device=chosen)
        seconds = time.perf_counter() - start
        report: dict[str, float | int | None] = {"n_fit": training_set.n_trials,
                                                 "n_holdout": 0, "spearman_holdout": None,
                                                 "spearman_active": None}
        if held_out is not None:
            held = make_training_set(encoder, held_out, metric_names)
            report["n_holdout"] = held.n_trials
            report["spearman_holdout"] = evaluate(model, held)["spearman"]
            current = PrunerModel.from_bytes(active) if active else None
            if current is not None and current.fingerprint == model.fingerprint:
                report["spearman_active"] = evaluate(current, held)["spearman"]
        activate = should_activate(report["spearman_holdout"], report["spearman_active"])
        with transaction(sessions) as session:
            # Deleted while training? Then there is nothing to store the model for (and the insert
            # would break the foreign key). KEY SHARE holds off a delete until this commits, when
            # its cascade removes the new row with the study; SQLite's BEGIN IMMEDIATE already
            # serialises this transaction with the delete.
            if session.scalar(select(Study.id).where(Study.id == study_id)
                              .with_for_update(read=True, key_share=True)) is None:
                return _study_gone(study_id)
            version = (session.scalar(select(func.max(PrunerRow.version))
                                      .where(PrunerRow.study_id == study_id)) or 0) + 1
            session.add(PrunerRow(study_id=study_id, version=version, weights=model.to_bytes(),
                                  fingerprint=model.fingerprint, n_train=len(history.complete),
                                  metrics=report, device=chosen, seconds=seconds,
                                  active=activate))
        state = "active" if activate else "kept, not activated"
        return (f"pruner v{version} ({state}) fit on {training_set.n_trials} results, "
                f"held-out Spearman {report['spearman_holdout']} ({chosen}, {seconds:.2f}s)")
    finally:
        engine.dispose()

