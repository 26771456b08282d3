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
