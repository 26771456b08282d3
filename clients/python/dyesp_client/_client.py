"""The Client: one HTTP connection to a DyESP server, its retries, and the study endpoints."""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Protocol

import httpx2

from dyesp_client._errors import APIError, ConnectionFailed, FieldError
from dyesp_client._heartbeat import Heartbeat
from dyesp_client._retry import Retryable, RetryPolicy, may_retry_status, parse_retry_after
from dyesp_client._space import check_same_study
from dyesp_client._study import Fidelity, Study, study_path
from dyesp_client._version import __version__

__all__ = ["Client", "HTTPClient", "HTTPResponse"]

log = logging.getLogger("dyesp_client")
Direction = Literal["minimize", "maximize"]


class HTTPResponse(Protocol):
    """What the SDK reads from a response (httpx, httpx2 and starlette's TestClient fit)."""

    status_code: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


class HTTPClient(Protocol):
    """What the SDK needs from an HTTP client (httpx, httpx2, starlette's TestClient fit): an
    injected one lets tests run the real SDK against the real app in-process (DESIGN rule 9)."""

    def request(self, method: str, url: str, *, json: Any = ..., params: Any = ...,
                headers: Any = ...) -> HTTPResponse: ...

    def close(self) -> None: ...


class Client:
    """A connection to a DyESP server.

    Thread-safe: share one Client between the worker threads of a process. Calls that are safe to
    repeat are retried on connection errors and 502/503/504; 4xx responses raise
    :class:`APIError` at once.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``Authorization: Bearer <api_key>``.
        timeout: seconds per request; applies to the client created here, not an injected one.
        retries: retries after the first attempt, or a :class:`RetryPolicy`.
        http_client: anything with ``request(method, url, **kwargs)`` and ``close()``; the caller
            keeps ownership (``close()`` leaves it open).
        heartbeat_interval: seconds between heartbeats of a running trial; ``None`` sends none.

    Example::

        from dyesp_client import Client

        with Client("http://127.0.0.1:8000", api_key="...") as client:
            study = client.create_study("mlp", [
                {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            ])
            trial = study.ask()
            trial.tell((trial.params["lr"] - 0.01) ** 2)
            print(study.best())
    """

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 10.0,
                 retries: int | RetryPolicy = 5, http_client: HTTPClient | None = None,
                 heartbeat_interval: float | None = 30.0) -> None:
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("`heartbeat_interval > 0` (or None) must hold, "
                             f"got heartbeat_interval={heartbeat_interval}")
        self.url = url.rstrip("/")
        self.retry_policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries)
        self.heartbeat_interval = heartbeat_interval
        # Identifies this client's asks; each ask appends its own suffix (see _new_client_id).
        self.client_id = uuid.uuid4().hex
        self._owns_http = http_client is None
        self._http: HTTPClient = http_client if http_client is not None else httpx2.Client(
            timeout=timeout)
        self._headers = {"User-Agent": f"dyesp-client/{__version__}"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._ids = itertools.count()
        self._ids_lock = threading.Lock()
        self._heartbeat = Heartbeat()

    # --- studies ------------------------------------------------------------------------------

    def create_study(self, name: str, space: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                     direction: Direction = "minimize", seed: int | None = None,
                     heartbeat_timeout_s: float | None = None,
                     static_metrics: Sequence[str] = (),
                     transfer_from: Sequence[str | Study] | Literal["auto"] = (),
                     fidelity: Fidelity | Mapping[str, Any] | None = None,
                     deterministic: bool | None = None,
                     load_if_exists: bool = False) -> Study:
        """Create a study. ``space`` is ``{"params": [...]}`` or the list of params itself.

        Names are unique per API key's owner: creating a name you already have raises a 409
        :class:`APIError`, unless ``load_if_exists=True``, which returns the existing study
        (Optuna's ``load_if_exists``) after checking that its direction and space are the ones
        given here (a :class:`ValueError` names what differs: never a different study silently).

        ``static_metrics`` names numbers your side can compute before training (``params``,
        ``flops``, zero-cost proxies): pass the function that computes them to ``Study.ask`` or
        ``Study.optimize`` and the server's pruner uses them to pick what to train.

        ``transfer_from`` makes the study learn from earlier studies (ids or ``Study`` objects),
        or ``"auto"`` from every compatible study of yours with enough results;
        ``Study.refresh().transfer`` shows how far the transfer is trusted.

        ``fidelity`` (e.g. ``{"name": "epoch", "min": 1, "max": 52}``) declares the budget trials
        report along with ``Trial.report(step, value)``, so the server can stop poor trials
        early; it comes back as ``Study.fidelity``.

        Not retried once the request may have reached the server: a second POST would create a
        second study.
        """
        space = dict(space) if isinstance(space, Mapping) else {"params": list(space)}
        body: dict[str, Any] = {"name": name, "direction": direction, "space": space}
        if seed is not None:
            body["seed"] = seed
        if heartbeat_timeout_s is not None:
            body["heartbeat_timeout_s"] = heartbeat_timeout_s
        if static_metrics:
            body["static_metrics"] = list(static_metrics)
        if transfer_from == "auto":
            body["transfer"] = "auto"
        elif transfer_from:
            body["transfer_from"] = [s.id if isinstance(s, Study) else str(s)
                                     for s in transfer_from]
        if fidelity is not None:
            body["fidelity"] = dict(fidelity)
        if deterministic is not None:
            body["deterministic"] = deterministic
        try:
            data = self._call("POST", "/v1/studies", json=body, retry=Retryable.UNSENT)
        except APIError as error:
            if not (load_if_exists and error.status == 409
                    and any(e.field == "name" for e in error.errors)):
                raise
            existing = self.load_study(name)
            check_same_study(existing, direction, space)
            return existing
        return Study(self, data)

    def load_study(self, name: str) -> Study:
        """Your study called ``name`` (names are unique per owner), like Optuna's
        ``load_study(study_name=...)``; a 404 :class:`APIError` naming ``name`` if there is none."""
        data = self._call("GET", "/v1/studies", params={"name": name, "limit": 1})
        if not data["studies"]:
            raise APIError(404, "Not Found", f"name: you have no study called {name!r}",
                           [FieldError("name", f"no study called {name!r}")])
        return Study(self, data["studies"][0])

    def get_study(self, study_id: str) -> Study:
        return Study(self, self._call("GET", study_path(study_id)))

    def list_studies(self, name: str | None = None, page_size: int = 100) -> list[Study]:
        """This key's studies, oldest first, optionally only those called ``name``; the server
        pages its answer, this walks every page."""
        out: list[Study] = []
        while True:
            params: dict[str, Any] = {"offset": len(out), "limit": page_size}
            if name is not None:
                params["name"] = name
            data = self._call("GET", "/v1/studies", params=params)
            out += [Study(self, item) for item in data["studies"]]
            if not data["studies"] or len(out) >= data.get("total", 0):
                return out

    def delete_study(self, study_id: str) -> None:
        """Delete a study and its trials. Retried: deleting twice deletes once (a retry that finds
        the study already gone raises a 404 APIError)."""
        self._call("DELETE", study_path(study_id))

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop heartbeats and close the HTTP client if this Client created it."""
        self._heartbeat.close()
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    # --- transport ----------------------------------------------------------------------------

    def _new_client_id(self) -> str:
        with self._ids_lock:
            return f"{self.client_id}-{next(self._ids)}"

    def _call(self, method: str, path: str, *, json: Any = None,
              params: Mapping[str, Any] | None = None,
              retry: Retryable = Retryable.ALWAYS) -> Any:
        """Send a request with retries; return the decoded JSON body (None for 204)."""
        response = self._request(method, path, json=json, params=params, retry=retry)
        return None if response.status_code == 204 else response.json()

    def _request(self, method: str, path: str, *, json: Any = None,
                 params: Mapping[str, Any] | None = None,
                 retry: Retryable = Retryable.ALWAYS) -> HTTPResponse:
        url = self.url + path
        kwargs: dict[str, Any] = {"headers": self._headers}
        if json is not None:
            kwargs["json"] = json
        if params is not None:
            kwargs["params"] = dict(params)
        policy = self.retry_policy
        attempt = 0
        while True:
            try:
                response = self._http.request(method, url, **kwargs)
            except Exception as error:
                if not is_transport_error(error):
                    raise
                may_retry = retry is Retryable.ALWAYS or (
                    retry is Retryable.UNSENT and was_not_sent(error))
                if not may_retry or attempt >= policy.retries:
                    raise ConnectionFailed(f"{method} {url} failed after {attempt + 1} "
                                           f"attempt(s): {error!r}") from error
                wait = policy.delay(attempt)
                log.info("%s %s: %r; retry %d/%d in %.2f s", method, path, error, attempt + 1,
                         policy.retries, wait)
            else:
                status = response.status_code
                if status < 400:
                    return response
                if not may_retry_status(status, retry) or attempt >= policy.retries:
                    raise APIError.from_response(response)
                wait = policy.delay(attempt, parse_retry_after(response.headers.get("Retry-After")))
                log.info("%s %s: HTTP %d; retry %d/%d in %.2f s", method, path, status,
                         attempt + 1, policy.retries, wait)
            policy.sleep(wait)
            attempt += 1


# Transport exceptions, by name too: an injected client may be plain httpx, whose classes differ
# from httpx2's but have the same names.
_TRANSPORT_NAMES = frozenset({"TransportError", "TimeoutException"})
_UNSENT_NAMES = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout"})


def _httpx_class_names(error: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(error).__mro__ if cls.__module__.startswith("httpx")}


def is_transport_error(error: BaseException) -> bool:
    """The request failed in the network, not in the server's logic."""
    return isinstance(error, (httpx2.TransportError, ConnectionError, TimeoutError)) or bool(
        _httpx_class_names(error) & _TRANSPORT_NAMES)


def was_not_sent(error: BaseException) -> bool:
    """The connection was never made, so the server cannot have acted on the request."""
    return isinstance(error, (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout,
                              ConnectionRefusedError)) or bool(
        _httpx_class_names(error) & _UNSENT_NAMES)
