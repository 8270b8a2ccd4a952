"""Re-certification and fingerprint changes, driven through the services on the real database."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text, update

from app.db.models import Certificate, Certification, Target
from app.db.session import transaction
from app.services.recertify import recertify
from tests.support.jobs import certified_target, queue, run_inline


def expire_in(factory, cert_id: str, days: int) -> None:  # type: ignore[no-untyped-def]
    with transaction(factory) as session:
        session.execute(
            update(Certificate)
            .where(Certificate.certification_id == uuid.UUID(cert_id))
            .values(valid_until=func.now() + text(f"interval '{days} days'"))
        )


def jobs_of(factory, target: str, reason: str) -> list[Certification]:  # type: ignore[no-untyped-def]
    with factory() as session:
        return list(
            session.scalars(
                select(Certification).where(
                    Certification.target_id == uuid.UUID(target), Certification.reason == reason
                )
            )
        )


def test_expiring_certificate_is_recertified_once(
    client,
    auth,
    factory,
    settings,  # type: ignore[no-untyped-def]
    reference_url,
) -> None:
    target, first = certified_target(client, auth, factory, settings, f"{reference_url}/v1")
    expire_in(factory, first, 2)  # inside the default 7-day window
    published: list[uuid.UUID] = []

    def publish(cert_id: uuid.UUID, queue_name: str, priority: str) -> bool:
        published.append(cert_id)
        return True  # recorded, not sent: no worker runs it behind this test's back

    report = recertify(factory, settings, publish)
    assert len(report.queued) == 1 and report.published == 1
    again = recertify(factory, settings, publish)
    assert again.queued == []
    jobs = jobs_of(factory, target, "recertification")
    assert len(jobs) == 1 and published == [jobs[0].id]
    job = jobs[0]
    assert job.status.value == "queued" and job.suite_name == "smoke" and job.region is None
    assert job.dispatched_at is not None
    view = client.get(f"/v1/certifications?target_id={target}", headers=auth).get_json()
    assert [c["reason"] for c in view["items"]].count("recertification") == 1

    # It runs, certifies, supersedes the expiring certificate: nothing more to do.
    assert run_inline(factory, settings, str(job.id)) == "succeeded"
    current = client.get(f"/v1/targets/{target}/certificate", headers=auth).get_json()
    assert current["payload"]["certification_id"] == str(job.id)
    assert recertify(factory, settings).queued == []
    assert len(jobs_of(factory, target, "recertification")) == 1


def test_outside_the_window_or_with_a_job_active_nothing_is_queued(  # type: ignore[no-untyped-def]
    client, auth, factory, settings, reference_url
) -> None:
    far, far_cert = certified_target(client, auth, factory, settings, f"{reference_url}/v1")
    expire_in(factory, far_cert, 20)
    off, off_cert = certified_target(
        client, auth, factory, settings, f"{reference_url}/v1", recertify_before_days=0
    )
    expire_in(factory, off_cert, 1)
    busy, busy_cert = certified_target(client, auth, factory, settings, f"{reference_url}/v1")
    expire_in(factory, busy_cert, 1)
    queue(factory, settings, auth, busy)  # a smoke run already waits for this target
    recertify(factory, settings)
    for target in (far, off, busy):
        assert jobs_of(factory, target, "recertification") == []


def test_fingerprint_change_supersedes_and_queues(
    client,
    auth,
    factory,
    settings,  # type: ignore[no-untyped-def]
    reference_url,
) -> None:
    target, first = certified_target(client, auth, factory, settings, f"{reference_url}/v1")
    with factory() as session:
        fingerprint = session.get(Target, uuid.UUID(target)).endpoint_fingerprint
        assert fingerprint and fingerprint.startswith("sha256:")
    # The endpoint behind the target changes (here: another base URL that answers badly), and
    # another suite runs on it: the smoke certificate no longer speaks for the endpoint.
    with transaction(factory) as session:
        session.execute(
            update(Target)
            .where(Target.id == uuid.UUID(target))
            .values(base_url=f"{reference_url}/m/wrong/v1")
        )
    second = queue(factory, settings, auth, target, suite="standard")
    assert run_inline(factory, settings, second) == "succeeded"

    old = client.get(f"/v1/certifications/{first}/certificate", headers=auth).get_json()
    assert old["status"] == "superseded" and old["superseded_at"]
    new = client.get(f"/v1/certifications/{second}/certificate", headers=auth).get_json()
    assert new["payload"]["endpoint_fingerprint"] != old["payload"]["endpoint_fingerprint"]
    assert client.get(f"/v1/targets/{target}/certificate", headers=auth).status_code == 404
    with factory() as session:
        assert (
            session.get(Target, uuid.UUID(target)).endpoint_fingerprint
            == new["payload"]["endpoint_fingerprint"]
        )
    queued = jobs_of(factory, target, "fingerprint_change")
    assert len(queued) == 1 and queued[0].status.value == "queued"
    assert queued[0].suite_name == "smoke"
    listed = client.get(f"/v1/certifications/{queued[0].id}", headers=auth).get_json()
    assert listed["reason"] == "fingerprint_change"


def test_a_run_of_the_same_suite_on_the_changed_endpoint_is_its_new_statement(  # type: ignore[no-untyped-def]
    client, auth, factory, settings, reference_url
) -> None:
    """The smoke run that saw the new fingerprint is itself the suite's new certificate, not
    certified: nothing is queued again, and the target has no current certificate."""
    target, first = certified_target(client, auth, factory, settings, f"{reference_url}/v1")
    with transaction(factory) as session:
        session.execute(
            update(Target)
            .where(Target.id == uuid.UUID(target))
            .values(base_url=f"{reference_url}/m/wrong/v1")
        )
    second = queue(factory, settings, auth, target)
    assert run_inline(factory, settings, second) == "succeeded"
    old = client.get(f"/v1/certifications/{first}/certificate", headers=auth).get_json()
    assert old["status"] == "superseded"
    assert jobs_of(factory, target, "fingerprint_change") == []
    current = client.get(f"/v1/targets/{target}/certificate?suite=smoke", headers=auth)
    assert current.status_code == 404 and "not_certified" in current.get_json()["detail"]


def test_same_fingerprint_keeps_the_certificate(
    client,
    auth,
    factory,
    settings,  # type: ignore[no-untyped-def]
    reference_url,
) -> None:
    target, first = certified_target(client, auth, factory, settings, f"{reference_url}/v1")
    with transaction(factory) as session:  # another suite on the same endpoint
        session.execute(
            update(Target)
            .where(Target.id == uuid.UUID(target))
            .values(capabilities={"streaming": True})
        )
    other = queue(factory, settings, auth, target, suite="smoke")
    assert run_inline(factory, settings, other) == "succeeded"
    assert jobs_of(factory, target, "fingerprint_change") == []
    a = client.get(f"/v1/certifications/{first}/certificate", headers=auth).get_json()
    b = client.get(f"/v1/certifications/{other}/certificate", headers=auth).get_json()
    assert a["payload"]["endpoint_fingerprint"] == b["payload"]["endpoint_fingerprint"]
