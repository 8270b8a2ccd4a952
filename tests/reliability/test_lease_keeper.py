"""The lease keeper: one renewer thread per process serves every running job; it renews each
lease when due, notices a cancel or a lost claim, and renews nothing after stop()."""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import func, update

from app.db import jobs
from app.db.models import Certification
from app.db.session import transaction
from tests.support.api import create_target
from tests.support.jobs import queue
from tests.support.polling import wait_for
from worker.lease import LeaseKeeper


def lease_of(factory, job_id: uuid.UUID):  # type: ignore[no-untyped-def]
    with factory() as session:
        return session.get(Certification, job_id).lease_until


def claimed(client, auth, reference_url, factory, settings) -> jobs.Claim:  # type: ignore[no-untyped-def]
    job_id = queue(
        factory, settings, auth, create_target(client, auth, f"{reference_url}/v1"), "smoke"
    )
    claim = jobs.claim_job(factory, uuid.UUID(job_id), "keeper-test", 30)
    assert claim is not None
    return claim


def test_two_jobs_renewed_by_one_thread_and_nothing_after_stop(  # type: ignore[no-untyped-def]
    client, auth, reference_url, factory, settings
) -> None:
    first = claimed(client, auth, reference_url, factory, settings)
    second = claimed(client, auth, reference_url, factory, settings)
    a = LeaseKeeper(factory, first, 30, interval=0.1)
    b = LeaseKeeper(factory, second, 30, interval=0.1)
    before = (lease_of(factory, first.certification_id), lease_of(factory, second.certification_id))
    a.start()
    b.start()
    try:
        assert wait_for(
            lambda: (
                lease_of(factory, first.certification_id) > before[0]
                and lease_of(factory, second.certification_id) > before[1]
            )
        )
        renewers = [t for t in threading.enumerate() if t.name == "lease-renewer"]
        assert len(renewers) == 1
    finally:
        a.stop()
    stopped_at = lease_of(factory, first.certification_id)
    time.sleep(0.5)  # five intervals: b is still renewed, a no more
    assert lease_of(factory, first.certification_id) == stopped_at
    assert wait_for(lambda: lease_of(factory, second.certification_id) > stopped_at)
    b.stop()
    assert not a.lost and not a.cancel_requested


def test_cancel_and_lost_claim_are_noticed(client, auth, reference_url, factory, settings) -> None:  # type: ignore[no-untyped-def]
    cancelled = claimed(client, auth, reference_url, factory, settings)
    taken = claimed(client, auth, reference_url, factory, settings)
    keepers = [LeaseKeeper(factory, c, 30, interval=0.05) for c in (cancelled, taken)]
    for keeper in keepers:
        keeper.start()
    try:
        with transaction(factory) as session:
            session.execute(
                update(Certification)
                .where(Certification.id == cancelled.certification_id)
                .values(cancel_requested_at=func.now())
            )
            # Another delivery took the job over (the sweeper requeued it, someone claimed it).
            session.execute(
                update(Certification)
                .where(Certification.id == taken.certification_id)
                .values(attempt=Certification.attempt + 1)
            )
        assert wait_for(lambda: keepers[0].cancel_requested)
        assert wait_for(lambda: keepers[1].lost)
        assert not keepers[0].lost
    finally:
        for keeper in keepers:
            keeper.stop()
