"""Retrain a study's pruner and store the new version: the work behind the RQ job
(``workers.jobs``) and the server's spawned child (``service.retraining``).

Idempotent and safe to retry: it trains only when the engine's ``RetrainPolicy`` says so, and a
version is written in one transaction, so a killed job leaves nothing half-made. The newest results
are held out: the new version is activated only if it ranks them about as well as the active one
does (``retraining_policy.should_activate``; a worse version is kept for the record, not served).
A study deleted before or during the training is an ordinary outcome (users delete studies while
jobs are queued), not an error: it ends quietly and writes nothing.

A deterministic study (``studies.deterministic``) is trained on its schedule instead
(``retraining_policy.training_schedule``): each scheduled version learns from exactly the first N
results in the order they arrived, on the CPU with one thread and a seed made of the study's seed
and N, warm-started from and judged against the schedule's previous versions, so the same results
give bit-identical versions and the same activation, whenever and wherever the job runs. Versions
the schedule calls for but nobody stored yet (a job killed, retraining switched on late) are
trained first, in order.

Torch is imported only once a training is due, so the API process may import this module.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Row
from sqlalchemy.orm import Session, sessionmaker

from service.caches.priors import PriorStore
from service.config import Settings
from service.db import pruner_queries, study_queries, trial_queries
from service.db.history import study_rungs, to_observations, to_pruned
from service.db.models import Study
from service.db.session import make_engine, make_sessionmaker, transaction
from service.engine.encoding import Encoder, encoder_for
from service.engine.history import History
from service.engine.pruner import PrunerModel, make_training_set, observed_goodness
from service.engine.retraining_policy import (
    RetrainPolicy,
    ScheduledTraining,
    holdout_split,
    recent_trust,
    results_up_to,
    should_activate,
    training_schedule,
)
from service.engine.space import SearchSpace
from service.engine.transfer import Prior, teaching_prior

TRAINING_TIMEOUT_S = 600  # a training running longer is ended; 100k trials train in far less on CPU
# A deterministic study's versions train here whatever the worker has: CUDA's scatter-adds (the
# backward of the batch indexing) sum in a varying order, and bit-identical weights are the point.
SCHEDULED_DEVICE = "cpu"

log = logging.getLogger("dyesp.retraining")


@dataclass(frozen=True)
class _Study:
    """What a retraining reads, in one short transaction before any training."""

    space: SearchSpace
    metric_names: tuple[str, ...]
    history: History
    prior: Prior | None
    trained_on: int | None  # complete trials the newest version learnt from; None: no version
    newest: bytes | None  # the newest version's weights: the warm start
    active: bytes | None  # the weights asks use now: the bar a new version must clear
    seed: int = 0
    deterministic: bool = False
    scheduled: tuple[Row, ...] = ()  # versions on the deterministic schedule (summaries)


def retrain_study(study_id: str, *, database_url: str | None = None,
                  device: str | None = None) -> str | None:
    """``retrain`` on a database of its own: the settings' (a worker's environment), or the
    server's ``database_url`` (its spawned child). One connection, closed after."""
    settings = Settings() if database_url is None else Settings(database_url=database_url)
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0,
                         connect_timeout_s=settings.db_connect_timeout_s,
                         statement_timeout_s=settings.db_statement_timeout_s,
                         pool_timeout_s=settings.db_pool_timeout_s)
    try:
        return retrain(make_sessionmaker(engine), study_id, settings.retrain_policy,
                       device=device)
    finally:
        engine.dispose()


