"""API tokens: random, shown once, stored as SHA-256; each belongs to one organization."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from app.db.base import table_of
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
    row = ApiToken(
        organization_id=org.id, name=name, token_hash=hash_token(token), prefix=token[:10]
    )
    session.add(row)
    session.flush()
    return token, Principal(org.id, org.name, row.id)


_TOKENS, _ORGS = table_of(ApiToken), table_of(Organization)
_STALE = or_(
    _TOKENS.c.last_used_at.is_(None),
    _TOKENS.c.last_used_at < func.now() - timedelta(seconds=LAST_USED_RESOLUTION),
)
# The token lookup's parts, for statements that read something else in the same round trip
# (targets.authenticate_with_target): its columns, its FROM, its condition.
TOKEN_COLUMNS = (
    _TOKENS.c.id.label("token_id"),
    _TOKENS.c.organization_id.label("token_organization_id"),
    _ORGS.c.name.label("organization"),
    _STALE.label("stale"),
)
TOKEN_ORGANIZATION = _TOKENS.c.organization_id
TOKENS_FROM = _TOKENS.join(_ORGS, _ORGS.c.id == _TOKENS.c.organization_id)
TOKEN_MATCHES = and_(
    _TOKENS.c.token_hash == bindparam("token_hash"), _TOKENS.c.revoked_at.is_(None)
)
# Built once: every request runs it (see app/db/base.py table_of).
_AUTHENTICATE = select(*TOKEN_COLUMNS).select_from(TOKENS_FROM).where(TOKEN_MATCHES)
_TOUCH = (
    update(_TOKENS)
    .where(_TOKENS.c.id == bindparam("token_id"), _STALE)
    .values(last_used_at=func.now())
)


def plausible(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX) and len(token) <= 200


def authenticate(session: Session | Connection, token: str) -> Principal | None:
    if not plausible(token):
        return None
    row = session.execute(_AUTHENTICATE, {"token_hash": hash_token(token)}).first()
    return None if row is None else principal_of(session, row)


def principal_of(session: Session | Connection, row: Any) -> Principal:
    """The principal of a row with TOKEN_COLUMNS, in the transaction that read it."""
    # last_used_at is informational: written at most once a minute, so concurrent requests with
    # one token do not queue on that row's lock and commit a write each (bench api_create);
    # the UPDATE is only sent when the SELECT saw it stale (and re-checks that, for races).
    if row.stale:
        session.execute(_TOUCH, {"token_id": row.token_id})
    return Principal(row.token_organization_id, row.organization, row.token_id)
