"""Domain errors raised by the application layer; the API turns each into one problem response."""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    title = "Bad Request"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(DomainError):
    status = 404
    title = "Not Found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Invalid(DomainError):
    status = 422
    title = "Unprocessable Content"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", field)
        self.reason = reason


class TooManyRequests(DomainError):
    """Refused before it took effect (a rate limit, or the ask queue): safe to send again after
    ``retry_after`` seconds, which the problem response carries as ``Retry-After``."""

    status = 429
    title = "Too Many Requests"

    def __init__(self, detail: str, retry_after: int, field: str | None = None,
                 delay_s: float = 0.0) -> None:
        super().__init__(detail, field)
        self.retry_after = max(1, int(retry_after))
        # Seconds the server holds the answer back: a tarpit for clients that retry at once,
        # costing the server an idle connection, not a thread (service/admission.py).
        self.delay_s = delay_s


class QuotaExceeded(DomainError):
    """A standing quota (not a rate): waiting does not help, freeing something does."""

    status = 403
    title = "Forbidden"


class Unavailable(DomainError):
    """Not answerable yet through no fault of the request (a deterministic study's ask waiting
    for its scheduled retraining): nothing took effect; send it again after ``retry_after``
    seconds, which the problem response carries as ``Retry-After``."""

    status = 503
    title = "Service Unavailable"

    def __init__(self, detail: str, retry_after: int, field: str | None = None) -> None:
        super().__init__(detail, field)
        self.retry_after = max(1, int(retry_after))
