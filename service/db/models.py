"""The tables (SQLAlchemy 2 typed ORM). PostgreSQL is the source of truth; SQLite the embedded one.

Rows reach the engine only as its value objects, made in ``service.db.history``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite has no BIGINT autoincrement; PostgreSQL trial ids should not run out at 2**31.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Owner(Base):
    __tablename__ = "owners"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A bearer key stored as its SHA-256: keys are long and random, a slow hash buys nothing."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Study(Base):
    __tablename__ = "studies"
    # One name, one study of an owner: ``load_study(name)`` and ``load_if_exists`` mean one study.
    # Migration 0007 renamed older duplicates (``"name (2)"``, ...) before adding it.
    __table_args__ = (Index("uq_studies_owner_name", "owner_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    direction: Mapped[str] = mapped_column(String(8))
    space: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(BigInteger)
    heartbeat_timeout_s: Mapped[float] = mapped_column(Float)
    static_metrics: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Ids of the prior studies this one learns from, resolved at creation (``transfer``).
    transfer_from: Mapped[list[str]] = mapped_column(JSON, default=list)
    # ``{"name", "min", "max"}``: the integer steps trials report at (early stopping's rungs).
    fidelity: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The next trial number: taken under the study row's lock, so numbers are unique and gapless.
    next_number: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped by every change to the study's trials; caches catch up on rows with a larger revision.
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    # The client's own notes (Optuna's ``user_attrs``): bounded JSON, never read by the engine.
    user_attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Whether asks must be reproducible from the seed alone (StudyCreate.deterministic).
    deterministic: Mapped[bool] = mapped_column(Boolean, default=False,
                                                server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("study_id", "number", name="uq_trials_study_number"),
        Index("ix_trials_study_revision", "study_id", "revision"),
        Index("ix_trials_study_state", "study_id", "state"),
        # A study's best complete trials: the first entries of one range (``best``).
        Index("ix_trials_study_state_value", "study_id", "state", "value", "number"),
        Index("ix_trials_study_client", "study_id", "client_id"),
        Index("ix_trials_state_deadline", "state", "deadline_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    value: Mapped[float | None] = mapped_column(Float, default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    static_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    proposal: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    client_id: Mapped[str | None] = mapped_column(String(128), default=None)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    # A running trial silent past this is failed by the reaper (heartbeat + the study's timeout);
    # indexed with state so a sweep reads only the stale rows.
    deadline_at: Mapped[datetime | None] = mapped_column(default=None)
    # The server failed it for silence: the one finished state a later result may overwrite.
    timed_out: Mapped[bool] = mapped_column(Boolean, default=False)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    # The largest step the trial reported (``trial_reports``); None before any report.
    last_step: Mapped[int | None] = mapped_column(Integer, default=None)
    # The client's own notes (Optuna's ``user_attrs``), settable while running and after.
    user_attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TrialReport(Base):
    """One intermediate value of a running trial (its learning curve), one row per step.

    ``reason`` is the stop decision the report was answered with (None: go on), kept so the same
    report sent again gets the same answer and a trial told ``stopped`` records why. ``rung`` is
    the rung the report was the trial's value at (``Fidelity.rung_crossed``: its first report at
    or past it), None for the others: most rows, which the rung indexes leave out."""

    __tablename__ = "trial_reports"
    __table_args__ = (
        UniqueConstraint("trial_id", "step", name="uq_trial_reports_trial_step"),
        # The newest values at one rung: a range of (study, rung) read backwards by id, so a
        # rung decision reads a bounded sample however many trials reached it.
        Index("ix_trial_reports_study_rung_id", "study_id", "rung", "id",
              postgresql_where=text("rung IS NOT NULL"), sqlite_where=text("rung IS NOT NULL")),
        # A finished trial's rung values (the history's curves): at most one row per rung.
        Index("ix_trial_reports_trial_rung", "trial_id", "rung",
              postgresql_where=text("rung IS NOT NULL"), sqlite_where=text("rung IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    trial_id: Mapped[int] = mapped_column(BigId, ForeignKey("trials.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rung: Mapped[int | None] = mapped_column(Integer, default=None)


class StoppingPolicyRow(Base):
    """A study's early-stopping policy (``engine.stopping_policy``), calibrated from its finished
    curves after each tell that can change it; a rung report reads it by primary key.

    Its own table, not a column of ``studies``: writing it must not wait for the study's row lock
    that asks and tells hold. ``revision`` is the study revision it was calibrated at: a writer
    never replaces a policy calibrated on a newer history.
    """

    __tablename__ = "stopping_policies"

    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"),
                                          primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    finished: Mapped[int] = mapped_column(Integer)  # finished trials with a curve it saw
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PrunedCandidate(Base):
    """A candidate the pruner discarded: kept so the scheduler learns from it (append-only)."""

    __tablename__ = "pruned_candidates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    predicted: Mapped[float] = mapped_column(Float)
    static_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PrunerVersion(Base):
    """One trained version of a study's pruner; the newest active one serves asks.

    A row is a stored version; the engine's ``PrunerModel`` is the model it loads into. The table
    keeps its first name, ``pruner_models``.
    """

    __tablename__ = "pruner_models"
    __table_args__ = (UniqueConstraint("study_id", "version", name="uq_pruner_study_version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    weights: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint: Mapped[str] = mapped_column(String(64))
    n_train: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    device: Mapped[str] = mapped_column(String(32))
    seconds: Mapped[float] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Candidate(Base):
    """A configuration shown to a client so it can compute static metrics (two-step ask).

    Candidates are not trials: they take no trial number until the client returns metrics and the
    pruner picks them. A pool expires, and is consumed as a whole by the ask that answers it.
    """

    __tablename__ = "candidates"
    __table_args__ = (Index("ix_candidates_study_pool", "study_id", "pool"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    pool: Mapped[str] = mapped_column(String(32))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    proposal: Mapped[dict[str, Any]] = mapped_column(JSON)
    client_id: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    consumed_at: Mapped[datetime | None] = mapped_column(default=None)
