"""Postgres decides: one claim wins however many deliveries race; no result is written twice."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import func, select

from app.certification.results import CheckOutcome, CheckResult
from app.db import jobs
from app.db.models import Certification, CheckResultRow, JobStatus


def make_target(client, auth, reference_url: str) -> str:  # type: ignore[no-untyped-def]
    target = client.post(
        "/v1/targets",
        json={
            "name": f"race-{uuid.uuid4().hex[:6]}",
            "model": "reference-model",
            "base_url": f"{reference_url}/v1",
        },
        headers=auth,
    ).get_json()["id"]
    return target


def test_racing_claims_have_one_winner(client, auth, reference_url, factory, settings) -> None:  # type: ignore[no-untyped-def]
    from app.schemas.resources import CertificationCreate
    from app.services.certifications import create_certification

    target_id = make_target(client, auth, reference_url)
    who = _principal(client, auth, factory)
    view, _ = create_certification(
        factory, settings, lambda *a: False, who, CertificationCreate(target_id=target_id), None
    )
    winners: list[jobs.Claim] = []
    barrier = threading.Barrier(16)

    def contender(n: int) -> None:
        barrier.wait()
        claim = jobs.claim_job(factory, view.id, f"racer-{n}", 30)
        if claim is not None:
            winners.append(claim)

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    claim = winners[0]

    result = CheckResult(
        name="connectivity",
        outcome=CheckOutcome.PASSED,
        required=True,
        passed=1,
        failed=0,
        errored=0,
        total=1,
        statistic=1.0,
        threshold=0.5,
        lower=0.2,
        upper=1.0,
        duration_seconds=0.1,
    )
    stored = jobs.save_check(factory, claim, result)
    assert stored is not None and stored.row.check_name == "connectivity"
    assert jobs.save_check(factory, claim, result) is None  # a second write is a no-op
    stale = jobs.Claim(**{**claim.__dict__, "attempt": claim.attempt + 1})
    assert jobs.save_check(factory, stale, result) is None  # not our attempt: fenced
    assert jobs.finish(factory, claim, JobStatus.SUCCEEDED) is True
    assert jobs.finish(factory, claim, JobStatus.FAILED) is False  # exactly one terminal state
    with factory() as session:
        row = session.get(Certification, view.id)
        assert row.status is JobStatus.SUCCEEDED and row.attempt == 1
        assert (
            session.scalar(
                select(func.count())
                .select_from(CheckResultRow)
                .where(CheckResultRow.certification_id == view.id)
            )
            == 1
        )
    assert jobs.claim_job(factory, view.id, "late", 30) is None  # finished: nothing to claim


def _principal(client, auth, factory):  # type: ignore[no-untyped-def]
    from app.services.auth import authenticate

    with factory.begin() as session:
        return authenticate(session, auth["Authorization"].split(" ", 1)[1])
