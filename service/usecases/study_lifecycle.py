"""Study use cases: create (quotas, transfer sources), find, delete, and the reports on what a
study learns from (prior studies, its pruner) and how far that is trusted."""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from service.db import pruner_queries, study_queries, trial_queries
from service.db.history import study_rungs, to_observation
from service.db.models import Study
from service.db.session import transaction
from service.engine import transfer
from service.engine.history import History
from service.engine.space import SearchSpace, SpaceError
from service.engine.transfer import mapping_problems
from service.engine.trust import TRUST_WINDOW, measure_trust, prediction_pairs
from service.errors import Conflict, Invalid, NotFound, QuotaExceeded
from service.schemas import PrunerReport, PrunerVersionOut, StudyCreate, TransferOut
from service.usecases.context import UseCaseContext

AUTO_MIN_RESULTS = 10  # "auto" considers studies with at least this many results
AUTO_MAX_SOURCES = 16  # and at most this many of them, newest first


def create_study(ctx: UseCaseContext, owner_id: int, body: StudyCreate) -> Study:
    raw_space = body.space.model_dump(exclude_unset=True, exclude_none=True)
    try:
        space = SearchSpace.from_dict(raw_space)
    except SpaceError as error:
        raise Invalid(error.field, error.reason) from None
    for i, name in enumerate(body.static_metrics):
        if not name or len(name) > 64:
            raise Invalid(f"static_metrics[{i}]", "must be 1 to 64 characters")
    if len(set(body.static_metrics)) != len(body.static_metrics):
        raise Invalid("static_metrics", "names must be unique")
    if body.fidelity is not None and body.fidelity.min >= body.fidelity.max:
        raise Invalid("fidelity.max", f"must be greater than `fidelity.min` "
                                      f"({body.fidelity.min}), got {body.fidelity.max}")
    if body.transfer == "auto" and body.transfer_from:
        raise Invalid("transfer", 'give either `transfer: "auto"` or `transfer_from`, not both')
    with transaction(ctx.sessions) as session:
        owned = study_queries.count_studies(session, owner_id)
        if owned >= ctx.max_studies_per_owner:
            raise QuotaExceeded(f"studies: this owner has {owned} studies, the quota is "
                                f"{ctx.max_studies_per_owner}; delete finished ones first")
        if body.transfer == "auto":
            sources = compatible_sources(session, owner_id, space)
        else:
            sources = _checked_sources(session, owner_id, space, body.transfer_from)
        if study_queries.by_name(session, owner_id, body.name) is not None:
            raise _name_taken(body.name)
        study = study_queries.create_study(
            session, owner_id, name=body.name, direction=body.direction,
            space=space.to_dict(),
            seed=body.seed if body.seed is not None else secrets.randbits(31),
            heartbeat_timeout_s=body.heartbeat_timeout_s or ctx.default_heartbeat_timeout_s,
            static_metrics=list(body.static_metrics), transfer_from=sources,
            fidelity=body.fidelity.model_dump() if body.fidelity is not None else None,
            deterministic=(body.deterministic if body.deterministic is not None
                           else body.seed is not None),
        )
        if study is None:  # a concurrent create took the name after the check above
            raise _name_taken(body.name)
    if sources:
        ctx.told(study.id)  # the pruner is pretrained on the prior studies right away
    return study


def _name_taken(name: str) -> Conflict:
    return Conflict(f"you already have a study called {name!r}; names are unique per "
                    "owner (load it with GET /v1/studies?name=, or choose another name)", "name")


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


def _checked_sources(session: Session, owner_id: int, space: SearchSpace,
                     ids: list[str]) -> list[str]:
    """Explicit prior studies: each must be the owner's and map onto the new space."""
    out: list[str] = []
    for i, source_id in enumerate(ids):
        source = study_queries.get_study(session, owner_id, source_id)
        if source is None:
            raise Invalid(f"transfer_from[{i}]", f"no study {source_id!r} of yours exists")
        problems = mapping_problems(space, SearchSpace.from_dict(source.space))
        if problems:
            raise Invalid(f"transfer_from[{i}]",
                          f"study {source_id!r} is not compatible: {'; '.join(problems)}")
        if source_id not in out:
            out.append(source_id)
    return out


def find_study(session: Session, owner_id: int, study_id: str) -> Study:
    study = study_queries.get_study(session, owner_id, study_id)
    if study is None:
        raise NotFound(f"study {study_id!r} does not exist", "study_id")
    return study


def delete_study(ctx: UseCaseContext, owner_id: int, study_id: str) -> None:
    with transaction(ctx.sessions) as session:
        find_study(session, owner_id, study_id)
        study_queries.delete_study(session, study_id)
    ctx.forget(study_id)


def transfer_status(ctx: UseCaseContext, session: Session, study: Study) -> TransferOut:
    """Which studies ``study`` learns from and how far that is trusted by its results so far."""
    space = ctx.spaces.get(study)
    prior = ctx.priors.get(session, study, space)
    history = ctx.histories.load(session, study.id, study.direction, rungs=study_rungs(study))
    trust = transfer.prior_trust(prior, space, history)
    return TransferOut(sources=list(study.transfer_from),
                       prior_trials=0 if prior is None else prior.size, trust=trust,
                       active=prior is not None and (trust is None or trust >= transfer.TRUST_MIN))


def pruner_report(ctx: UseCaseContext, session: Session, owner_id: int, study_id: str,
                  offset: int, limit: int, retraining: str) -> PrunerReport:
    """The study's pruner: the version serving asks, how far its forecasts held up, and one page
    of its versions, newest first, never with their weights."""
    study = find_study(session, owner_id, study_id)
    rows, total = pruner_queries.version_page(session, study_id, offset, limit)
    return PrunerReport(
        active_version=pruner_queries.active_version(session, study_id),
        trust=_measured_trust(session, study),
        n_pruned=pruner_queries.count_pruned(session, study_id),
        retraining=retraining,
        versions=[PrunerVersionOut(version=r.version, active=r.active, n_train=r.n_train,
                                   device=r.device, seconds=r.seconds, metrics=r.metrics or {},
                                   created_at=r.created_at) for r in rows],
        versions_total=total,
    )


def _measured_trust(session: Session, study: Study) -> float | None:
    """``measure_trust`` of the study's whole history, read from its newest finished trials only.

    Only complete and infeasible trials can give a (predicted, result) pair, and the measure
    takes the newest ``TRUST_WINDOW`` pairs: so the newest such trials are read, in pages growing
    fourfold, until the window is full or none are left. A 100,000-trial study reads a few dozen
    rows here, where loading its cached history read (and kept) all of them.
    """
    limit = 4 * TRUST_WINDOW
    while True:
        rows = trial_queries.recent_finished(session, study.id, limit)
        history = History(study.direction, tuple(to_observation(r) for r in rows))
        complete = {t.number for t in history.complete}
        predicted, _ = prediction_pairs(history, reversed(history.trials),
                                        lambda t, c=complete: t.number in c, TRUST_WINDOW)
        if len(predicted) >= TRUST_WINDOW or len(rows) < limit:
            return measure_trust(history)
        limit *= 4
