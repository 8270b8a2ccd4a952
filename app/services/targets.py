"""Targets: the endpoints an organization certifies."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.certification.checks import TargetSpec
from app.certification.engine import JobFailure, planned_samples
from app.certification.netguard import AddressPolicy, check_url, resolve
from app.certification.providers.http import BlockedAddressError
from app.certification.suites import Suite
from app.db.base import table_of
from app.db.direct import Hot
from app.db.models import Provider, Secret, Target
from app.schemas.resources import Capabilities, RateLimit, TargetCreate, TargetView
from app.services import auth
from app.services.auth import Principal
from app.services.errors import Conflict, InvalidField, NotFound
from app.services.pagination import page


def to_view(row: Target) -> TargetView:
    return TargetView(
        id=row.id,
        name=row.name,
        provider=row.provider.value,
        model=row.model,
        base_url=row.base_url,
        endpoints=row.endpoints,
        capabilities=Capabilities.model_validate(row.capabilities),
        rate_limit=RateLimit(rps=row.rate_limit_rps, max_concurrency=row.max_concurrency),
        secret_id=row.secret_id,
        recertify_before_days=row.recertify_before_days,
        created_at=row.created_at,
    )


# DNS at creation is a courtesy (the worker checks what it connects to): bounded per request.
RESOLVE_BUDGET_SECONDS = 3.0


def check_endpoints(body: TargetCreate, allow_private: bool) -> None:
    """SSRF guard at creation: 422 naming the field whose host is or resolves to a blocked
    address (the worker checks again on the address it actually connects to)."""
    policy = AddressPolicy(allow_private=allow_private)
    deadline = time.monotonic() + RESOLVE_BUDGET_SECONDS

    def resolve_within_budget(host: str, port: int) -> list[str] | None:
        left = deadline - time.monotonic()
        return resolve(host, port, timeout=min(2.0, left)) if left > 0 else None

    urls: list[tuple[list[str | int], str]] = []
    if body.base_url is not None:
        urls.append((["body", "base_url"], body.base_url))
    urls += [(["body", "endpoints", region], url) for region, url in body.endpoints.items()]
    for loc, url in urls:
        try:
            check_url(url, policy, resolver=resolve_within_budget)
        except BlockedAddressError as exc:
            raise InvalidField(loc, str(exc)) from None


def create_target(
    session: Session, who: Principal, body: TargetCreate, *, allow_private: bool = False
) -> TargetView:
    check_endpoints(body, allow_private)
    if body.secret_id is not None:
        owned = session.scalar(
            select(Secret.id).where(
                Secret.id == body.secret_id, Secret.organization_id == who.organization_id
            )
        )
        if owned is None:
            raise InvalidField(["body", "secret_id"], "no such secret")
    row = Target(
        organization_id=who.organization_id,
        name=body.name,
        provider=Provider(body.provider),
        model=body.model,
        base_url=body.base_url,
        endpoints=dict(body.endpoints),
        capabilities=body.capabilities.model_dump(),
        rate_limit_rps=body.rate_limit.rps,
        max_concurrency=body.rate_limit.max_concurrency,
        secret_id=body.secret_id,
        recertify_before_days=body.recertify_before_days,
    )
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"a target named {body.name!r} already exists") from None
    return to_view(row)


_TARGETS = table_of(Target)


def _visible(target_id: object, org_id: object) -> ColumnElement[bool]:
    """The organization's target, unless deleted."""
    return and_(
        _TARGETS.c.id == target_id,
        _TARGETS.c.organization_id == org_id,
        _TARGETS.c.deleted_at.is_(None),
    )


def load_target(session: Session, who: Principal, target_id: uuid.UUID) -> Target:
    row = session.scalar(select(Target).where(_visible(target_id, who.organization_id)))
    if row is None:
        raise NotFound("no such target")
    return row


# What a new job needs of its target, built once: POST /v1/certifications runs it each time.
_FOR_JOB = select(
    *(
        _TARGETS.c[name]
        for name in (
            "id",
            "organization_id",
            "base_url",
            "endpoints",
            "provider",
            "model",
            "capabilities",
            "rate_limit_rps",
            "max_concurrency",
        )
    )
).where(_visible(bindparam("target_id"), bindparam("org_id")))


# POST /v1/certifications: the token lookup and the target its job needs, in one round trip
# (the target outer-joined: an unknown one still authenticates).
_AUTHENTICATED_TARGET = Hot(  # every POST /v1/certifications: on the DBAPI cursor
    select(*auth.TOKEN_COLUMNS, *_FOR_JOB.selected_columns)
    .select_from(
        auth.TOKENS_FROM.outerjoin(
            _TARGETS, _visible(bindparam("target_id"), auth.TOKEN_ORGANIZATION)
        )
    )
    .where(auth.TOKEN_MATCHES)
)


def authenticate_with_target(
    session: Session | Connection,
    token: str,
    target_id: uuid.UUID,
) -> tuple[Principal | None, Row[Any] | None]:
    """auth.authenticate, and the organization's target as target_for_job reads it (None
    when there is no such target: target_for_job then says so)."""
    if not auth.plausible(token):
        return None, None
    row = _AUTHENTICATED_TARGET.on(
        session, {"token_hash": auth.hash_token(token), "target_id": target_id}
    )
    if row is None:
        return None, None
    return auth.principal_of(session, row), (row if row.id is not None else None)


def target_for_job(session: Session | Connection, who: Principal, target_id: uuid.UUID) -> Row[Any]:
    """load_target's row, only the columns a new job needs (see new_job_values)."""
    row = session.execute(_FOR_JOB, {"target_id": target_id, "org_id": who.organization_id}).first()
    if row is None:
        raise NotFound("no such target")
    return row


def endpoint_url(target: Target | Row[Any], region: str | None) -> str:
    """The target's endpoint in `region` (its base_url without one); "" when it has none."""
    return (target.endpoints.get(region) if region else target.base_url) or ""


def target_spec(row: Target | Row[Any], region: str | None) -> TargetSpec:
    """What the engine needs of a target, in one region (or at its base_url)."""
    base_url = endpoint_url(row, region)
    if not base_url:
        raise JobFailure("invalid_target", f"no endpoint for region {region!r}", retryable=False)
    return TargetSpec(
        provider=row.provider.value,
        model=row.model,
        base_url=base_url,
        region=region,
        capabilities=dict(row.capabilities),
        rate_limit_rps=row.rate_limit_rps,
        max_concurrency=row.max_concurrency,
    )


def planned_total(row: Target | Row[Any], suite: Suite, region: str | None) -> int:
    """The samples `suite` will send to the target: a new job's progress total. The worker
    writes it again from the target it claims with (the target may change meanwhile); 0 when
    the region has no endpoint, which the worker reports."""
    try:
        return planned_samples(suite, target_spec(row, region))
    except JobFailure:
        return 0


def get_target(session: Session, who: Principal, target_id: uuid.UUID) -> TargetView:
    return to_view(load_target(session, who, target_id))


def list_targets(
    session: Session, who: Principal, cursor: str | None, limit: int
) -> tuple[list[TargetView], str | None]:
    query = select(Target).where(
        Target.organization_id == who.organization_id, Target.deleted_at.is_(None)
    )
    rows, next_cursor = page(session, query, Target, cursor, limit)
    return [to_view(r) for r in rows], next_cursor
