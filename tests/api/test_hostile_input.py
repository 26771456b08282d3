"""Hostile input, systematically: every write endpoint x every kind of bad body answers a clear
4xx problem document (never a 500) that names the field, and leaves storage exactly as it was.
Then auth: a missing, malformed, revoked or other tenant's key never reads or changes a study, and
key checks do the same work whatever part of the key is wrong.

"Nothing changed" is checked on the database itself: every row of the owner's studies and of the
tables that hang off them (trials, candidate pools, pruner rows), before and after each request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from service.db import key_queries
from service.db.models import ApiKey, Base, Owner, Study
from service.db.session import transaction
from tests.conftest import MIXED_SPACE, new_key

JSON = {"content-type": "application/json"}
LIMIT = 1_000_000  # Settings.max_body_bytes
POINT = {"depth": 2, "cell": "skip", "lr": 0.01, "dropout": 0.2}
ONE_PARAM = {"params": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]}


# --- the world each test attacks ------------------------------------------------------------

@dataclass
class World:
    app: object
    api: TestClient
    key: str
    owner_id: int
    study: str  # MIXED_SPACE, with one complete, two running and one enqueued trial
    running: int  # a running trial of `study`, target of tell and heartbeat
    waiting: int  # the enqueued one
    zc: str  # a static-metrics study with an open, unanswered candidate pool
    token: str  # a token of that pool
    paths: dict[str, str] = field(default_factory=dict)

    def snapshot(self) -> dict[str, list[str]]:
        """Every stored row of this owner's studies and of the rows that reference them."""
        with self.app.state.context.sessions() as session:
            ids = list(session.scalars(select(Study.id).where(Study.owner_id == self.owner_id)))
            rows: dict[str, list[str]] = {}
            for table in Base.metadata.sorted_tables:
                if table.name == "studies":
                    query = select(table).where(table.c.owner_id == self.owner_id)
                elif "study_id" in table.c:
                    query = select(table).where(table.c.study_id.in_(ids))
                else:
                    continue
                rows[table.name] = sorted(repr(tuple(row)) for row in session.execute(query))
        return rows


def owner_of(app, key: str) -> int:
    with app.state.context.sessions() as session:
        owner = key_queries.resolve_owner(session, key)
    assert owner is not None
    return owner


@pytest.fixture
def world(api: TestClient, app, study: dict) -> World:
    sid = study["id"]
    done, running, _ = api.post(f"/v1/studies/{sid}/ask", json={"count": 3}).json()["trials"]
    assert api.post(f"/v1/studies/{sid}/trials/{done['id']}/tell",
                    json={"value": 0.5}).status_code == 200
    waiting = api.post(f"/v1/studies/{sid}/trials", json={"params": POINT}).json()
    zc = api.post("/v1/studies", json={"name": "zc", "space": MIXED_SPACE,
                                       "static_metrics": ["params"]}).json()
    pool = api.post(f"/v1/studies/{zc['id']}/ask").json()["candidates"]
    assert pool
    key = api.headers["Authorization"].removeprefix("Bearer ")
    w = World(app=app, api=api, key=key, owner_id=owner_of(app, key), study=sid,
              running=running["id"], waiting=waiting["id"], zc=zc["id"], token=pool[0]["token"])
    w.paths = {
        "create": "/v1/studies",
        "ask": f"/v1/studies/{sid}/ask",
        "tell": f"/v1/studies/{sid}/trials/{w.running}/tell",
        "enqueue": f"/v1/studies/{sid}/trials",
        "candidates": f"/v1/studies/{w.zc}/ask",
        "heartbeat": f"/v1/studies/{sid}/trials/{w.running}/heartbeat",
        "delete": f"/v1/studies/{sid}",
    }
    return w


# --- hostile bodies -------------------------------------------------------------------------

VALID: dict[str, Callable[[World], dict]] = {
    "create": lambda w: {"name": "fine", "space": ONE_PARAM},
    "ask": lambda w: {"count": 1},
    "tell": lambda w: {"value": 0.25},
    "enqueue": lambda w: {"params": {**POINT, "depth": 1}},
    "candidates": lambda w: {"candidates": [{"token": w.token, "static_metrics": {"params": 1}}]},
}


