"""RFC 9457 problem+json for every non-2xx answer; domain errors mapped to statuses here."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from flask import Flask, Response, g, json, request
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from app.services.errors import (
    Conflict,
    DomainError,
    IdempotencyMismatch,
    InvalidDocument,
    InvalidField,
    NotFound,
    TooLarge,
    Unauthenticated,
)

log = logging.getLogger(__name__)
PROBLEM_BASE = "https://modelcert.dev/problems/"


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail
        self.errors = errors
        self.headers = headers or {}


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path if request else None,
        "request_id": getattr(g, "request_id", None),
    }
    if errors is not None:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def validation_errors(exc: ValidationError, where: str = "body") -> list[dict[str, Any]]:
    return [{"loc": [where, *error["loc"]], "msg": error["msg"]} for error in exc.errors()]


def validation_problem(exc: ValidationError) -> Response:
    """flask-openapi3's validation_error_callback: 422 with per-field errors."""
    where = "body"
    title = getattr(exc, "title", "") or ""
    if "Query" in title or "Filter" in title:
        where = "query"
    elif "Path" in title:
        where = "path"
    return problem(
        422,
        "validation-error",
        "Request is invalid",
        f"{exc.error_count()} field(s) failed validation",
        validation_errors(exc, where),
    )


_DOMAIN = {
    NotFound: (404, "not-found", "Not found"),
    Conflict: (409, "conflict", "Conflict"),
    IdempotencyMismatch: (422, "idempotency-key-reused", "Idempotency-Key reused"),
    Unauthenticated: (401, "unauthenticated", "Authentication required"),
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ProblemError)
    def _problem(exc: ProblemError) -> Response:
        return problem(exc.status, exc.kind, exc.title, exc.detail, exc.errors, exc.headers)

    @app.errorhandler(InvalidField)
    def _invalid(exc: InvalidField) -> Response:
        return problem(
            422,
            "validation-error",
            "Request is invalid",
            exc.detail,
            [{"loc": exc.loc, "msg": exc.detail}],
        )

    @app.errorhandler(InvalidDocument)
    def _invalid_document(exc: InvalidDocument) -> Response:
        return problem(422, "validation-error", "Request is invalid", exc.detail, exc.errors)

    @app.errorhandler(TooLarge)
    def _too_large(exc: TooLarge) -> Response:
        return problem(413, "payload-too-large", "Payload too large", exc.detail)

    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> Response:
        for cls, (status, kind, title) in _DOMAIN.items():
            if isinstance(exc, cls):
                challenge = {"WWW-Authenticate": 'Bearer realm="modelcert"'}
                headers = challenge if status == 401 else None
                return problem(status, kind, title, exc.detail, headers=headers)
        return problem(400, "bad-request", "Bad request", exc.detail)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> Response:
        return validation_problem(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {
            k: v
            for k, v in exc.get_headers()
            if k.lower() not in ("content-type", "content-length")
        }
        kind = (exc.name or "error").lower().replace(" ", "-")
        return problem(
            status, kind, exc.name or "Error", exc.description or exc.name or "", headers=headers
        )

    @app.errorhandler(OperationalError)
    def _database_down(exc: OperationalError) -> Response:
        log.warning("database_unavailable", extra={"error": type(exc.orig).__name__})
        return problem(
            503,
            "database-unavailable",
            "Service unavailable",
            "the database is unreachable; retry shortly",
            headers={"Retry-After": "5"},
        )

    @app.errorhandler(DataError)
    def _unstorable(exc: DataError) -> Response:
        # SQLSTATE class 22 (a value the column cannot hold) comes from the request: the
        # request is refused, and the log says where, not what (see _log_database_error).
        _log_database_error("unstorable_value", exc, logging.WARNING)
        return problem(
            400,
            "bad-request",
            "Bad request",
            "a value in the request cannot be stored (out of range or malformed)",
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if isinstance(exc, DBAPIError):
            _log_database_error("unhandled_exception", exc, logging.ERROR)
        else:
            log.exception("unhandled_exception")
        return problem(
            500,
            "internal-error",
            "Internal server error",
            "an unexpected error occurred; quote the request_id when reporting it",
        )


def _log_database_error(event: str, exc: DBAPIError, level: int) -> None:
    """The driver's message quotes the values it refused ('invalid input syntax for type
    uuid: "..."', 'Key (name)=(...) already exists'): log the SQLSTATE and where it was
    raised, never the message (the statement's parameters are hidden by the engine)."""
    ours = [
        f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"
        for frame in traceback.extract_tb(exc.__traceback__)
        if "site-packages" not in frame.filename
    ]
    log.log(
        level,
        event,
        extra={
            "error": type(exc.orig).__name__,
            "sqlstate": getattr(exc.orig, "sqlstate", None),
            "where": " < ".join(reversed(ours)),
        },
    )
