"""Migration 0009 stores each report's rung: reports stored before it were judged only at exact
rung steps, so those rows get their step as their rung and every other row none, per study's
fidelity, on SQLite and PostgreSQL, from a real 0008 database; the rung indexes then serve the
queries a report and a history load make."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from alembic import command
from sqlalchemy import create_engine, inspect, text

from service.db import migrate, report_queries
from service.db.session import make_sessionmaker

SPACE = '{"params": [{"name": "x", "type": "float", "low": 0, "high": 1}]}'
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _study(connection, study_id: str, fidelity: dict | None) -> None:
    connection.execute(text(
        "INSERT INTO studies (id, owner_id, name, direction, space, seed, heartbeat_timeout_s, "
        "static_metrics, transfer_from, next_number, revision, created_at, fidelity) VALUES "
        "(:id, 1, :id, 'minimize', :space, 0, 300.0, '[]', '[]', 0, 0, :t, :fidelity)"),
        {"id": study_id, "space": SPACE, "t": T0,
         "fidelity": None if fidelity is None else json.dumps(fidelity)})


def _trial_with_curve(connection, trial_id: int, study_id: str, steps: list[int]) -> None:
    connection.execute(text(
        "INSERT INTO trials (id, study_id, number, state, params, static_metrics, revision, "
        "created_at, value, last_step) VALUES "
        "(:id, :study, :id, 'complete', '{\"x\": 0.5}', '{}', 1, :t, 0.1, :last)"),
        {"id": trial_id, "study": study_id, "t": T0, "last": max(steps)})
    for step in steps:
        connection.execute(text(
            "INSERT INTO trial_reports (study_id, trial_id, step, value, created_at) VALUES "
            "(:study, :trial, :step, :value, :t)"),
            {"study": study_id, "trial": trial_id, "step": step, "value": step / 100, "t": T0})


def test_upgrade_gives_exact_rung_steps_their_rung_and_the_rung_queries_read_them(
        fresh_url: str) -> None:
    engine = create_engine(fresh_url)
    migrate.upgrade(engine, "0008")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO owners (id, name, created_at) VALUES "
                                "(1, 'alice', :t)"), {"t": T0})
        _study(connection, "epochs", {"name": "epoch", "min": 1, "max": 52})  # rungs 1 3 9 27
        _study(connection, "halves", {"name": "step", "min": 2, "max": 20})  # rungs 2 6 18
        _study(connection, "plain", None)
        _trial_with_curve(connection, 1, "epochs", [1, 2, 3, 4, 9, 30])
        _trial_with_curve(connection, 2, "halves", [1, 2, 3, 6, 9, 18])
        _trial_with_curve(connection, 3, "plain", [1, 3, 9])
    migrate.upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT trial_id, step, rung FROM trial_reports ORDER BY trial_id, step")).all()
        indexes = {ix["name"] for ix in inspect(connection).get_indexes("trial_reports")}
    rungs = {(trial, step): rung for trial, step, rung in rows}
    assert [s for (t, s), r in rungs.items() if t == 1 and r == s] == [1, 3, 9]
    assert [s for (t, s), r in rungs.items() if t == 2 and r == s] == [2, 6, 18]
    assert all(r is None or r == s for (_, s), r in rungs.items())
    assert all(r is None for (t, _), r in rungs.items() if t == 3)  # no fidelity: no rungs
    assert {"ix_trial_reports_study_rung_id", "ix_trial_reports_trial_rung"} <= indexes
    assert "ix_trial_reports_study_step_id" not in indexes
    with make_sessionmaker(engine)() as session:
        assert report_queries.values_at(session, "epochs", 3, other_than=0, limit=10) == [0.03]
        assert report_queries.values_at(session, "epochs", 2, other_than=0, limit=10) == []
        assert report_queries.rung_points(session, [1, 2, 3]) == {
            1: [(1, 0.01), (3, 0.03), (9, 0.09)], 2: [(2, 0.02), (6, 0.06), (18, 0.18)]}
    config = migrate.alembic_config()
    with engine.connect() as connection:  # and back: the step index returns, the column goes
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
        connection.commit()
    with engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("trial_reports")}
        indexes = {ix["name"] for ix in inspect(connection).get_indexes("trial_reports")}
        assert connection.execute(text("SELECT count(*) FROM trial_reports")).scalar() == 15
    assert "rung" not in columns and "ix_trial_reports_study_step_id" in indexes
    engine.dispose()
