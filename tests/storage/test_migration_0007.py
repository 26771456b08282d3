"""Migration 0007 makes study names unique per owner: duplicates already stored are renamed
deterministically (the oldest keeps the name, later ones get " (2)", " (3)", ... by creation
time, within the 256-character column), on SQLite and PostgreSQL, from a real 0006 database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from service.db import migrate

SPACE = '{"params": [{"name": "x", "type": "float", "low": 0, "high": 1}]}'


def _add_study(connection, study_id: str, owner_id: int, name: str, created_at: datetime) -> None:
    connection.execute(text(
        "INSERT INTO studies (id, owner_id, name, direction, space, seed, heartbeat_timeout_s, "
        "static_metrics, transfer_from, next_number, revision, created_at) VALUES "
        "(:id, :owner, :name, 'minimize', :space, 0, 300.0, '[]', '[]', 0, 0, :created)"),
        {"id": study_id, "owner": owner_id, "name": name, "space": SPACE, "created": created_at})


def test_upgrade_renames_duplicate_names_oldest_first(fresh_url: str) -> None:
    engine = create_engine(fresh_url)
    migrate.upgrade(engine, "0006")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    long_name = "L" * 256
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO owners (id, name, created_at) VALUES "
                                "(1, 'alice', :t), (2, 'bob', :t)"), {"t": t0})
        # inserted out of creation order: the rename must follow created_at, not insertion
        _add_study(connection, "a3", 1, "mlp", t0 + timedelta(hours=3))
        _add_study(connection, "a1", 1, "mlp", t0 + timedelta(hours=1))
        _add_study(connection, "a2", 1, "mlp", t0 + timedelta(hours=2))
        _add_study(connection, "a4", 1, "mlp (2)", t0)  # a name a suffix would collide with
        _add_study(connection, "b1", 2, "mlp", t0 + timedelta(hours=5))  # another owner's
        _add_study(connection, "l1", 1, long_name, t0)
        _add_study(connection, "l2", 1, long_name, t0 + timedelta(minutes=1))
    migrate.upgrade(engine)
    with engine.connect() as connection:
        names = dict(connection.execute(text("SELECT id, name FROM studies")).all())
        attrs = connection.execute(text("SELECT user_attrs, deterministic FROM studies "
                                        "WHERE id = 'a1'")).one()
    assert names["a1"] == "mlp" and names["b1"] == "mlp" and names["a4"] == "mlp (2)"
    assert names["a2"] == "mlp (3)" and names["a3"] == "mlp (4)"
    assert names["l1"] == long_name
    assert names["l2"] == "L" * 252 + " (2)" and len(names["l2"]) == 256
    user_attrs = attrs[0] if isinstance(attrs[0], dict) else __import__("json").loads(attrs[0])
    assert user_attrs == {} and not attrs[1]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        _add_study(connection, "a5", 1, "mlp", t0 + timedelta(days=1))
    with engine.begin() as connection:  # another owner may still use the name
        _add_study(connection, "b2", 2, "mlp (3)", t0)
    engine.dispose()
