"""Domain errors that the edge maps to HTTP statuses, so services never import the web framework's exceptions."""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400
    headers: dict[str, str] | None = None
    """Response headers the status needs (`Retry-After` on a 429)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(DomainError):
    status_code = 400


class Unauthorized(DomainError):
    status_code = 401


class NotFound(DomainError):
    status_code = 404


class ConflictError(DomainError):
    status_code = 409


class Gone(DomainError):
    status_code = 410


class PayloadTooLarge(DomainError):
    status_code = 413


class UnsupportedMediaType(DomainError):
    status_code = 415


class Locked(DomainError):
    status_code = 423


class Unavailable(DomainError):
    """This host cannot serve the request now; another host, or this one later, can."""

    status_code = 503
    headers = {"Retry-After": "1"}


class InsufficientStorage(DomainError):
    status_code = 507
