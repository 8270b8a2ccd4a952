"""API tokens: random, shown once, stored as SHA-256; each belongs to one organization."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from app.db.models import ApiToken, Organization

TOKEN_PREFIX = "mc_"
LAST_USED_RESOLUTION = 60  # seconds


@dataclass(frozen=True)
class Principal:
    organization_id: uuid.UUID
    organization: str
    token_id: uuid.UUID


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def get_or_create_organization(session: Session, name: str) -> Organization:
    org = session.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        org = Organization(name=name)
        session.add(org)
        session.flush()
    return org


def create_token(
    session: Session, organization: str, name: str = "default"
) -> tuple[str, Principal]:
    org = get_or_create_organization(session, organization)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(organization_id=org.id, name=name, token_hash=hash_token(token),
                   prefix=token[:10])
    session.add(row)
    session.flush()
    return token, Principal(org.id, org.name, row.id)


def authenticate(session: Session, token: str) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    stale = or_(ApiToken.last_used_at.is_(None),
                ApiToken.last_used_at < func.now() - timedelta(seconds=LAST_USED_RESOLUTION))
    row = session.execute(
        select(ApiToken.id, ApiToken.organization_id, Organization.name, stale.label("stale"))
        .join(Organization, Organization.id == ApiToken.organization_id)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    # last_used_at is informational: written at most once a minute, so concurrent requests with
    # one token do not queue on that row's lock and commit a write each (bench api_create);
    # the UPDATE is only sent when the SELECT saw it stale (and re-checks that, for races).
    if row.stale:
        session.execute(update(ApiToken).where(ApiToken.id == row.id, stale)
                        .values(last_used_at=func.now()))
    return Principal(row.organization_id, row.name, row.id)
