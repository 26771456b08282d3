"""Server processes starting together on a fresh database all make the local owner: the one that
loses the race must read the winner's row, not fail its start (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import uuid

from service.db import key_queries
from service.db.session import transaction


def test_two_writers_creating_one_owner_get_the_same_row(app, api) -> None:  # api: migrated
    sessions = app.state.context.sessions
    name = f"race-{uuid.uuid4().hex[:8]}"
    got: dict[str, int] = {}
    errors: list[BaseException] = []
    first_inserted = threading.Event()

    def second() -> None:
        try:
            first_inserted.wait(30)
            with transaction(sessions) as session:  # waits on the first one's uncommitted row
                got["second"] = key_queries.get_or_create_owner(session, name).id
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    thread = threading.Thread(target=second)
    thread.start()
    with transaction(sessions) as session:
        got["first"] = key_queries.get_or_create_owner(session, name).id
        first_inserted.set()
        thread.join(0.5)  # let the second writer reach the row (it cannot finish before us)
    thread.join(60)  # a hang detector only
    assert not thread.is_alive() and errors == []
    assert got["first"] == got["second"]
    with sessions() as session:
        assert key_queries.get_or_create_owner(session, name).id == got["first"]