@dataclass(frozen=True)
class Case:
    """One request: a JSON value (``json``) or raw bytes/iterator (``raw``), and what it must
    answer: ``status`` and the field the problem must name (``detail`` mentions it too)."""

    label: str
    status: int
    field: str
    json: object = None
    raw: bytes | Callable[[], Iterator[bytes]] | None = None
    content_type: str | None = "application/json"


def deep(n: int, opener: bytes, closer: bytes, leaf: bytes = b"") -> bytes:
    return opener * n + leaf + closer * n


def streamed_oversize() -> Iterator[bytes]:  # chunked: no content-length for the early check
    yield b'{"name": "'
    for _ in range(LIMIT // 100_000 + 2):
        yield b"x" * 100_000
    yield b'"}'


def generic_cases(valid: dict) -> list[Case]:
    """What every JSON-body endpoint must refuse, whatever its schema."""
    return [
        Case("oversized (content-length)", 413, "body",
             json={**valid, "pad": "x" * (LIMIT + 1)}),
        Case("oversized (chunked, no length)", 413, "body", raw=streamed_oversize),
        Case("10k nested lists", 400, "body", raw=deep(10_000, b"[", b"]")),
        Case("10k nested objects", 400, "body", raw=deep(10_000, b'{"a":', b"}", b"1")),
        Case("truncated JSON", 422, "body", raw=json.dumps(valid).encode()[:-3]),
        Case("not JSON at all", 422, "body", raw=b"count=5&name=x"),
        Case("invalid UTF-8", 400, "body", raw=b'{"name": "\xff\xfe\xc0"}'),
        Case("number of 5000 digits", 400, "body", raw=b'{"count": 1' + b"0" * 5000 + b"}"),
        Case("JSON as text/plain", 422, "body", raw=json.dumps(valid).encode(),
             content_type="text/plain"),
        Case("JSON without content-type", 422, "body", raw=json.dumps(valid).encode(),
             content_type=None),
        Case("form-encoded", 422, "body", raw=b"count=1",
             content_type="application/x-www-form-urlencoded"),
        Case("array body", 422, "body", json=[valid]),
        Case("string body", 422, "body", json="hello"),
        Case("number body", 422, "body", json=5),
        Case("unknown top-level field", 422, "bogus", json={**valid, "bogus": 1}),
        Case("NUL-named unknown field", 422, "\x00", json={**valid, "\x00": 1}),
    ]


def surrogate(body: str) -> bytes:
    """A JSON text with a lone surrogate escape, which Python's json.dumps would not produce."""
    return body.encode()


SPECIFIC: dict[str, list[Case]] = {
    "create": [
        Case("name: wrong type", 422, "name", json={"name": 5, "space": ONE_PARAM}),
        Case("name: empty", 422, "name", json={"name": "", "space": ONE_PARAM}),
        Case("name: 257 chars", 422, "name", json={"name": "n" * 257, "space": ONE_PARAM}),
        Case("name: 100k chars", 422, "name", json={"name": "é" * 100_000, "space": ONE_PARAM}),
        Case("name: NUL", 422, "name", json={"name": "a\x00b", "space": ONE_PARAM}),
        Case("name: lone surrogate", 422, "name",
             raw=surrogate('{"name": "a\\ud800", "space": {"params": [{"name": "x", '
                           '"type": "int", "low": 1, "high": 2}]}}')),
        Case("param name: lone surrogate", 422, "space.params[0].name",
             raw=surrogate('{"name": "a", "space": {"params": [{"name": "\\udfffx", '
                           '"type": "int", "low": 1, "high": 2}]}}')),
        Case("param name: NUL", 422, "space.params[0].name",
             json={"name": "a", "space": {"params": [
                 {"name": "x\x00", "type": "int", "low": 1, "high": 2}]}}),
        Case("param name: 129 chars", 422, "space.params[0].name",
             json={"name": "a", "space": {"params": [
                 {"name": "p" * 129, "type": "int", "low": 1, "high": 2}]}}),
        Case("choice: NUL", 422, "space.params[0].choices",
             json={"name": "a", "space": {"params": [
                 {"name": "c", "type": "categorical", "choices": ["ok", "b\x00d"]}]}}),
        Case("static metric: NUL", 422, "static_metrics",
             json={"name": "a", "space": ONE_PARAM, "static_metrics": ["fl\x00ps"]}),
        Case("seed: numeric string", 422, "seed", json={"name": "a", "space": ONE_PARAM,
                                                         "seed": "7"}),
        Case("seed: true", 422, "seed", json={"name": "a", "space": ONE_PARAM, "seed": True}),
        Case("seed: 1.5", 422, "seed", json={"name": "a", "space": ONE_PARAM, "seed": 1.5}),
        Case("seed: -1", 422, "seed", json={"name": "a", "space": ONE_PARAM, "seed": -1}),
        Case("seed: 2**64", 422, "seed", json={"name": "a", "space": ONE_PARAM,
                                               "seed": 2**64}),
        Case("heartbeat: numeric string", 422, "heartbeat_timeout_s",
             json={"name": "a", "space": ONE_PARAM, "heartbeat_timeout_s": "60"}),
        Case("heartbeat: NaN", 422, "heartbeat_timeout_s",
             raw=b'{"name": "a", "space": {"params": [{"name": "x", "type": "int", "low": 1, '
                 b'"high": 2}]}, "heartbeat_timeout_s": NaN}'),
        Case("heartbeat: Infinity", 422, "heartbeat_timeout_s",
             raw=b'{"name": "a", "space": {"params": [{"name": "x", "type": "int", "low": 1, '
                 b'"high": 2}]}, "heartbeat_timeout_s": Infinity}'),
        Case("heartbeat: 0", 422, "heartbeat_timeout_s",
             json={"name": "a", "space": ONE_PARAM, "heartbeat_timeout_s": 0}),
        Case("direction: number", 422, "direction",
             json={"name": "a", "space": ONE_PARAM, "direction": 1}),
        Case("low: numeric string", 422, "space.params[0].low",
             json={"name": "a", "space": {"params": [
                 {"name": "x", "type": "float", "low": "0", "high": 1}]}}),
        Case("high: 1e400 (inf)", 422, "space.params[0].high",
             raw=b'{"name": "a", "space": {"params": [{"name": "x", "type": "float", '
                 b'"low": 0, "high": 1e400}]}}'),
        Case("log: string", 422, "space.params[0].log",
             json={"name": "a", "space": {"params": [
                 {"name": "x", "type": "float", "low": 1, "high": 2, "log": "true"}]}}),
        Case("param: unknown field", 422, "space.params[0].typo",
             json={"name": "a", "space": {"params": [
                 {"name": "x", "type": "int", "low": 1, "high": 2, "typo": 1}]}}),
        Case("space: string", 422, "space", json={"name": "a", "space": "x"}),
        Case("transfer_from: NUL id", 422, "transfer_from",
             json={"name": "a", "space": ONE_PARAM, "transfer_from": ["ab\x00"]}),
        Case("transfer_from: number", 422, "transfer_from[0]",
             json={"name": "a", "space": ONE_PARAM, "transfer_from": [5]}),
        Case("cell edge: 100k nodes", 422, "space.params[0].cell.edge",
             json={"name": "a", "space": {"params": [
                 {"name": "c", "type": "categorical", "choices": ["a", "b"],
                  "cell": {"name": "n", "edge": list(range(100_000))}}]}}),
        Case("cell edge: node 2**70", 422, "space.params[0].cell.edge[1]",
             json={"name": "a", "space": {"params": [
                 {"name": "c", "type": "categorical", "choices": ["a", "b"],
                  "cell": {"name": "n", "edge": [0, 2**70]}}]}}),
        Case("cell zero: an object", 422, "space.params[0].cell.zero",
             json={"name": "a", "space": {"params": [
                 {"name": "c", "type": "categorical", "choices": ["a", "b"],
                  "cell": {"name": "n", "edge": [0, 1], "zero": {"a": 1}}}]}}),
        Case("choices: 1025", 422, "space.params[0].choices",
             json={"name": "a", "space": {"params": [
                 {"name": "c", "type": "categorical", "choices": list(range(1025))}]}}),
    ],
    "ask": [
        Case("count: 10**9", 422, "count", json={"count": 10**9}),
        Case("count: 2**70", 422, "count", json={"count": 2**70}),
        Case("count: -1", 422, "count", json={"count": -1}),
        Case("count: 0", 422, "count", json={"count": 0}),
        Case("count: numeric string", 422, "count", json={"count": "5"}),
        Case("count: 1.0", 422, "count", json={"count": 1.0}),
        Case("count: true", 422, "count", json={"count": True}),
        Case("count: null", 422, "count", json={"count": None}),
        Case("count: NaN", 422, "count", raw=b'{"count": NaN}'),
        Case("client_id: empty", 422, "client_id", json={"client_id": ""}),
        Case("client_id: 129 chars", 422, "client_id", json={"client_id": "w" * 129}),
        Case("client_id: NUL", 422, "client_id", json={"client_id": "w\x00"}),
        Case("client_id: lone surrogate", 422, "client_id",
             raw=surrogate('{"client_id": "\\ud83d"}')),
        Case("client_id: number", 422, "client_id", json={"client_id": 7}),
    ],
    "tell": [
        Case("value: numeric string", 422, "value", json={"value": "0.5"}),
        Case("value: true", 422, "value", json={"value": True}),
        Case("value: NaN", 422, "value", raw=b'{"value": NaN}'),
        Case("value: Infinity", 422, "value", raw=b'{"value": Infinity}'),
        Case("value: -Infinity", 422, "value", raw=b'{"value": -Infinity}'),
        Case("value: 1e400 (inf)", 422, "value", raw=b'{"value": 1e400}'),
        Case("value: list", 422, "value", json={"value": [0.5]}),
        Case("state: unknown", 422, "state", json={"state": "done"}),
        Case("reason: 2001 chars", 422, "reason",
             json={"state": "infeasible", "reason": "r" * 2001}),
        Case("reason: NUL", 422, "reason", json={"state": "infeasible", "reason": "OOM\x00"}),
        Case("reason: lone surrogate", 422, "reason",
             raw=surrogate('{"state": "infeasible", "reason": "\\udc00"}')),
        Case("metric: numeric string", 422, "static_metrics.flops",
             json={"value": 1.0, "static_metrics": {"flops": "3"}}),
        Case("metric: NaN", 422, "static_metrics", raw=b'{"value": 1, "static_metrics": '
                                                       b'{"flops": NaN}}'),
        Case("metric name: lone surrogate", 422, "static_metrics",
             raw=surrogate('{"value": 1, "static_metrics": {"\\udc00": 1}}')),
        Case("metrics: 65 entries", 422, "static_metrics",
             json={"value": 1.0, "static_metrics": {f"m{i}": 1 for i in range(65)}}),
    ],
    "enqueue": [
        Case("params: string", 422, "params", json={"params": "depth=1"}),
        Case("params: list", 422, "params", json={"params": [POINT]}),
        Case("param: numeric string", 422, "params.depth", json={"params": {**POINT,
                                                                          "depth": "2"}}),
        Case("param: true for an int", 422, "params.depth", json={"params": {**POINT,
                                                                           "depth": True}}),
        Case("param: NaN", 422, "params.lr", raw=b'{"params": {"depth": 2, "cell": "skip", '
                                                 b'"lr": NaN, "dropout": 0.2}}'),
        Case("param: 1e400 (inf)", 422, "params.lr",
             raw=b'{"params": {"depth": 2, "cell": "skip", "lr": 1e400, "dropout": 0.2}}'),
        Case("param: nested list", 422, "params.depth",
             json={"params": {**POINT, "depth": [[[[2]]]]}}),
        Case("param: NUL value", 422, "params", json={"params": {**POINT, "cell": "sk\x00ip"}}),
        Case("param: NUL name", 422, "params", json={"params": {**POINT, "x\x00": 1}}),
        Case("param: lone surrogate name", 422, "params",
             raw=surrogate('{"params": {"depth": 2, "cell": "skip", "lr": 0.01, '
                           '"dropout": 0.2, "\\udc00": 1}}')),
        Case("param: unknown", 422, "params.typo", json={"params": {**POINT, "typo": 1}}),
        Case("params: 257 entries", 422, "params",
             json={"params": {f"p{i}": 1 for i in range(257)}}),
    ],
    "candidates": [
        Case("candidates: empty list", 422, "candidates", json={"candidates": []}),
        Case("candidates: 1025", 422, "candidates",
             json={"candidates": [{"token": f"t{i}"} for i in range(1025)]}),
        Case("candidates: object", 422, "candidates", json={"candidates": {"token": "t"}}),
        Case("token: empty", 422, "candidates[0].token", json={"candidates": [{"token": ""}]}),
        Case("token: 65 chars", 422, "candidates[0].token",
             json={"candidates": [{"token": "t" * 65}]}),
        Case("token: number", 422, "candidates[0].token", json={"candidates": [{"token": 5}]}),
        Case("token: NUL", 422, "candidates[0].token", json={"candidates": [{"token": "t\x00"}]}),
        Case("candidate: unknown field", 422, "candidates[0].bogus",
             json={"candidates": [{"token": "t", "bogus": 1}]}),
        Case("metric: numeric string", 422, "candidates[0].static_metrics.params",
             json={"candidates": [{"token": "t", "static_metrics": {"params": "1"}}]}),
        Case("metric: Infinity", 422, "candidates[0].static_metrics",
             raw=b'{"candidates": [{"token": "t", "static_metrics": {"params": Infinity}}]}'),
        Case("metric name: NUL", 422, "candidates[0].static_metrics",
             json={"candidates": [{"token": "t", "static_metrics": {"par\x00ams": 1}}]}),
        Case("metrics: 65 entries", 422, "candidates[0].static_metrics",
             json={"candidates": [{"token": "t",
                                   "static_metrics": {f"m{i}": 1 for i in range(65)}}]}),
        Case("count: numeric string", 422, "count",
             json={"count": "1", "candidates": [{"token": "t"}]}),
    ],
}


def send(w: World, method: str, path: str, case: Case, headers: dict | None = None):
    hdrs = dict(headers or {})
    if case.content_type is not None:
        hdrs["content-type"] = case.content_type
    if case.raw is not None:
        content = case.raw() if callable(case.raw) else case.raw
    else:
        content = json.dumps(case.json).encode()
    return w.api.request(method, path, content=content, headers=hdrs)


def check(w: World, method: str, path: str, cases: list[Case]) -> list[str]:
    """Send every case; return what went wrong (all of it, not just the first)."""
    failures = []
    before = w.snapshot()
    for case in cases:
        response = send(w, method, path, case)
        after = w.snapshot()
        problem = response.json() if response.headers.get("content-type", "").startswith(
            "application/problem+json") else None
        fields = [e["field"] for e in problem["errors"]] if problem else []
        if response.status_code != case.status:
            failures.append(f"{case.label}: status {response.status_code} "
                            f"(want {case.status}): {response.text[:200]}")
        elif problem is None or problem["status"] != case.status:
            failures.append(f"{case.label}: not a problem document: {response.text[:200]}")
        elif case.field not in problem["detail"] or (
                case.status == 422 and case.field not in fields):
            failures.append(f"{case.label}: problem does not name {case.field!r}: {problem}")
        if after != before:
            failures.append(f"{case.label}: storage changed")
            before = after
    return failures


@pytest.mark.parametrize("endpoint", sorted(SPECIFIC))
def test_hostile_bodies_are_4xx_naming_the_field_and_store_nothing(world: World,
                                                                   endpoint: str) -> None:
    valid = VALID[endpoint](world)
    cases = generic_cases(valid) + SPECIFIC[endpoint]
    failures = check(world, "POST", world.paths[endpoint], cases)
    assert not failures, "\n".join(failures)
    # The same endpoint and resources do accept a sound body: the refusals above were the body's.
    control = world.api.post(world.paths[endpoint], json=valid)
    assert control.status_code in (200, 201), control.text
    if endpoint == "candidates":
        assert len(control.json()["trials"]) == 1  # the pool was still open


BODYLESS = {"heartbeat": "POST", "delete": "DELETE"}


@pytest.mark.parametrize("endpoint", sorted(BODYLESS))
def test_bodyless_endpoints_refuse_oversized_bodies_and_ignore_the_rest(world: World,
                                                                       endpoint: str) -> None:
    method, path = BODYLESS[endpoint], world.paths[endpoint]
    failures = check(world, method, path, [
        Case("oversized (content-length)", 413, "body", json={"pad": "x" * (LIMIT + 1)})])
    assert not failures, "\n".join(failures)
    # Anything else in the body is never parsed: the request does what it does without one.
    junk = Case("junk", 0, "", raw=deep(10_000, b"[", b"]") + b"\xff\x00")
    response = send(world, method, path, junk)
    assert response.status_code == (200 if endpoint == "heartbeat" else 204), response.text


PATH_CASES = [  # (label, study id, trial id, status, field)
    ("study id: NUL", "ab%00cd", None, 422, "study_id"),
    ("study id: 65 chars", "s" * 65, None, 422, "study_id"),
    ("study id: invalid UTF-8 escape", "%ED%A0%80", None, 404, "study_id"),
    ("study id: unicode, unknown", "étude🚀", None, 404, "study_id"),
    ("trial id: negative", None, "-1", 422, "trial_id"),
    ("trial id: 2**63", None, str(2**63), 422, "trial_id"),
    ("trial id: 10**30", None, str(10**30), 422, "trial_id"),
    ("trial id: float", None, "1.5", 422, "trial_id"),
    ("trial id: word", None, "one", 422, "trial_id"),
    ("trial id: unknown", None, "999999999", 404, "trial_id"),
]
ROUTES = {  # endpoint -> (method, path template, body)
    "ask": ("POST", "/v1/studies/{s}/ask", {"count": 1}),
    "enqueue": ("POST", "/v1/studies/{s}/trials", {"params": POINT}),
    "tell": ("POST", "/v1/studies/{s}/trials/{t}/tell", {"value": 0.1}),
    "heartbeat": ("POST", "/v1/studies/{s}/trials/{t}/heartbeat", None),
    "delete": ("DELETE", "/v1/studies/{s}", None),
    "get study": ("GET", "/v1/studies/{s}", None),
    "get trial": ("GET", "/v1/studies/{s}/trials/{t}", None),
}


def test_hostile_path_parameters_are_4xx_on_every_route(world: World) -> None:
    failures = []
    before = world.snapshot()
    for endpoint, (method, template, body) in ROUTES.items():
        for label, sid, tid, status, name in PATH_CASES:
            if tid is not None and "{t}" not in template:
                continue
            path = template.format(s=sid if sid is not None else world.study,
                                   t=tid if tid is not None else world.running)
            response = world.api.request(method, path, json=body)
            fields = [e["field"] for e in response.json()["errors"]]
            if response.status_code != status or name not in fields:
                failures.append(f"{endpoint} {label}: {response.status_code} {response.text}")
    assert world.snapshot() == before
    assert not failures, "\n".join(failures)


def test_list_filter_with_nul_is_422(world: World) -> None:
    response = world.api.get("/v1/studies", params={"name": "mi\x00xed"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "name"
    assert world.api.get("/v1/studies", params={"name": "n" * 257}).status_code == 422


def test_valid_unicode_round_trips_everywhere(world: World) -> None:
    """What is refused above is NUL and lone surrogates, not unicode: astral-plane, combining,
    right-to-left and zero-width characters at the length limits are stored and read back."""
    name = "🚀" * 256  # 256 characters, 1 KiB of UTF-8: the limit counts characters
    param = "é\u0301_学习率_\u200d_שלום_" + "块" * 114  # combining, ZWJ, RTL, CJK: 128 chars
    assert len(param) == 128
    choice = "👩🏽‍🔬"
    space = {"params": [{"name": param, "type": "float", "low": 0.0, "high": 1.0},
                        {"name": "ключ", "type": "categorical", "choices": [choice, "\u00a0"]}]}
    created = world.api.post("/v1/studies", json={"name": name, "space": space})
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    got = world.api.get(f"/v1/studies/{sid}").json()
    assert got["name"] == name
    assert [p["name"] for p in got["space"]["params"]] == [param, "ключ"]
    assert got["space"]["params"][1]["choices"] == [choice, "\u00a0"]
    listed = world.api.get("/v1/studies", params={"name": name}).json()["studies"]
    assert [s["id"] for s in listed] == [sid]
    client = "воркер-" + "😀" * 121  # 128 characters
    (trial,) = world.api.post(f"/v1/studies/{sid}/ask",
                              json={"client_id": client}).json()["trials"]
    (again,) = world.api.post(f"/v1/studies/{sid}/ask",
                              json={"client_id": client}).json()["trials"]
    assert again["id"] == trial["id"]  # the client id was stored and matched exactly
    reason = "OOM: ошибка 💥 " * 100
    told = world.api.post(f"/v1/studies/{sid}/trials/{trial['id']}/tell",
                          json={"state": "infeasible", "reason": reason})
    assert told.status_code == 200 and told.json()["reason"] == reason
    enqueued = world.api.post(f"/v1/studies/{sid}/trials",
                              json={"params": {param: 0.5, "ключ": choice}})
    assert enqueued.status_code == 201, enqueued.text
    assert world.api.get(f"/v1/studies/{sid}/trials/{enqueued.json()['id']}").json()[
        "params"] == {param: 0.5, "ключ": choice}


# --- auth -----------------------------------------------------------------------------------

def revoked_key_of(w: World) -> str:
    """A second key of the study's own owner, revoked."""
    with transaction(w.app.state.context.sessions) as session:
        owner = session.get(Owner, w.owner_id)
        assert owner is not None
        made = key_queries.create_key(session, owner.name, "revoked")
        assert key_queries.revoke_key(session, made.prefix)
    return made.secret


def bad_credentials(w: World) -> dict[str, dict]:
    """label -> headers that must get a 401."""
    prefix = w.key.split("_")[1]
    return {
        "missing": {},
        "empty": {"Authorization": ""},
        "scheme only": {"Authorization": "Bearer"},
        "scheme and space": {"Authorization": "Bearer   "},
        "basic": {"Authorization": "Basic eHl6OnBhc3M="},
        "garbage": {"Authorization": "garbage"},
        "key without scheme": {"Authorization": w.key},
        "token scheme": {"Authorization": f"Token {w.key}"},
        "key plus junk": {"Authorization": f"Bearer {w.key} extra"},
        "wrong secret, real key id": {"Authorization": f"Bearer dyesp_{prefix}_{'A' * 43}"},
        "truncated key": {"Authorization": f"Bearer {w.key[:-1]}"},
        "unknown key id": {"Authorization": f"Bearer dyesp_{'0' * 12}_{'A' * 43}"},
        "key id only": {"Authorization": f"Bearer dyesp_{prefix}"},
        "very long key": {"Authorization": f"Bearer dyesp_{prefix}_{'A' * 100_000}"},
        "very long key id": {"Authorization": f"Bearer dyesp_{'a' * 10_000}_x"},
        "non-ASCII key": {"Authorization": f"Bearer dyesp_{prefix}_ключ🔑".encode()},
        "NUL in key id": {"Authorization": "Bearer dyesp_ab\x00cd_x"},
        "SQL in key id": {"Authorization": "Bearer dyesp_' OR '1'='1_x"},
        "revoked, same owner": {"Authorization": f"Bearer {revoked_key_of(w)}"},
    }


def auth_routes(w: World) -> list[tuple[str, str, object]]:
    s, t = w.study, w.running
    return [
        ("GET", f"/v1/studies/{s}", None),
        ("GET", f"/v1/studies/{s}/best", None),
        ("GET", f"/v1/studies/{s}/trials", None),
        ("GET", f"/v1/studies/{s}/trials/{t}", None),
        ("GET", f"/v1/studies/{s}/trials.csv", None),
        ("GET", f"/v1/studies/{s}/pruner", None),
        ("POST", f"/v1/studies/{s}/ask", {"count": 1}),
        ("POST", f"/v1/studies/{s}/trials", {"params": POINT}),
        ("POST", f"/v1/studies/{s}/trials/{t}/tell", {"value": 0.1}),
        ("POST", f"/v1/studies/{s}/trials/{t}/heartbeat", None),
        ("POST", f"/v1/studies/{w.zc}/ask", {"candidates": [{"token": w.token}]}),
        ("DELETE", f"/v1/studies/{s}", None),
    ]


def test_bad_credentials_are_401_on_every_route_and_change_nothing(world: World) -> None:
    routes = [*auth_routes(world), ("GET", "/v1/studies", None),
              ("POST", "/v1/studies", {"name": "intruder", "space": ONE_PARAM})]
    failures = []
    bare = TestClient(world.app)  # no default Authorization header (the app is already started)
    before = world.snapshot()
    for label, headers in bad_credentials(world).items():
        for method, path, body in routes:
            response = bare.request(method, path, json=body, headers=headers)
            ok = (response.status_code == 401
                  and response.headers.get("www-authenticate") == "Bearer"
                  and response.headers["content-type"].startswith("application/problem+json")
                  and world.study not in response.text and "mixed" not in response.text)
            if not ok:
                failures.append(f"{label}: {method} {path}: {response.status_code} "
                                f"{response.text[:150]}")
    assert world.snapshot() == before
    assert not failures, "\n".join(failures)
    assert world.api.get(f"/v1/studies/{world.study}").status_code == 200  # the real key works


def test_another_tenants_key_gets_404_exactly_like_a_missing_study(world: World) -> None:
    other = {"Authorization": f"Bearer {new_key(world.app)}"}
    before = world.snapshot()
    failures = []
    for method, path, body in auth_routes(world):
        response = world.api.request(method, path, json=body, headers=other)
        # The same request for an id that does not exist at all must read identically.
        ghost = "0" * 32
        twin = world.api.request(method, path.replace(world.study, ghost)
                                 .replace(world.zc, ghost), json=body, headers=other)
        if response.status_code != 404 or \
                response.text != twin.text.replace(ghost, world.zc if world.zc in path
                                                   else world.study):
            failures.append(f"{method} {path}: {response.status_code} {response.text[:150]} "
                            f"vs {twin.text[:150]}")
    assert world.snapshot() == before
    assert not failures, "\n".join(failures)
    listed = world.api.get("/v1/studies", headers=other).json()["studies"]
    assert listed == []


# --- constant-time key checks ---------------------------------------------------------------

@dataclass
class Work:
    compares: list[tuple[int, int]] = field(default_factory=list)
    hashes: int = 0
    queries: int = 0


def test_every_key_check_hashes_and_compares_once_whatever_is_wrong(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The structural half of "constant time" (the timed half is benchmarks/auth_timing.py): a
    key is checked by one SHA-256 of what was sent and one ``hmac.compare_digest`` against a
    64-character digest, for a valid, wrong, unknown, revoked or malformed key alike. A key id
    that could exist costs one lookup whether or not it does; a malformed one skips the lookup,
    which tells the caller only what it already knows (what it sent)."""
    work = Work()
    real_compare, real_hash = hmac.compare_digest, key_queries.secret_digest

    def compare(a: str, b: str) -> bool:
        work.compares.append((len(a), len(b)))
        return real_compare(a, b)

    def sha(secret: str) -> str:
        work.hashes += 1
        return real_hash(secret)

    monkeypatch.setattr(key_queries.hmac, "compare_digest", compare)
    monkeypatch.setattr(key_queries, "secret_digest", sha)
    engine = world.app.state.engine

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        work.queries += "FROM api_keys" in statement  # not SQLite's BEGIN IMMEDIATE

    event.listen(engine, "before_cursor_execute", count)
    prefix = world.key.split("_")[1]
    keys = {  # key -> (owner it resolves to, lookups it costs)
        world.key: (world.owner_id, 1),
        f"dyesp_{prefix}_{'A' * 43}": (None, 1),
        world.key[:-1] + ("B" if world.key[-1] != "B" else "C"): (None, 1),
        f"dyesp_{'f' * 12}_{'A' * 43}": (None, 1),
        revoked_key_of(world): (None, 1),
        "not-a-key": (None, 0),
        "dyesp_short_x": (None, 0),
        f"dyesp_{'a' * 10_000}_x": (None, 0),
        "": (None, 0),
    }
    try:
        for key, (owner, lookups) in keys.items():
            work.compares.clear()
            work.hashes = work.queries = 0
            with world.app.state.context.sessions() as session:
                assert key_queries.resolve_owner(session, key) == owner, key[:40]
            assert work.compares == [(64, 64)], key[:40]
            assert work.hashes == 1, key[:40]
            assert work.queries == lookups, key[:40]
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # The stored form is the digest, never the key: a database leak gives no usable key.
    with world.app.state.context.sessions() as session:
        stored = session.scalars(select(ApiKey.key_hash)).all()
    assert hashlib.sha256(world.key.encode()).hexdigest() in stored
    assert world.key not in stored