def retrain(sessions: sessionmaker[Session], study_id: str, policy: RetrainPolicy, *,
            device: str | None = None) -> str | None:
    """Train the study's pruner if it is due and store the version; return a one-line summary
    (also when the study was deleted meanwhile), or None if not due."""
    with sessions() as session:
        study = _load(session, study_id)
    if study is None:
        return _study_gone(study_id)
    if study.deterministic:
        return _retrain_on_schedule(sessions, study_id, study, policy)
    if not _due(study, policy):
        return None
    trained = _train(study, study.history, study.newest, study.active, device)
    try:
        with transaction(sessions) as session:
            version = pruner_queries.add_version(
                session, study_id, weights=trained.model.to_bytes(),
                fingerprint=trained.model.fingerprint, n_train=len(study.history.complete),
                metrics=trained.report, device=trained.device, seconds=trained.seconds,
                active=trained.activate)
    except pruner_queries.VersionTaken as taken:
        return f"{taken}: this training is dropped"
    if version is None:
        return _study_gone(study_id)
    state = "active" if trained.activate else "kept, not activated"
    return (f"pruner v{version} ({state}) fit on {trained.report['n_fit']} results, "
            f"held-out Spearman {trained.report['spearman_holdout']} "
            f"({trained.device}, {trained.seconds:.2f}s)")


def _retrain_on_schedule(sessions: sessionmaker[Session], study_id: str, study: _Study,
                         policy: RetrainPolicy) -> str | None:
    """Train every version the study's deterministic schedule calls for and nobody stored yet,
    oldest first (each warm-starts from, and is judged against, the ones before it)."""
    stored = {row.n_train: row for row in study.scheduled}
    schedule, _ = training_schedule(policy, study.history, pretrain=study.prior is not None)
    missing = [s for s in schedule if s.n_results not in stored]
    if not missing:
        return None
    before = [row for n, row in sorted(stored.items()) if n < missing[0].n_results]
    served = [row for row in before if row.active]
    with sessions() as session:
        newest = pruner_queries.weights(session, before[-1].id) if before else None
        active = pruner_queries.weights(session, served[-1].id) if served else None
    outcome = None
    for scheduled in missing:
        seed = training_seed(study.seed, scheduled.n_results)
        trained = _train(study, results_up_to(study.history, scheduled), newest, active,
                         SCHEDULED_DEVICE, seed)
        weights = trained.model.to_bytes()
        try:
            outcome = _store(sessions, study_id, trained, weights, scheduled, seed)
        except pruner_queries.VersionTaken as taken:  # the other trainer follows the schedule
            return f"{taken}: this training is dropped"
        if outcome is None:
            return _study_gone(study_id)
        newest = weights
        if trained.activate:
            active = weights
    return outcome


def training_seed(study_seed: int, n_results: int) -> int:
    """The seed of the scheduled training on ``n_results`` results: the study's seed and N mixed
    (numpy's SeedSequence), so each version draws its own initialisation and batches."""
    return int(np.random.SeedSequence([study_seed, n_results]).generate_state(1)[0])


def _store(sessions: sessionmaker[Session], study_id: str, trained: _Trained, weights: bytes,
           scheduled: ScheduledTraining, seed: int) -> str | None:
    """Store one scheduled version; its summary, or None when the study is gone."""
    metrics = {**trained.report, pruner_queries.SCHEDULED: True, "arrived": scheduled.arrived,
               "seed": seed}
    with transaction(sessions) as session:
        version = pruner_queries.add_version(
            session, study_id, weights=weights, fingerprint=trained.model.fingerprint,
            n_train=scheduled.n_results, metrics=metrics, device=trained.device,
            seconds=trained.seconds, active=trained.activate)
    if version is None:
        return None
    state = "active" if trained.activate else "kept, not activated"
    return (f"pruner v{version} ({state}, deterministic schedule) fit on "
            f"{trained.report['n_fit']} of the first {scheduled.n_results} results "
            f"({trained.device}, {trained.seconds:.2f}s)")


def _due(study: _Study, policy: RetrainPolicy) -> bool:
    """The policy's answer on the counts the retrainer reads, trust measured as it does (once a
    version learnt from results)."""
    trained_on = study.trained_on or 0
    trust = recent_trust(study.history) if trained_on else None
    pretrain = study.prior is not None and study.trained_on is None
    return policy.is_due(len(study.history.complete), trained_on, trust, pretrain)


