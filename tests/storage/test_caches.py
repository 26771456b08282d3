"""Every per-process cache (service/caches) is bounded: past its size the least recently used
study goes, and a study evicted is read again, exactly, on its next use."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from fastapi.testclient import TestClient

from service.app import create_app
from service.caches.history import HistoryCache
from service.caches.priors import PriorStore
from service.caches.pruners import PrunerStore
from service.caches.spaces import SpaceCache
from service.db.models import PrunerVersion, Study
from service.db.session import transaction
from service.engine.pruner import PrunerModel
from tests.conftest import MIXED_SPACE, make_settings, new_key

SPACE = {"params": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]}


@contextmanager
def _studies(database_url: str, n: int, trials: int) -> Iterator[tuple]:
    """An app, a client of it and ``n`` studies with ``trials`` told results each (value = trial
    number)."""
    app = create_app(make_settings(database_url))
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {new_key(app)}"
        ids = []
        for i in range(n):
            response = client.post("/v1/studies", json={"name": f"s{i}", "space": SPACE})
            assert response.status_code == 201, response.text
            sid = response.json()["id"]
            for _ in range(trials):
                (trial,) = client.post(f"/v1/studies/{sid}/ask").json()["trials"]
                client.post(f"/v1/studies/{sid}/trials/{trial['id']}/tell",
                            json={"value": float(trial["number"])})
            ids.append(sid)
        yield app, client, ids


def test_history_cache_is_bounded_and_reloads_an_evicted_study(database_url: str) -> None:
    with _studies(database_url, 3, trials=4) as (app, _, ids):
        cache = HistoryCache(max_studies=2)
        with app.state.context.sessions() as session:
            first = cache.load(session, ids[0], "minimize")
            for sid in ids[1:]:
                cache.load(session, sid, "minimize")
            assert len(cache) == 2  # ids[0], the least recently used, went
            again = cache.load(session, ids[0], "minimize")
        assert [(t.number, t.value, t.state) for t in again.trials] == \
            [(t.number, t.value, t.state) for t in first.trials]
        assert [t.value for t in again.trials] == [0.0, 1.0, 2.0, 3.0]
        assert again.seen == first.seen and len(cache) == 2


def test_history_cache_keeps_the_recently_used_study(database_url: str) -> None:
    with _studies(database_url, 3, trials=1) as (app, _, ids):
        cache = HistoryCache(max_studies=2)
        with app.state.context.sessions() as session:
            cache.load(session, ids[0], "minimize")
            cache.load(session, ids[1], "minimize")
            cache.load(session, ids[0], "minimize")  # now ids[1] is the least recently used
            cache.load(session, ids[2], "minimize")
        assert cache._entries.keys() == [ids[0], ids[2]]


def test_prior_store_is_bounded_and_rebuilds_an_evicted_prior(database_url: str) -> None:
    with _studies(database_url, 1, trials=5) as (app, client, (source,)):
        targets = [client.post("/v1/studies", json={"name": f"t{i}", "space": SPACE,
                                                    "transfer_from": [source]}).json()["id"]
                   for i in range(2)]
        store = PriorStore(max_studies=1)
        with app.state.context.sessions() as session:
            studies = [session.get(Study, sid) for sid in targets]
            space = app.state.context.spaces.get(studies[0])
            first = store.get(session, studies[0], space)
            assert store.get(session, studies[0], space) is first  # cached
            store.get(session, studies[1], space)
            assert len(store) == 1
            again = store.get(session, studies[0], space)
        assert again is not first and first is not None and again is not None
        assert again.size == first.size == 5
        assert [s.configs for s in again.studies] == [s.configs for s in first.studies]
        assert np.array_equal(again.studies[0].scores, first.studies[0].scores)


def _model(n_features: int, seed: int) -> PrunerModel:
    rng = np.random.default_rng(seed)
    sizes = [n_features, 4, 1]
    members = tuple(
        tuple((rng.normal(size=(a, b)).astype(np.float32), rng.normal(size=b).astype(np.float32))
              for a, b in itertools.pairwise(sizes))
        for _ in range(2))
    return PrunerModel(members, np.zeros(n_features), np.ones(n_features), f"fp{seed}", (), 5)


def test_pruner_store_is_bounded_and_reloads_an_evicted_model(database_url: str) -> None:
    with _studies(database_url, 2, trials=0) as (app, _, ids):
        models = {sid: _model(3, seed) for seed, sid in enumerate(ids)}
        with transaction(app.state.context.sessions) as session:
            for sid, model in models.items():
                session.add(PrunerVersion(study_id=sid, version=1, weights=model.to_bytes(),
                                          fingerprint=model.fingerprint, n_train=5, metrics={},
                                          device="cpu", seconds=0.1, active=True))
        store = PrunerStore(max_studies=1)
        X = np.random.default_rng(9).normal(size=(6, 3))
        with app.state.context.sessions() as session:
            first = store.active(session, ids[0])
            assert store.active(session, ids[0]) is first  # cached
            store.active(session, ids[1])
            assert len(store) == 1
            again = store.active(session, ids[0])
        assert first is not None and again is not None and again is not first
        assert again.fingerprint == models[ids[0]].fingerprint
        for got, want in zip(again.predict(X), models[ids[0]].predict(X), strict=True):
            assert np.allclose(got, want)


def test_space_cache_is_bounded_and_reparses_an_evicted_space() -> None:
    cache = SpaceCache(max_studies=2)
    studies = [Study(id=f"s{i}", space=MIXED_SPACE if i == 0 else SPACE) for i in range(3)]
    first = cache.get(studies[0])
    assert cache.get(studies[0]) is first  # cached
    for study in studies[1:]:
        cache.get(study)
    assert len(cache) == 2
    again = cache.get(studies[0])
    assert again is not first and again.to_dict() == first.to_dict()


def test_verified_keys_are_bounded_expire_and_remember_nothing_at_ttl_zero() -> None:
    from service.caches.api_keys import VerifiedKeys

    now = [0.0]
    keys = VerifiedKeys(ttl_s=5.0, max_keys=3, clock=lambda: now[0])
    for i in range(4):
        keys.remember(f"digest{i}", i)
    assert keys.owner("digest0") is None  # the least recently used went
    assert [keys.owner(f"digest{i}") for i in (1, 2, 3)] == [1, 2, 3]
    now[0] = 4.999
    assert keys.owner("digest3") == 3
    now[0] = 5.0
    assert keys.owner("digest3") is None  # trusted for ttl_s, not a moment longer
    off = VerifiedKeys(ttl_s=0, clock=lambda: now[0])
    off.remember("digest", 7)
    assert off.owner("digest") is None
