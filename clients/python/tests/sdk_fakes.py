"""Fakes for SDK tests that need no server: a scripted transport and an in-memory fake server.

The fake server implements just enough of docs/api-contract.md (ask with client_id, idempotent
tell, heartbeats, paging) to drive the SDK through httpx2.MockTransport, so these tests exercise
the real httpx2 code path. Behaviour against the real server is pinned by
tests/test_sdk_integration.py at the repository root.
"""

from __future__ import annotations

import json
import random
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

import httpx2

API_KEY = "test-key"
SPACE = [
    {"name": "x", "type": "float", "low": -5.0, "high": 5.0},
    {"name": "depth", "type": "int", "low": 1, "high": 4},
    {"name": "act", "type": "categorical", "choices": ["relu", "gelu"]},
]


class ScriptedResponse:
    """A minimal response: what the SDK reads, nothing more (DESIGN rule 9's duck type)."""

    def __init__(self, status_code: int, body: Any = None, headers: dict[str, str] | None = None,
                 text: str | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}
        self._body = body
        self.text = text if text is not None else json.dumps(body)

    def json(self) -> Any:
        if self._body is None:
            raise ValueError("no JSON body")
        return self._body


class ScriptedHTTP:
    """Plays back a script of responses or exceptions and records every request."""

    def __init__(self, *script: ScriptedResponse | BaseException) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.closed = False

    def request(self, method: str, url: str, **kwargs: Any) -> ScriptedResponse:
        self.calls.append((method, url, kwargs))
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.closed = True


def problem(status: int, detail: str = "boom", **headers: str) -> ScriptedResponse:
    return ScriptedResponse(status, {"type": "about:blank", "title": "Error", "status": status,
                                     "detail": detail, "errors": []}, headers=headers)


def study_json(**overrides: Any) -> dict[str, Any]:
    body = {"id": "s1", "name": "toy", "direction": "minimize", "space": {"params": SPACE},
            "seed": 0, "heartbeat_timeout_s": 300.0, "static_metrics": [],
            "created_at": "2026-11-23T10:00:00Z", "n_trials": 0, "trials_by_state": {},
            "best_trial": None}
    body.update(overrides)
    return body


def trial_json(**overrides: Any) -> dict[str, Any]:
    body = {"id": 1, "number": 0, "study_id": "s1", "state": "running", "params": {"x": 1.0},
            "value": None, "reason": None, "static_metrics": {}, "proposal": None,
            "created_at": "2026-11-23T10:00:00Z", "started_at": "2026-11-23T10:00:00Z",
            "heartbeat_at": "2026-11-23T10:00:00Z", "completed_at": None, "intermediate": [],
            "last_step": None}
    body.update(overrides)
    return body


