"""The pruner report's trust, read from the newest finished trials only, equals
``measure_trust`` over the whole history (what it read before), however the predictions are
spread among the trials."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import create_engine

from service.db import study_queries, trial_queries
from service.db.history import to_observation
from service.db.models import Base, Owner, Trial
from service.db.session import make_sessionmaker
from service.engine.history import History
from service.engine.trust import measure_trust
from service.usecases.study_lifecycle import _measured_trust

STATES = ["complete"] * 6 + ["infeasible", "failed", "stopped", "running"]


@pytest.mark.parametrize("seed", range(12))
def test_bounded_trust_equals_full_history(seed: int) -> None:
    rng = random.Random(seed)
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    share = rng.choice([0.0, 0.02, 0.2, 0.9])  # how many trials carry a prediction
    with sessions() as session:
        session.add(Owner(id=1, name="local"))
        study = study_queries.create_study(
            session, 1, "s", direction=rng.choice(["minimize", "maximize"]),
            space={"params": []}, seed=0, heartbeat_timeout_s=60.0)
        for number in range(rng.choice([5, 300, 1500])):
            state = rng.choice(STATES)
            value = rng.gauss(0, 1) if state in ("complete", "stopped") else None
            predicted = rng.random() if rng.random() < share else None
            trial_queries.add_trial(session, study.id, number, state=state, params={},
                                    value=value, proposal={"strategy": "surrogate",
                                                           "exploration": 0.5,
                                                           "predicted": predicted})
        session.flush()
        rows = list(trial_queries.iter_all(session, study.id))
        full = measure_trust(History(study.direction, tuple(to_observation(r) for r in rows)))
        assert _measured_trust(session, study) == full
        assert session.query(Trial).count() == len(rows)
    engine.dispose()
