"""Suites as the API shows them: the shipped ones and an organization's own (issue #23).

A team's suite is stored once per name@version, immutable: the same version again with the
same content hash answers with what is stored; with other content it is a conflict. Another
organization never sees it. A certification names a suite as `name` (a built-in, or the
organization's newest version) or `name@version`; the job keeps the content hash, and the
worker loads that very content by (organization, hash).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from app.certification.checks.catalog import REGISTRY
from app.certification.suites import (
    Suite,
    SuiteError,
    SuiteFile,
    SuiteInvalid,
    SuiteTooLarge,
    _datasets_named,
    available_suites,
    get_suite,
)
from app.certification.suites.documents import load_document
from app.config import Settings
from app.db.base import table_of
from app.db.models import Suite as SuiteRow
from app.db.session import autocommit, transaction
from app.schemas.results import SuiteCheck, SuiteDetail, SuiteList, SuiteSummary
from app.services.auth import Principal
from app.services.errors import Conflict, InvalidDocument, NotFound, TooLarge

_SUITES = table_of(SuiteRow)
RESERVED = frozenset({"schema"})  # path segments of /v1/suites that are not suite names


def _summary(suite: Suite, builtin: bool = True) -> SuiteSummary:
    return SuiteSummary(
        name=suite.name,
        version=suite.version,
        content_hash=suite.content_hash,
        description=suite.definition.description,
        covers=list(suite.covers),
        builtin=builtin,
        ref=suite.ref,
    )


def offered(settings: Settings, name: str) -> Suite:
    """The built-in suite named `name` as this deployment offers it; SuiteError when there is
    none (benchmark suites only where MODELCERT_BENCHMARK_SUITES enables them)."""
    suite = get_suite(name)
    if suite.definition.purpose == "benchmark" and not settings.modelcert_benchmark_suites:
        raise SuiteError(f"unknown suite {name!r}")
    return suite


def is_builtin(name: str) -> bool:
    return name in available_suites()


def split_ref(ref: str) -> tuple[str, str | None]:
    name, _, version = ref.partition("@")
    return name, version or None


def resolve(
    session: Session | Connection, settings: Settings, org_id: uuid.UUID, ref: str
) -> Suite:
    """The suite a certification names: `name` or `name@version`, built-in or the
    organization's own; SuiteError when there is none (another organization's included)."""
    name, version = split_ref(ref)
    if is_builtin(name):
        suite = offered(settings, name)
        if version is not None and version != suite.version:
            raise SuiteError(f"suite {name!r} is served at version {suite.version}, not {version}")
        return suite
    stmt = select(_SUITES).where(_SUITES.c.organization_id == org_id, _SUITES.c.name == name)
    if version is not None:
        stmt = stmt.where(_SUITES.c.version == version)
    row = session.execute(stmt.order_by(_SUITES.c.created_at.desc()).limit(1)).first()
    if row is None:
        raise SuiteError(f"unknown suite {ref[:120]!r}")
    return _from_row(row)


def for_job(
    factory: sessionmaker[Session], settings: Settings, org_id: uuid.UUID, name: str, digest: str
) -> Suite:
    """A job's suite for the worker: the built-in of that name, or the organization's suite
    with the job's content hash (immutable, so cached per process)."""
    if is_builtin(name):
        return offered(settings, name)
    return _stored(factory, org_id, digest)


@lru_cache(maxsize=64)
def _stored_cached(factory: sessionmaker[Session], org_id: uuid.UUID, digest: str) -> Suite:
    with autocommit(factory) as conn:
        row = conn.execute(
            select(_SUITES).where(
                _SUITES.c.organization_id == org_id, _SUITES.c.content_hash == digest
            )
        ).first()
    if row is None:
        raise SuiteError(f"the job's suite {digest[:23]}… is not stored")
    return _from_row(row)


def _stored(factory: sessionmaker[Session], org_id: uuid.UUID, digest: str) -> Suite:
    return _stored_cached(factory, org_id, digest)


def _from_row(row: Any) -> Suite:
    """A stored suite as the engine runs it (validated when it was stored)."""
    definition = SuiteFile.model_validate(row.definition)
    data = {name: tuple(rows) for name, rows in (row.datasets or {}).items()}
    return Suite(definition, row.content_hash, tuple(_datasets_named(definition)), data)


