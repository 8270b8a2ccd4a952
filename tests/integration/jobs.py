"""Queue certifications without publishing and run them in process (the real run service)."""

from __future__ import annotations

import uuid

from app.db.session import transaction
from app.schemas.resources import CertificationCreate
from app.services import certifications, run
from app.services.auth import Principal, authenticate


def principal(factory, headers: dict[str, str]) -> Principal:  # type: ignore[no-untyped-def]
    with transaction(factory) as session:
        who = authenticate(session, headers["Authorization"].split(" ", 1)[1])
    assert who is not None
    return who


def queue(
    factory,
    settings,
    headers,
    target_id: str,
    suite: str = "smoke",  # type: ignore[no-untyped-def]
    key: str | None = None,
) -> str:
    """A queued job that no broker message points at: only this test will run it."""
    view, _ = certifications.create_certification(
        factory,
        settings,
        lambda *_: False,
        principal(factory, headers),
        CertificationCreate(target_id=uuid.UUID(target_id), suite=suite),
        key,
    )
    return str(view.id)


def run_inline(factory, settings, cert_id: str) -> str:  # type: ignore[no-untyped-def]
    return run.run_certification(factory, settings, cert_id, "test-inline")
