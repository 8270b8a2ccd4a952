"""Rows written straight through the services, for a test to build on: an organization and its
token, a target as if it had passed its creation check, a job no worker is told about."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.models import Certification, Provider, Target
from app.db.session import transaction
from app.schemas.resources import CertificationCreate
from app.services import certifications
from app.services.auth import Principal, create_token


def make_token(factory: sessionmaker[Session], org: str) -> str:
    """A token of the organization named `org` (created if new)."""
    with transaction(factory) as session:
        token, _ = create_token(session, org)
    return token


def new_org(factory: sessionmaker[Session]) -> tuple[str, Principal]:
    with transaction(factory) as session:
        return create_token(session, f"org-{uuid.uuid4().hex[:8]}")


def insert_target(
    factory: sessionmaker[Session],
    who: Principal,
    base_url: str,
    secret_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """A target row as if it had passed the creation check (e.g. before DNS rebinding)."""
    with transaction(factory) as session:
        row = Target(
            organization_id=who.organization_id,
            name=f"t-{uuid.uuid4().hex[:8]}",
            provider=Provider.OPENAI_COMPATIBLE,
            model="reference-model",
            base_url=base_url,
            endpoints={},
            capabilities={},
            secret_id=secret_id,
        )
        session.add(row)
        session.flush()
        return row.id


def queued_job(
    factory: sessionmaker[Session],
    settings: Settings,
    who: Principal,
    target_id: uuid.UUID,
    suite: str = "smoke",
) -> str:
    """A queued certification that no worker is told about (run it with run_certification).

    Marked dispatched, so a sweeper does not publish it to the session worker meanwhile (it
    would only republish it after its lost-message delay, longer than these tests need).
    """
    view, _ = certifications.create_certification(
        factory,
        settings,
        lambda *args, **kwargs: True,
        who,
        CertificationCreate(target_id=target_id, suite=suite),
        None,
    )
    return str(view.id)


def job_row(factory: sessionmaker[Session], cert_id: str) -> Certification:
    with factory() as session:
        row = session.get(Certification, uuid.UUID(cert_id))
        assert row is not None
        session.expunge(row)
        return row
