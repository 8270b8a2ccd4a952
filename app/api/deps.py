"""Per-process resources of the API, kept in app.extensions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.publish import Publisher
from app.services.auth import Principal


@dataclass
class Deps:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    publisher: Publisher
    redis: Any


def deps() -> Deps:
    return current_app.extensions["modelcert"]  # type: ignore[no-any-return]


def principal() -> Principal:
    return g.principal  # type: ignore[no-any-return]
