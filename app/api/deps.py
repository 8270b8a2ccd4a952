"""Per-process resources of the API, kept in app.extensions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, g
from sqlalchemy import Connection, Engine, Row
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.publish import Publisher
from app.services.auth import Principal
from app.services.dispatch import DispatchMarks


@dataclass
class Deps:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    publisher: Publisher
    redis: Any
    dispatch: DispatchMarks


def deps() -> Deps:
    return current_app.extensions["modelcert"]  # type: ignore[no-any-return]


def principal() -> Principal:
    return g.principal  # type: ignore[no-any-return]


# Endpoints whose view goes on with the connection authentication used (POST
# /v1/certifications: bench api_create): no second checkout. It is in autocommit, as every
# authentication's is (one round trip, no BEGIN and COMMIT around the token lookup), so each
# statement of the view commits on its own: only for views that write one statement.
# Teardown returns it to the pool.
SHARED_AUTH_CONNECTION: set[str] = set()
# Endpoints whose JSON body names a `target_id` the view reads: authentication reads that
# target in its own statement (one round trip fewer), as `job_target()`.
PREFETCH_TARGET: set[str] = set()


def auth_session() -> Connection | None:
    """The connection (in autocommit) authentication used, for an endpoint in
    SHARED_AUTH_CONNECTION."""
    return g.get("auth_session")


def job_target() -> Row[Any] | None:
    """The target authentication read for an endpoint in PREFETCH_TARGET (None: not read)."""
    return g.get("job_target")
