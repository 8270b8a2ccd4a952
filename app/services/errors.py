"""Domain errors; app/api/errors.py maps them to HTTP statuses."""

from __future__ import annotations


class DomainError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    """Unknown id, or another organization's."""


class Conflict(DomainError):
    """The request contradicts the object's state."""


class IdempotencyMismatch(DomainError):
    """The Idempotency-Key was used before with another body."""


class InvalidField(DomainError):
    """A field is well-formed but not acceptable (unknown suite, blocked address, ...)."""

    def __init__(self, loc: list[str | int], detail: str) -> None:
        super().__init__(detail)
        self.loc = loc


class Unauthenticated(DomainError):
    """No valid API token."""


class InvalidDocument(DomainError):
    """A document that fails validation: every error with its path (and line)."""

    def __init__(self, detail: str, errors: list[dict[str, object]]) -> None:
        super().__init__(detail)
        self.errors = errors


class TooLarge(DomainError):
    """Over a documented size limit."""
