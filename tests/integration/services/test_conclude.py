"""conclude.first_delivery: a first delivery's success in one statement, on the real database,
and the ends it leaves to jobs.finish (a webhook to tell, a certificate of another
fingerprint to supersede, a job no longer ours), where it must write nothing at all."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from app.certification import certificates as certs
from app.certification.results import CheckResult, Grade, Sample
from app.certification.suites import get_suite
from app.db import jobs
from app.db.models import Certificate, Certification, CheckResultRow, SampleRow, Target
from app.db.session import autocommit_engine, transaction
from app.services import certificates, conclude, signing
from tests.support.api import create_target
from tests.support.jobs import certified_target, queue, run_inline
from tests.support.results import check_result
from tests.support.sql import statements

LISTING = "reference-model"


def connectivity(models: str = LISTING) -> CheckResult:
    """A passed connectivity check that saw `models` listed (the fingerprint's listing)."""
    samples = tuple(
        Sample(
            index=i,
            prompt_id=f"p-{i}",
            grade=Grade.PASS,
            status_code=200,
            response_excerpt=models,
            latency_ms=1.5,
        )
        for i in range(3)
    )
    return check_result("connectivity", samples, threshold=0.9, lower=0.5)


def claimed(factory, settings, auth, target: str):  # type: ignore[no-untyped-def]
    job_id = uuid.UUID(queue(factory, settings, auth, target, suite="bench-trivial"))
    claim = jobs.claim_job(factory, job_id, "test-conclude", 30)
    assert claim is not None and claim.suite_version
    with factory() as session:
        row = session.get(Target, uuid.UUID(target))
        assert row is not None
        subject = certificates.Subject(
            job_id=job_id,
            target_id=row.id,
            target_name=row.name,
            provider=row.provider.value,
            model=row.model,
            endpoint=row.base_url or "",
            region=None,
            suite_name=claim.suite_name,
            suite_version=claim.suite_version,
            suite_hash=claim.suite_hash,
        )
    return claim, subject


def end(factory, settings, claim, subject, models: str = LISTING):  # type: ignore[no-untyped-def]
    signer = signing.signer_for(settings)
    signing.ensure_registered(factory, signer)
    return conclude.first_delivery(
        factory,
        settings,
        signer,
        claim,
        subject,
        [],
        connectivity(models),
        (),
        datetime.now(UTC).replace(microsecond=0),
    )


def written(factory, job_id: uuid.UUID) -> tuple[str, int, int, int]:  # type: ignore[no-untyped-def]
    """(status, check rows, sample rows, certificates) of the job."""
    with factory() as session:
        status = session.scalar(select(Certification.status).where(Certification.id == job_id))
        counts = [
            session.scalar(
                select(func.count()).select_from(model).where(model.certification_id == job_id)
            )
            for model in (CheckResultRow, SampleRow, Certificate)
        ]
    assert status is not None
    return (status.value, *counts)  # type: ignore[return-value]


def test_a_first_delivery_ends_in_one_statement(
    client,
    auth,
    factory,
    settings,  # type: ignore[no-untyped-def]
    reference_url,
) -> None:
    target = create_target(client, auth, f"{reference_url}/v1")
    cert_id = queue(factory, settings, auth, target, suite="bench-trivial")
    signing.ensure_registered(factory, signing.signer_for(settings))  # as the worker's warm-up
    with autocommit_engine(factory.kw["bind"]).connect():  # its first connection's set-up
        pass
    with statements() as seen:
        assert run_inline(factory, settings, cert_id) == "succeeded"
    # The claim (with the job's inputs) and the end: no BEGIN, no COMMIT, nothing else.
    assert len(seen) == 2 and "claimed AS" in seen[0] and "issued AS" in seen[1], seen
    job = client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()
    assert job["status"] == "succeeded" and job["verdict"] is not None
    assert job["progress"]["done"] == job["progress"]["total"] > 0
    certificate = client.get(f"/v1/certifications/{cert_id}/certificate", headers=auth)
    document = certificate.get_json()
    assert certificate.status_code == 200 and document["payload"]["verdict"] == job["verdict"]
    keys = client.get("/v1/signing-keys", headers=auth).get_json()["keys"]
    certs.verify(
        {"payload": document["payload"], "signature": document["signature"]},
        {k["key_id"]: k["public_key"] for k in keys},
    )
    assert document["payload"]["suite"]["version"] == get_suite("bench-trivial").version
    with factory() as session:
        row = session.get(Target, uuid.UUID(target))
        assert row is not None
        assert row.endpoint_fingerprint == document["payload"]["endpoint_fingerprint"]
        assert document["payload"]["target"] == {"id": target, "name": row.name}


def test_one_statement_writes_the_check_its_samples_and_the_certificate(  # type: ignore[no-untyped-def]
    client, auth, factory, settings, reference_url
) -> None:
    target = create_target(client, auth, f"{reference_url}/v1")
    claim, subject = claimed(factory, settings, auth, target)
    ended = end(factory, settings, claim, subject)
    assert ended is not None and ended[0] is True
    assert ended[1].verdict.value == "certified" and ended[1].valid_until is not None
    assert written(factory, claim.certification_id) == ("succeeded", 1, 3, 1)
    with factory() as session:
        job = session.get(Certification, claim.certification_id)
        assert job is not None and job.finished_at is not None and job.lease_until is None
        assert (job.verdict.value, job.score, job.valid_until) == (
            "certified",
            ended[1].score,
            ended[1].valid_until,
        )
    again = end(factory, settings, claim, subject)  # not twice: the job is no longer ours
    assert again is not None and again[0] is False
    assert written(factory, claim.certification_id) == ("succeeded", 1, 3, 1)


def test_a_job_no_longer_ours_gets_nothing_written(
    client,
    auth,
    factory,
    settings,  # type: ignore[no-untyped-def]
    reference_url,
) -> None:
    target = create_target(client, auth, f"{reference_url}/v1")
    claim, subject = claimed(factory, settings, auth, target)
    with transaction(factory) as session:  # another delivery claimed it since
        session.execute(
            update(Certification)
            .where(Certification.id == claim.certification_id)
            .values(attempt=Certification.attempt + 1)
        )
    ended = end(factory, settings, claim, subject)
    assert ended is not None and ended[0] is False
    assert written(factory, claim.certification_id) == ("running", 0, 0, 0)


def test_a_subscribed_webhook_leaves_the_end_to_a_transaction(  # type: ignore[no-untyped-def]
    client, auth, factory, settings, reference_url
) -> None:
    target = create_target(client, auth, f"{reference_url}/v1")
    r = client.post(
        "/v1/webhooks",
        json={
            "url": "http://127.0.0.1:9/hook",
            "target_id": target,
            "events": ["certification.failed"],
        },
        headers=auth,
    )
    assert r.status_code == 201, r.get_json()
    claim, subject = claimed(factory, settings, auth, target)
    assert end(factory, settings, claim, subject) is None  # even one for other events
    assert written(factory, claim.certification_id) == ("running", 0, 0, 0)


def test_another_fingerprint_leaves_the_end_to_a_transaction(  # type: ignore[no-untyped-def]
    client, auth, factory, settings, reference_url
) -> None:
    target, first = certified_target(client, auth, factory, settings, f"{reference_url}/v1")
    claim, subject = claimed(factory, settings, auth, target)
    # The same endpoint listing other models: the current certificate must be superseded and
    # its suite queued again, which the one statement does not do.
    assert end(factory, settings, claim, subject, models="another-model") is None
    assert written(factory, claim.certification_id) == ("running", 0, 0, 0)
    current = client.get(f"/v1/certifications/{first}/certificate", headers=auth).get_json()
    assert current["status"] == "valid"


def test_parameters_never_become_values_to_set() -> None:
    """SQLAlchemy takes an execution parameter named after a column of a table a statement
    UPDATEs as a value to SET, even in a CTE: the one statement's UPDATEs set only theirs."""
    from sqlalchemy.dialects import postgresql

    params = conclude._STATEMENT.no_row
    sql = str(
        conclude._STATEMENT.statement.compile(
            dialect=postgresql.dialect(), column_keys=list(params)
        )
    )
    sets = [part.split(" WHERE ")[0] for part in sql.split(" SET ")[1:]]
    assert [
        sorted(c.split("=")[0] for c in s.replace("\n", " ").split(", ") if "=" in c) for s in sets
    ] == [
        sorted(
            [
                "status",
                "verdict",
                "score",
                "lease_until",
                "progress_done",
                "progress_running",
                "progress_total",
                "finished_at",
                "error_cause",
                "error_message",
                "valid_until",
            ]
        ),
        ["superseded_at"],
        ["endpoint_fingerprint"],
    ]


def test_every_statement_of_a_job_fits_psycopgs_conversion_cache(  # type: ignore[no-untyped-def]
    client, auth, factory, settings, reference_url
) -> None:
    """psycopg converts placeholders once per query, but caches only queries up to a length
    (longer ones are converted on every execution): app/db/session.py raises it above the
    one statement's, which is longer than psycopg's default."""
    from psycopg import _queries

    target = create_target(client, auth, f"{reference_url}/v1")
    cert_id = queue(factory, settings, auth, target, suite="bench-trivial")
    signing.ensure_registered(factory, signing.signer_for(settings))
    with statements() as seen:
        assert run_inline(factory, settings, cert_id) == "succeeded"
    assert 4096 < max(len(s) for s in seen) <= _queries.MAX_CACHED_STATEMENT_LENGTH
    # Nor does it cache a query with more parameters than this (not raised: ours fit).
    parameters = len(conclude._STATEMENT.plan(factory.kw["bind"].dialect).compiled.bind_names)
    assert parameters <= _queries.MAX_CACHED_STATEMENT_PARAMS