class FakeServer:
    """An in-memory DyESP server speaking the v1 contract, with injectable faults."""

    ROUTES = [
        ("POST", r"/v1/studies", "create"),
        ("GET", r"/v1/studies", "list"),
        ("GET", r"/v1/studies/(?P<sid>\w+)", "get"),
        ("DELETE", r"/v1/studies/(?P<sid>\w+)", "delete"),
        ("POST", r"/v1/studies/(?P<sid>\w+)/ask", "ask"),
        ("POST", r"/v1/studies/(?P<sid>\w+)/trials", "enqueue"),
        ("GET", r"/v1/studies/(?P<sid>\w+)/trials", "trials"),
        ("POST", r"/v1/studies/(?P<sid>\w+)/trials/(?P<tid>\d+)/tell", "tell"),
        ("POST", r"/v1/studies/(?P<sid>\w+)/trials/(?P<tid>\d+)/heartbeat", "heartbeat"),
        ("POST", r"/v1/studies/(?P<sid>\w+)/trials/(?P<tid>\d+)/report", "report"),
        ("GET", r"/v1/studies/(?P<sid>\w+)/trials/(?P<tid>\d+)/curve", "curve"),
    ]

    def __init__(self) -> None:
        self.studies: dict[str, dict[str, Any]] = {}
        self.trials: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, Any]] = []  # (route, path, body)
        self.faults: dict[str, list[int | BaseException]] = {}
        self.lock = threading.Lock()
        self.rng = random.Random(0)
        self.next_trial_id = 1
        # report's verdict: (trial, step, value) -> a stop reason, or None to go on
        self.stop_rule: Callable[[dict[str, Any], int, float], str | None] = lambda t, s, v: None

    def inject(self, route: str, *outcomes: int | BaseException) -> None:
        """The next calls of ``route`` fail with these statuses or raise these exceptions."""
        self.faults.setdefault(route, []).extend(outcomes)

    def count(self, route: str) -> int:
        return sum(1 for name, _, _ in self.requests if name == route)

    def bodies(self, route: str) -> list[Any]:
        return [body for name, _, body in self.requests if name == route]

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        route = self._route(request.method, path)
        if route is None:
            return self._problem(404, f"no route {request.method} {path}")
        name, args = route
        with self.lock:
            self.requests.append((name, path, body))
            faults = self.faults.get(name)
            if faults:
                fault = faults.pop(0)
                if isinstance(fault, BaseException):
                    raise fault
                return self._problem(fault, "injected fault", {"Retry-After": "0"})
            if request.headers.get("Authorization") != f"Bearer {API_KEY}":
                return self._problem(401, "missing or unknown API key")
            params = dict(request.url.params)
            if "sid" in args and args["sid"] not in self.studies:
                return self._problem(404, f"study {args['sid']!r} does not exist",
                                     field="study_id")
            return getattr(self, f"_{name}")(body, params, **args)

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        for route_method, pattern, name in self.ROUTES:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                return name, match.groupdict()
        return None

    # --- routes -------------------------------------------------------------------------------

    def _create(self, body: dict[str, Any], params: dict[str, str]) -> httpx2.Response:
        if not body["space"].get("params"):
            return self._problem(422, "space.params: must not be empty", field="space.params")
        sid = uuid.uuid4().hex
        self.studies[sid] = {"id": sid, "name": body["name"],
                             "direction": body.get("direction", "minimize"),
                             "space": body["space"], "seed": body.get("seed") or 0,
                             "heartbeat_timeout_s": body.get("heartbeat_timeout_s") or 300.0,
                             "static_metrics": [], "created_at": "2026-11-23T10:00:00Z",
                             "fidelity": body.get("fidelity")}
        self.trials[sid] = []
        return httpx2.Response(201, json=self._study(sid))

    def _list(self, body: Any, params: dict[str, str]) -> httpx2.Response:
        sids = [s for s, v in self.studies.items() if params.get("name") in (None, v["name"])]
        return httpx2.Response(200, json={"studies": [self._study(s) for s in sids]})

    def _get(self, body: Any, params: dict[str, str], sid: str) -> httpx2.Response:
        return httpx2.Response(200, json=self._study(sid))

    def _delete(self, body: Any, params: dict[str, str], sid: str) -> httpx2.Response:
        del self.studies[sid], self.trials[sid]
        return httpx2.Response(204)

    def _ask(self, body: dict[str, Any] | None, params: dict[str, str],
             sid: str) -> httpx2.Response:
        body = body or {}
        count, client_id = body.get("count", 1), body.get("client_id")
        trials = self.trials[sid]
        if client_id is not None:
            mine = [t for t in trials if t["state"] == "running" and t["client_id"] == client_id]
            if mine:
                return httpx2.Response(200, json={"trials": [self._out(t) for t in mine[:count]]})
        handed = [t for t in trials if t["state"] == "waiting"][:count]
        while len(handed) < count:
            handed.append(self._new_trial(sid, self._sample(sid), "running"))
        for trial in handed:
            trial.update(state="running", client_id=client_id)
        return httpx2.Response(200, json={"trials": [self._out(t) for t in handed]})

    def _enqueue(self, body: dict[str, Any], params: dict[str, str], sid: str) -> httpx2.Response:
        return httpx2.Response(201, json=self._out(self._new_trial(sid, body["params"], "waiting")))

    def _trials(self, body: Any, params: dict[str, str], sid: str) -> httpx2.Response:
        rows = [t for t in self.trials[sid] if params.get("state") in (None, t["state"])]
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 100))
        page = rows[offset:offset + limit]
        return httpx2.Response(200, json={"trials": [self._out(t) for t in page],
                                          "total": len(rows), "offset": offset, "limit": limit})

    def _tell(self, body: dict[str, Any], params: dict[str, str], sid: str,
              tid: str) -> httpx2.Response:
        trial = self._trial(sid, int(tid))
        if trial is None:
            return self._problem(404, f"trial {tid} does not exist", field="trial_id")
        state = body.get("state") or "complete"
        if state == "stopped":
            if trial["last_step"] is None and trial["state"] == "running":
                return self._problem(409, f"trial {tid} reported nothing to stop at")
            body = {**body, "value": trial["points"][-1][1] if trial.get("points") else None}
        result = (state, body.get("value"), body.get("reason"))
        if trial["state"] in ("complete", "failed", "infeasible", "stopped"):
            if (trial["state"], trial["value"], trial["reason"]) != result:
                return self._problem(409, f"trial {tid} is already {trial['state']}")
            return httpx2.Response(200, json=self._out(trial))
        trial.update(state=state, value=body.get("value"), reason=body.get("reason"),
                     completed_at="2026-11-23T10:01:00Z")
        return httpx2.Response(200, json=self._out(trial))

    def _heartbeat(self, body: Any, params: dict[str, str], sid: str,
                   tid: str) -> httpx2.Response:
        trial = self._running_trial(sid, tid)
        if isinstance(trial, httpx2.Response):
            return trial
        return httpx2.Response(200, json=self._out(trial))

    def _running_trial(self, sid: str, tid: str) -> dict[str, Any] | httpx2.Response:
        """The running trial, or the problem (404, 409) the server answers for any other."""
        trial = self._trial(sid, int(tid))
        if trial is None:
            return self._problem(404, f"trial {tid} does not exist", field="trial_id")
        if trial["state"] != "running":
            return self._problem(409, f"trial {tid} is {trial['state']}, not running")
        return trial

    def _report(self, body: dict[str, Any], params: dict[str, str], sid: str,
                tid: str) -> httpx2.Response:
        trial = self._running_trial(sid, tid)
        if isinstance(trial, httpx2.Response):
            return trial
        step, value = body["step"], body["value"]
        points = trial.setdefault("points", [])
        known = dict(points)
        if step in known and known[step] != value:
            return self._problem(409, f"step {step} was reported with {known[step]}")
        if step not in known:
            points.append([step, value])
        trial["intermediate"] = points[-100:]
        trial["last_step"] = step
        reason = self.stop_rule(trial, step, value)
        return httpx2.Response(200, json={"should_stop": reason is not None, "reason": reason})

    def _curve(self, body: Any, params: dict[str, str], sid: str, tid: str) -> httpx2.Response:
        trial = self._trial(sid, int(tid))
        if trial is None:
            return self._problem(404, f"trial {tid} does not exist", field="trial_id")
        points = trial.get("points", [])
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 1000))
        return httpx2.Response(200, json={"points": points[offset:offset + limit],
                                          "total": len(points), "offset": offset, "limit": limit})

    # --- helpers ------------------------------------------------------------------------------

    def _sample(self, sid: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self.studies[sid]["space"]["params"]:
            if p["type"] == "float":
                out[p["name"]] = self.rng.uniform(p["low"], p["high"])
            elif p["type"] == "int":
                out[p["name"]] = self.rng.randint(p["low"], p["high"])
            else:
                out[p["name"]] = self.rng.choice(p["choices"])
        return out

    def _new_trial(self, sid: str, params: dict[str, Any], state: str) -> dict[str, Any]:
        trial = trial_json(id=self.next_trial_id, number=len(self.trials[sid]), study_id=sid,
                           state=state, params=params, client_id=None)
        self.next_trial_id += 1
        self.trials[sid].append(trial)
        return trial

    def _trial(self, sid: str, tid: int) -> dict[str, Any] | None:
        return next((t for t in self.trials[sid] if t["id"] == tid), None)

    @staticmethod
    def _out(trial: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in trial.items() if k not in ("client_id", "points")}

    def _study(self, sid: str) -> dict[str, Any]:
        study = self.studies[sid]
        trials = self.trials[sid]
        counts: dict[str, int] = {}
        for t in trials:
            counts[t["state"]] = counts.get(t["state"], 0) + 1
        done = [t for t in trials if t["state"] == "complete"]
        sign = -1 if study["direction"] == "maximize" else 1
        best = min(done, key=lambda t: sign * t["value"]) if done else None
        return {**study, "n_trials": len(trials), "trials_by_state": counts,
                "best_trial": self._out(best) if best else None}

    @staticmethod
    def _problem(status: int, detail: str, headers: dict[str, str] | None = None,
                 field: str | None = None) -> httpx2.Response:
        errors = [{"field": field, "message": detail}] if field else []
        return httpx2.Response(status, headers=headers, json={
            "type": "about:blank", "title": "Error", "status": status, "detail": detail,
            "errors": errors})


class SleepRecorder:
    """Stands in for time.sleep so retry tests are instant and can check the waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
