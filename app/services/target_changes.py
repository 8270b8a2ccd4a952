"""Changing and deleting a target (PATCH and DELETE /v1/targets/{id}).

A capabilities change supersedes the target's certificates: what they certify was tested
under the old declaration (which checks ran, which were skipped as not declared), so their
claims no longer hold. A rename or a new rate limit changes no claim.

Delete is soft: the row stays, with its certifications, results and certificates, for audit.
A deleted target answers 404, cannot be certified again (new jobs, retries, replays,
re-certification), and a job already queued for it fails when a worker claims it (cause
invalid_target, "the target was deleted").
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import certificates as certificate_rows
from app.schemas.resources import Capabilities, RateLimit, TargetUpdate, TargetView
from app.services.auth import Principal
from app.services.errors import Conflict
from app.services.targets import load_target, to_view


def merged(current: dict[str, Any], change: Capabilities | RateLimit) -> dict[str, Any]:
    """`current` with the fields `change` was given (a JSON merge patch of one object)."""
    return current | change.model_dump(include=change.model_fields_set)


def update_target(
    session: Session, who: Principal, target_id: uuid.UUID, body: TargetUpdate
) -> TargetView:
    row = load_target(session, who, target_id)
    given = body.model_fields_set
    if body.name is not None:
        row.name = body.name
    if body.capabilities is not None:
        before = Capabilities.model_validate(row.capabilities).model_dump()
        after = Capabilities.model_validate(merged(before, body.capabilities)).model_dump()
        if after != before:
            row.capabilities = after
            certificate_rows.supersede_all(session, row.id)
    if body.rate_limit is not None:
        limits = RateLimit.model_validate(
            merged(
                {"rps": row.rate_limit_rps, "max_concurrency": row.max_concurrency}, body.rate_limit
            )
        )
        row.rate_limit_rps, row.max_concurrency = limits.rps, limits.max_concurrency
    if body.recertify_before_days is not None:
        row.recertify_before_days = body.recertify_before_days
    if given:
        row.updated_at = func.now()
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"a target named {body.name!r} already exists") from None
    session.refresh(row)
    return to_view(row)


def delete_target(session: Session, who: Principal, target_id: uuid.UUID) -> None:
    """Soft delete (404 for an unknown, another organization's or an already deleted one)."""
    row = load_target(session, who, target_id)
    row.deleted_at = func.now()
    row.updated_at = func.now()
