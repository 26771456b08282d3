"""Engine and session factory, with the per-backend settings that make the backends behave alike."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# A session idle inside a transaction this many statement timeouts long is abandoned work (a
# crashed request's leftovers) holding row locks: PostgreSQL ends it.
IDLE_IN_TRANSACTION_FACTOR = 6
# A statement stuck behind a lock fails on lock_timeout a little before statement_timeout, so the
# log names the contention (55P03) instead of passing it off as a slow query (57014).
LOCK_SHARE = 0.8
# Without a statement timeout (migrations), a peer silent this long is still given up on.
UNBOUNDED_SILENCE_S = 60.0


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10,
                connect_timeout_s: float = 3.0, statement_timeout_s: float | None = 10.0,
                pool_timeout_s: float = 5.0) -> Engine:
    """Create the SQLAlchemy engine; every wait on the database is bounded.

    SQLite: every transaction starts with ``BEGIN IMMEDIATE`` so writers queue on the file lock
    (for at most the statement timeout) instead of failing on a lock upgrade; WAL keeps readers
    off the writer.
    PostgreSQL: ``pool_pre_ping`` so a restarted server is reconnected to on the next request;
    connecting, each statement, each lock wait and waiting for a pooled connection are bounded
    (``postgres_timeouts``). ``statement_timeout_s=None`` lifts the statement bounds, for
    operator commands such as migrations that may legitimately run long.
    """
    if url.startswith("sqlite"):
        busy_s = statement_timeout_s if statement_timeout_s is not None else 30.0
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_s})
        _make_sqlite_transactions_immediate(engine, busy_s)
        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow,
        pool_recycle=1800, pool_timeout=pool_timeout_s,
        connect_args=postgres_timeouts(url, connect_timeout_s, statement_timeout_s),
    )


def postgres_timeouts(url: str, connect_timeout_s: float,
                      statement_timeout_s: float | None) -> dict[str, Any]:
    """libpq connection parameters that bound every wait on PostgreSQL.

    The server enforces ``statement_timeout``, ``lock_timeout`` and (generously)
    ``idle_in_transaction_session_timeout``; the client enforces ``connect_timeout`` (whole
    seconds; libpq and psycopg treat anything under 2 as 2). A server that vanishes without
    closing the connection (a black-holed network) enforces nothing, so TCP keepalives and
    ``tcp_user_timeout`` give up on a silent peer after about the statement timeout, the longest
    a healthy server stays silent. Parameters already in the URL win.
    """
    silence_s = statement_timeout_s if statement_timeout_s is not None else UNBOUNDED_SILENCE_S
    params: dict[str, Any] = {
        "connect_timeout": max(2, math.ceil(connect_timeout_s)),
        "keepalives": 1, "keepalives_idle": max(1, math.ceil(silence_s / 2)),
        "keepalives_interval": max(1, math.ceil(silence_s / 6)), "keepalives_count": 3,
        "tcp_user_timeout": math.ceil(silence_s * 1000),  # milliseconds
    }
    query = make_url(url).query
    params = {key: value for key, value in params.items() if key not in query}
    options = []
    if statement_timeout_s is not None:
        statement_ms = math.ceil(statement_timeout_s * 1000)
        lock_ms = math.ceil(LOCK_SHARE * statement_ms)
        options = [f"-c statement_timeout={statement_ms}", f"-c lock_timeout={lock_ms}",
                   "-c idle_in_transaction_session_timeout="
                   f"{IDLE_IN_TRANSACTION_FACTOR * statement_ms}"]
    theirs = query.get("options")  # after ours: a setting the operator chose overrides ours
    options += [theirs] if isinstance(theirs, str) else list(theirs or ())
    if options:
        params["options"] = " ".join(options)
    return params


def _make_sqlite_transactions_immediate(engine: Engine, busy_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={math.ceil(busy_s * 1000)}")
        cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged tell survives power loss
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session
