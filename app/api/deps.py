"""Per-process resources of the API, kept in app.extensions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, g
from sqlalchemy import Connection, Engine, Row
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.queue.publisher import Publisher
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
    found: Deps = current_app.extensions["modelcert"]
    return found


def principal() -> Principal:
    who: Principal = g.principal
    return who


# Endpoints whose unit of work continues the authentication's transaction: the token lookup
# and the view's writes commit once (POST /v1/certifications: bench api_create; e2e counts
# commits per job). The request keeps that connection open until the view commits; teardown
# closes it (rolling back) if not. Every other request authenticates in autocommit: one
# round trip, no BEGIN and COMMIT around the token lookup.
SHARED_AUTH_TRANSACTION: set[str] = set()
# Endpoints that read their own body (not only JSON: POST /v1/suites takes YAML and
# multipart uploads, issue #23); the body limit still holds for them.
RAW_BODY: set[str] = set()
# Endpoints whose JSON body names a `target_id` the view reads: authentication reads that
# target in its own statement (one round trip fewer), as `job_target()`.
PREFETCH_TARGET: set[str] = set()
# Endpoints of the HTML pages that take an HTML form (login, logout, verify): their bodies are
# forms, not JSON (issue #24).
FORM_ENDPOINTS: set[str] = set()


def auth_session() -> Connection | None:
    """The open transaction (a Connection) authentication used, for an endpoint in
    SHARED_AUTH_TRANSACTION."""
    conn: Connection | None = g.get("auth_session")
    return conn


def job_target() -> Row[Any] | None:
    """The target authentication read for an endpoint in PREFETCH_TARGET (None: not read)."""
    target: Row[Any] | None = g.get("job_target")
    return target
