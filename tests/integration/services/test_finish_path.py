"""The job path's folded statements, on the real database against the reference endpoint.

A first delivery decides and certifies from the results it stored itself, without reading them
back: what it signs must be exactly what a reader of the stored rows would compute. The claim
reads the target and secret in its own statement, the terminal statement returns the target
and the webhook subscriptions, and the certificate's writes are one statement.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from app.certification import certificates as certs
from app.certification.results import CheckOutcome, Grade, Sample
from app.db import jobs
from app.db.models import Certificate, Certification, SampleRow, Target, WebhookDelivery
from app.db.session import transaction
from app.services import conclude, fingerprint
from app.services.certificates import as_result
from app.services.targets import endpoint_url
from tests.support.api import create_target
from tests.support.jobs import certified_target, queue, run_inline
from tests.support.results import check_result


def test_a_first_delivery_signs_what_it_stored(
    client,
    auth,
    factory,
    settings,  # type: ignore[no-untyped-def]
    reference_url,
) -> None:
    target, cert_id = certified_target(client, auth, factory, settings, f"{reference_url}/v1")
    job_id = uuid.UUID(cert_id)
    with factory() as session:
        job = session.get(Certification, job_id)
        assert job is not None and job.delivery_count == 1
        payload = session.scalar(
            select(Certificate.payload).where(Certificate.certification_id == job_id)
        )
        rows = jobs.stored_results(session, job_id)
        listing = fingerprint.model_listing(session, job_id, rows)  # read from the samples
        target_row = session.get(Target, uuid.UUID(target))
    assert payload is not None and len(rows) >= 2 and listing  # a checkpoint and the last
    assert payload["results_digest"] == certs.results_digest([as_result(r) for r in rows])
    decision = conclude.decide(settings, rows, datetime.now(UTC))
    assert payload["verdict"] == decision.verdict.value == job.verdict.value
    assert job.score == decision.score
    assert target_row is not None
    assert (
        payload["endpoint_fingerprint"]
        == fingerprint.compute(
            target_row.provider.value, endpoint_url(target_row, None), target_row.model, listing
        )
        == target_row.endpoint_fingerprint
    )


def test_progress_total_planned_at_creation_and_written_again_by_the_claim(  # type: ignore[no-untyped-def]
    client, auth, factory, settings, reference_url
) -> None:
    target = create_target(
        client, auth, f"{reference_url}/v1", capabilities={"streaming": True, "tools": True}
    )
    cert_id = queue(factory, settings, auth, target, suite="standard")
    planned = client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()["progress"]
    assert planned["done"] == 0 and planned["total"] > 0  # known before any worker runs
    # The target changes before a worker claims the job: fewer checks apply.
    with transaction(factory) as session:
        session.execute(
            update(Target)
            .where(Target.id == uuid.UUID(target))
            .values(capabilities={"streaming": False, "tools": False})
        )
    assert run_inline(factory, settings, cert_id) == "succeeded"
    progress = client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()["progress"]
    assert progress["done"] == progress["total"] < planned["total"]


def test_the_terminal_statement_records_the_subscribed_webhooks_only(  # type: ignore[no-untyped-def]
    client, auth, factory, settings, reference_url
) -> None:
    target = create_target(client, auth, f"{reference_url}/v1")
    other = create_target(client, auth, f"{reference_url}/v1")
    hooks = {}
    for name, body in {
        "this_target": {"target_id": target, "events": ["certification.succeeded"]},
        "all_targets": {"events": ["certification.succeeded", "certification.failed"]},
        "other_target": {"target_id": other, "events": ["certification.succeeded"]},
        "other_event": {"target_id": target, "events": ["certification.failed"]},
    }.items():
        r = client.post(
            "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", **body}, headers=auth
        )
        assert r.status_code == 201, r.get_json()
        hooks[name] = uuid.UUID(r.get_json()["id"])
    cert_id = queue(factory, settings, auth, target)
    assert run_inline(factory, settings, cert_id) == "succeeded"
    with factory() as session:
        recorded = {
            row.webhook_id: row
            for row in session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.webhook_id.in_(list(hooks.values())))
            )
        }
    assert set(recorded) == {hooks["this_target"], hooks["all_targets"]}
    for row in recorded.values():
        assert row.event == "certification.succeeded" and row.status == "pending"
        assert row.payload["data"]["certification_id"] == cert_id


def test_a_deleted_target_fails_the_claimed_job(
    client,
    auth,
    factory,
    settings,  # type: ignore[no-untyped-def]
    reference_url,
) -> None:
    target = create_target(client, auth, f"{reference_url}/v1")
    cert_id = queue(factory, settings, auth, target)
    with transaction(factory) as session:  # deleted after the POST, before the claim
        session.execute(
            update(Target)
            .where(Target.id == uuid.UUID(target))
            .values(deleted_at=datetime.now(UTC))
        )
    assert run_inline(factory, settings, cert_id) == "failed"
    with factory() as session:
        job = session.get(Certification, uuid.UUID(cert_id))
        assert job is not None and job.error_cause == "invalid_target" and job.attempt == 1
    assert run_inline(factory, settings, cert_id) == "not_claimable"  # terminal: nothing left


def test_a_check_and_its_samples_are_stored_together_exactly(
    client,
    auth,
    factory,
    settings,  # type: ignore[no-untyped-def]
    reference_url,
) -> None:
    target = create_target(client, auth, f"{reference_url}/v1")
    job_id = uuid.UUID(queue(factory, settings, auth, target))
    claim = jobs.claim_job(factory, job_id, "test-samples", 30)
    assert claim is not None
    samples = tuple(
        Sample(
            index=i,
            prompt_id=f"p-{i}",
            grade=(Grade.PASS, Grade.FAIL, Grade.ERROR)[i % 3],
            request_summary={"messages": [{"role": "user", "content": 'naïve "quote" ✓'}]},
            response_excerpt=None if i % 4 == 0 else f"ünïcode {i} \\ ' \" 🚀 sk-secret-123",
            latency_ms=None if i % 5 == 0 else i + 0.25,
            ttft_ms=1e-7 * i,
            status_code=200 if i % 2 else None,
            error=None if i % 3 != 2 else "timeout",
            error_cause=None if i % 3 != 2 else "timeout",
            detail={"n": i, "nested": [1, None]},
        )
        for i in range(500)
    )
    result = check_result(
        "chat",
        samples,
        outcome=CheckOutcome.FAILED,
        threshold=0.6,
        lower=0.45,
        upper=0.55,
        duration_seconds=1.5,
        details={},
    )
    assert (result.passed, result.failed, result.errored, result.statistic) == (167, 167, 166, 0.5)
    stored = jobs.save_check(factory, claim, result, ("sk-secret-123",))
    assert stored is not None and len(stored.excerpts) == sum(
        1 for s in samples if s.status_code == 200 and s.response_excerpt is not None
    )
    assert all("sk-secret-123" not in e and "[REDACTED]" in e for e in stored.excerpts)
    with factory() as session:
        rows = session.scalars(
            select(SampleRow)
            .where(SampleRow.certification_id == job_id)
            .order_by(SampleRow.sample_index)
        ).all()
    assert len(rows) == 500
    for row, sample in zip(rows, samples, strict=True):
        assert (row.check_name, row.sample_index, row.prompt_id, row.grade) == (
            "chat",
            sample.index,
            sample.prompt_id,
            sample.grade.value,
        )
        assert row.request_summary == sample.request_summary and row.detail == sample.detail
        assert row.response_excerpt == jobs.redact(sample.response_excerpt, ("sk-secret-123",))
        assert (row.latency_ms, row.ttft_ms, row.status_code, row.error, row.error_cause) == (
            sample.latency_ms,
            sample.ttft_ms,
            sample.status_code,
            sample.error,
            sample.error_cause,
        )
    assert jobs.save_check(factory, claim, result) is None  # stored already: nothing added
    with factory() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(SampleRow)
                .where(SampleRow.certification_id == job_id)
            )
            == 500
        )
