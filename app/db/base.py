"""Declarative base with one naming convention for constraints (warehouse/db.py)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import DateTime, Enum, Executable, MetaData, Table, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB, uuid.UUID: UUID(as_uuid=True)}


def enum_column(enum_cls: type[enum.Enum], name: str) -> Enum:
    """Enums stored by value in a VARCHAR with a CHECK constraint."""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def now_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def table_of(model: type[Base]) -> Table:
    """A model's Core table. Hot paths build their statements over it once, with bind
    parameters: built per call through the ORM, a statement costs several times the CPU of
    its round trip (the worker's profile, bench/README.md)."""
    return cast(Table, model.__table__)


E = TypeVar("E", bound=Executable)
NO_ROW = uuid.UUID(int=0)  # an id no row has
# Statements built once for a worker's job path, each with parameters under which it matches
# and changes no row: session.compile_ahead runs them once, rolled back, in the worker's main
# process, so pool children forked afterwards (recycled ones too) find them compiled.
AHEAD: list[tuple[Executable, dict[str, Any]]] = []


def ahead(statement: E, **no_row: Any) -> E:
    """Register `statement` for session.compile_ahead; `no_row`: its harmless parameters."""
    AHEAD.append((statement, no_row))
    return statement
