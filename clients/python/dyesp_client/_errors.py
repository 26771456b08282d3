"""The SDK's one exception hierarchy, and the parser of the server's problem documents."""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

__all__ = ["APIError", "ConnectionFailed", "DyespError", "FieldError", "Infeasible", "TrialStopped"]


class _Response(Protocol):
    status_code: int

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


class DyespError(Exception):
    """Base of every error the SDK raises, so ``except DyespError`` catches them all."""


@dataclass(frozen=True)
class FieldError:
    """One entry of a problem's ``errors``: which request field is wrong, and why."""

    field: str
    message: str


class APIError(DyespError):
    """The server answered with an error status (RFC 9457 problem document).

    ``status``, ``title`` and ``detail`` come from the problem; ``errors`` lists the offending
    fields of a 422 so callers can react to a field rather than parse prose.
    """

    def __init__(self, status: int, title: str, detail: str,
                 errors: list[FieldError] | None = None) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors: list[FieldError] = list(errors or [])
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")

    @classmethod
    def from_response(cls, response: _Response) -> APIError:
        """Parse a problem document; fall back to the raw body when a proxy sent HTML or text."""
        status = int(response.status_code)
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "HTTP error"
        try:
            body = response.json()
        except Exception:  # not JSON: a load balancer's error page, an empty body
            body = None
        if not isinstance(body, dict):
            return cls(status, title, _shorten(response.text))
        errors = [FieldError(str(e.get("field", "")), str(e.get("message", "")))
                  for e in body.get("errors") or [] if isinstance(e, dict)]
        detail = body.get("detail")
        if detail is None:
            detail = _shorten(response.text)
        return cls(status, str(body.get("title") or title), str(detail), errors)


class ConnectionFailed(DyespError):
    """The server could not be reached (connection refused, timeout, reset), even after retries.

    The underlying transport exception is chained as ``__cause__``.
    """


class Infeasible(DyespError):
    """Raise inside an objective to record the configuration as infeasible, not failed.

    Infeasible means the configuration itself cannot work (out of memory, diverged at once), so the
    search learns to avoid it; failed means the infrastructure broke and says nothing about it.

    Example::

        def objective(trial):
            if trial.params["width"] * trial.params["depth"] > 4096:
                raise Infeasible("does not fit in GPU memory")
            return train(trial.params)
    """

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "infeasible")
        self.reason = reason


class TrialStopped(DyespError):
    """Raise inside an objective to end a trial early, once :meth:`Trial.report` returned True.

    :meth:`Study.optimize` (and a trial used as a context manager) then tells the trial
    ``stopped``: the server keeps its last reported value and step, and counts it as done, not
    failed. ``reason`` defaults to the one the server gave with its stop answer. Raised before any
    report there is no value to keep, so the trial is recorded failed instead, with a reason
    saying why. Like Optuna's ``raise optuna.TrialPruned()``.

    Example::

        def objective(trial):
            model = build(trial.params)
            for epoch in range(1, 28):
                accuracy = train_one_epoch(model)
                if trial.report(epoch, accuracy):  # True: the server says stop
                    raise TrialStopped()
            return accuracy
    """

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "stopped")
        self.reason = reason


def _shorten(text: str, limit: int = 500) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."
