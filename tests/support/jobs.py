"""Queue certifications without publishing and run them in process (the real run service)."""

from __future__ import annotations

import uuid

from app.db.session import transaction
from app.schemas.resources import CertificationCreate
from app.services import certifications, run
from app.services.auth import Principal, authenticate
from tests.support.api import create_target


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


def inline_hooks(factory, settings, **extra) -> run.RunHooks:  # type: ignore[no-untyped-def]
    """The worker's lease keeping, for a job run in the test's process."""
    from worker.lease import keeper_for

    return run.RunHooks(lease=keeper_for(factory, settings.certification_lease_seconds), **extra)


def run_inline(factory, settings, cert_id: str, worker: str = "test-inline", **hooks) -> str:  # type: ignore[no-untyped-def]
    return run.run_certification(
        factory, settings, cert_id, worker, inline_hooks(factory, settings, **hooks)
    )


def certified_target(client, auth, factory, settings, base_url: str, **extra):  # type: ignore[no-untyped-def]
    """(target id, certification id) of a new target whose smoke certification ran in process
    and succeeded (its verdict is whatever the endpoint earned)."""
    target = create_target(client, auth, base_url, **extra)
    cert_id = queue(factory, settings, auth, target)
    assert run_inline(factory, settings, cert_id) == "succeeded"
    return target, cert_id