@dataclass(frozen=True)
class _Trained:
    model: PrunerModel
    device: str
    seconds: float
    report: dict[str, Any]  # stored with the version: sizes and held-out Spearman correlations
    activate: bool


def _train(study: _Study, history: History, newest: bytes | None, active: bytes | None,
           device: str | None, seed: int = 0) -> _Trained:
    """Fit on all but the newest results of ``history``, warm-started from ``newest``, then
    judge the new model on those against ``active`` (the weights asks use)."""
    import torch  # only here, once due: the API process never imports torch

    from service.training import evaluate, train_pruner

    encoder = encoder_for(study.space)
    labelled, _ = observed_goodness(history)
    fit, held_out = holdout_split(history, [t.number for t in labelled])
    teacher = teaching_prior(study.prior, study.space, history)
    training_set = make_training_set(encoder, fit, study.metric_names, teacher)
    previous = PrunerModel.from_bytes(newest) if newest else None
    if previous is not None and previous.n_prior and teacher is None:
        previous = None  # it learnt a prior since found misleading: start over
    chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    model = train_pruner(training_set, previous, device=chosen, seed=seed)
    seconds = time.perf_counter() - start
    report: dict[str, Any] = {"n_fit": training_set.n_trials, "n_holdout": 0,
                              "spearman_holdout": None, "spearman_active": None}
    if held_out is not None:
        held = make_training_set(encoder, held_out, study.metric_names)
        report["n_holdout"] = held.n_trials
        report["spearman_holdout"] = evaluate(model, held)["spearman"]
        current = _applicable(active, encoder, study.metric_names)
        if current is not None:
            report["spearman_active"] = evaluate(current, held)["spearman"]
    activate = should_activate(report["spearman_holdout"], report["spearman_active"])
    return _Trained(model, chosen, seconds, report, activate)


def _load(session: Session, study_id: str) -> _Study | None:
    study = study_queries.by_id(session, study_id)
    if study is None:
        return None
    space = SearchSpace.from_dict(study.space)
    newest = pruner_queries.newest_version(session, study_id)
    return _Study(
        space=space, metric_names=tuple(study.static_metrics or ()),
        history=_history(session, study),
        # A fresh store: no cache, only the one place that knows how a prior is built.
        prior=PriorStore().get(session, study, space),
        trained_on=None if newest is None else newest.n_train,
        newest=None if newest is None else newest.weights,
        active=pruner_queries.active_weights(session, study_id),
        seed=study.seed, deterministic=study.deterministic,
        scheduled=tuple(pruner_queries.scheduled_versions(session, study_id))
        if study.deterministic else ())


def _history(session: Session, study: Study) -> History:
    """The study's whole history in one read (every trial row is stamped with a revision >= 1,
    so "changed since revision 0" is all of them), finished trials with their rung values;
    servers keep theirs in a history cache."""
    rows = trial_queries.changed_since(session, study.id, 0)
    trials = sorted(to_observations(session, rows, study_rungs(study)), key=lambda t: t.number)
    pruned = tuple(to_pruned(row) for row in trial_queries.pruned_after(session, study.id, 0))
    return History(study.direction, tuple(trials), pruned)


def _applicable(weights: bytes | None, encoder: Encoder,
                metric_names: tuple[str, ...]) -> PrunerModel | None:
    """The active version, if it reads this study's features (else nothing to compare with)."""
    model = PrunerModel.from_bytes(weights) if weights else None
    return model if model is not None and model.applies_to(encoder, metric_names) else None


def _study_gone(study_id: str) -> str:
    """The outcome of retraining a study that was deleted before its model could be stored."""
    log.info("study %s no longer exists: nothing to retrain", study_id)
    return f"study {study_id} no longer exists: nothing retrained"