def create_suite(
    factory: sessionmaker[Session],
    who: Principal,
    raw: bytes,
    media: str,
    files: Mapping[str, bytes],
) -> tuple[SuiteDetail, bool]:
    """Validate and store a team's suite. Returns (view, created): the same name@version
    with the same content answers what is stored (created False); with other content,
    Conflict. Nothing is stored unless all of it is valid."""
    try:
        suite = load_document(raw, media, files)
    except SuiteTooLarge as exc:
        raise TooLarge(str(exc)) from None
    except SuiteInvalid as exc:
        errors = [{**e, "loc": ["body", *e["loc"]]} for e in exc.errors]
        raise InvalidDocument(str(exc), errors) from None
    if is_builtin(suite.name) or suite.name in RESERVED:
        raise Conflict(f"{suite.name!r} is the name of a built-in suite: choose another")
    document = suite.definition.model_dump(mode="json", exclude_unset=True, by_alias=True)
    data = {name: list(rows) for name, rows in suite.data.items()}
    with transaction(factory) as session:
        inserted = session.execute(
            insert(SuiteRow)
            .values(
                id=uuid.uuid4(),
                organization_id=who.organization_id,
                name=suite.name,
                version=suite.version,
                content_hash=suite.content_hash,
                definition=document,
                datasets=data,
            )
            .on_conflict_do_nothing(index_elements=["organization_id", "name", "version"])
            .returning(SuiteRow.id)
        ).first()
        if inserted is None:
            existing = session.scalar(
                select(SuiteRow.content_hash).where(
                    SuiteRow.organization_id == who.organization_id,
                    SuiteRow.name == suite.name,
                    SuiteRow.version == suite.version,
                )
            )
            if existing != suite.content_hash:
                raise Conflict(
                    f"{suite.ref} is already stored with other content ({existing}); "
                    "versions are immutable: give this content a new version"
                )
    return _detail(suite, builtin=False), inserted is not None


def builtin_list(settings: Settings) -> list[SuiteSummary]:
    """The shipped suites this deployment offers."""
    return [
        _summary(s)
        for s in available_suites().values()
        if s.definition.purpose != "benchmark" or settings.modelcert_benchmark_suites
    ]


def list_suites(factory: sessionmaker[Session], settings: Settings, who: Principal) -> SuiteList:
    """The built-in suites, then the organization's own (every version)."""
    items = builtin_list(settings)
    with autocommit(factory) as conn:
        rows = conn.execute(
            select(_SUITES)
            .where(_SUITES.c.organization_id == who.organization_id)
            .order_by(_SUITES.c.name, _SUITES.c.created_at)
        ).all()
    items.extend(_summary(_from_row(row), builtin=False) for row in rows)
    return SuiteList(items=items)


def describe_suite(
    factory: sessionmaker[Session], settings: Settings, who: Principal, ref: str
) -> SuiteDetail:
    """One suite by `name` (the newest version of the organization's own) or
    `name@version`; another organization's is not found."""
    try:
        with autocommit(factory) as conn:
            suite = resolve(conn, settings, who.organization_id, ref)
    except SuiteError:
        raise NotFound(f"no such suite {ref[:100]!r}") from None
    return _detail(suite, builtin=is_builtin(suite.name))


def _detail(suite: Suite, builtin: bool) -> SuiteDetail:
    checks = [
        SuiteCheck(
            key=c.key,
            name=c.name,
            description=REGISTRY[c.name].description,
            required=c.required,
            threshold=c.threshold,
            params=dict(c.params),
            requires=REGISTRY[c.name].requires,
            regression=c.regression,
        )
        for c in suite.definition.checks
    ]
    own = {name: len(rows) for name, rows in suite.data.items()}
    return SuiteDetail(
        **_summary(suite, builtin).model_dump(),
        max_error_rate=suite.definition.max_error_rate,
        run=suite.definition.run.model_dump(),
        datasets=list(suite.datasets) + [f"{name} ({count} rows)" for name, count in own.items()],
        checks=checks,
    )
