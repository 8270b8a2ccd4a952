"""The certificates repository (app/db/certificates.py) on the real database, over
certificates issued by certifications run in process against the reference endpoint: each
read returns the rows it names and no other organization's, target's or state's, and the
writes change only what they say."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from app.db import certificates
from app.db.models import Certificate, Target
from app.db.session import transaction
from tests.support.jobs import certified_target, queue, run_inline


def certificate(factory, cert_id: str) -> Certificate:  # type: ignore[no-untyped-def]
    with factory() as session:
        found = session.scalar(
            select(Certificate).where(Certificate.certification_id == uuid.UUID(cert_id))
        )
    assert found is not None
    return found


def certified_twice(client, auth, factory, settings, reference_url):  # type: ignore[no-untyped-def]
    """(target id, its first certificate, its second) of a target certified twice in process."""
    target, first = certified_target(client, auth, factory, settings, f"{reference_url}/v1")
    second = queue(factory, settings, auth, target)
    assert run_inline(factory, settings, second) == "succeeded"
    return target, certificate(factory, first), certificate(factory, second)


def test_a_certifications_certificate_is_its_organizations_only(
    client, auth, factory, settings, reference_url
) -> None:  # type: ignore[no-untyped-def]
    _, cert_id = certified_target(client, auth, factory, settings, f"{reference_url}/v1")
    issued = certificate(factory, cert_id)
    with factory() as session:
        mine = certificates.for_certification(
            session, issued.organization_id, issued.certification_id
        )
        theirs = certificates.for_certification(session, uuid.uuid4(), issued.certification_id)
    assert mine is not None and mine.id == issued.id
    assert theirs is None


def test_newest_first_the_superseded_after_the_one_standing(
    client, auth, factory, settings, reference_url
) -> None:  # type: ignore[no-untyped-def]
    target, older, newer = certified_twice(client, auth, factory, settings, reference_url)
    assert older.superseded_at is not None and newer.superseded_at is None
    # Both in the same second, as issued_at's precision allows: the standing one is newer.
    with transaction(factory) as session:
        session.execute(
            update(Certificate).where(Certificate.id == older.id).values(issued_at=newer.issued_at)
        )
    target_id = uuid.UUID(target)
    with factory() as session:
        rows = certificates.newest_unrevoked(session, target_id, limit=10)
        smoke = certificates.newest_unrevoked(session, target_id, suite="smoke", limit=10)
        other = certificates.newest_unrevoked(session, target_id, suite="standard", limit=10)
        no_region = certificates.newest_unrevoked(
            session, target_id, region=None, any_region=False, limit=10
        )
        eu = certificates.newest_unrevoked(
            session, target_id, region="eu-west-1", any_region=False, limit=10
        )
        one = certificates.newest_unrevoked(session, target_id, limit=1)
        in_force = certificates.newest_in_force(session, target_id)
    assert [r.id for r in rows] == [newer.id, older.id] == [r.id for r in smoke]
    assert [r.id for r in no_region] == [newer.id, older.id]
    assert other == [] and eu == [] and [r.id for r in one] == [newer.id]
    assert in_force is not None and in_force.id == newer.id


def test_newest_in_force_decides_a_tie_by_id_and_supersede_all_ends_it(
    client, auth, factory, settings, reference_url
) -> None:  # type: ignore[no-untyped-def]
    target, a, b = certified_twice(client, auth, factory, settings, reference_url)
    with transaction(factory) as session:  # two in force, issued in the same second
        session.execute(
            update(Certificate)
            .where(Certificate.id.in_([a.id, b.id]))
            .values(issued_at=b.issued_at, superseded_at=None)
        )
    target_id = uuid.UUID(target)
    with factory() as session:
        picked = [certificates.newest_in_force(session, target_id) for _ in range(3)]
    assert {p.id for p in picked if p is not None} == {max(a.id, b.id)}
    with transaction(factory) as session:
        assert certificates.supersede_all(session, target_id) == 2
    with transaction(factory) as session:
        assert certificates.supersede_all(session, target_id) == 0  # nothing left to end
    with factory() as session:
        assert certificates.newest_in_force(session, target_id) is None
        assert len(certificates.newest_unrevoked(session, target_id, limit=10)) == 2


def test_expiring_lists_certified_ones_inside_their_live_targets_window(
    client, auth, factory, settings, reference_url
) -> None:  # type: ignore[no-untyped-def]
    target, cert_id = certified_target(
        client, auth, factory, settings, f"{reference_url}/v1", recertify_before_days=7
    )
    issued = certificate(factory, cert_id)
    assert issued.certified
    target_id = uuid.UUID(target)

    def listed() -> bool:
        with factory() as session:
            return any(c.id == issued.id for c, _, _ in certificates.expiring(session, 10_000))

    assert not listed()  # valid for weeks yet
    soon = datetime.now(UTC) + timedelta(days=3)
    with transaction(factory) as session:
        session.execute(
            update(Certificate).where(Certificate.id == issued.id).values(valid_until=soon)
        )
    with factory() as session:
        found = [
            (c, j, t) for c, j, t in certificates.expiring(session, 10_000) if c.id == issued.id
        ]
    assert len(found) == 1
    _, job, row = found[0]
    assert job.id == issued.certification_id and row.id == target_id
    with factory() as session:
        assert certificates.judges_of(session, issued.id) == {}  # none bound to this job
    with transaction(factory) as session:
        session.execute(
            update(Target).where(Target.id == target_id).values(deleted_at=datetime.now(UTC))
        )
    assert not listed()  # a deleted target is never certified again
