"""The jobs repository (app/db/jobs.py) on the real database: each transition moves a job
only from its sources (app/db/lifecycle.py), every ending writes its webhook event and, out
of attempts, its dead letter (`_ended`), and the reads return the organization's own rows."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from app.certification.results import CheckResult, Grade, Sample
from app.db import jobs, lifecycle
from app.db.lifecycle import JobStatus
from app.db.models import Certification, DeadLetter, Webhook, WebhookDelivery
from app.db.session import transaction
from tests.support.api import create_target as new_target
from tests.support.jobs import queue
from tests.support.results import check_result


@pytest.fixture()
def target(client, auth, reference_url) -> str:  # type: ignore[no-untyped-def]
    return new_target(client, auth, f"{reference_url}/v1")


def job(factory, settings, auth, target: str) -> uuid.UUID:  # type: ignore[no-untyped-def]
    return uuid.UUID(queue(factory, settings, auth, target))


def row(factory, cert_id: uuid.UUID) -> Certification:  # type: ignore[no-untyped-def]
    with factory() as session:
        found = session.get(Certification, cert_id)
    assert found is not None
    return found


def set_columns(factory, cert_id: uuid.UUID, **values) -> None:  # type: ignore[no-untyped-def]
    with transaction(factory) as session:
        session.execute(update(Certification).where(Certification.id == cert_id).values(**values))


def cancel(factory, *cert_ids: uuid.UUID) -> None:  # type: ignore[no-untyped-def]
    """Leave nothing waiting for another test's sweeper to publish."""
    with transaction(factory) as session:
        for cert_id in cert_ids:
            jobs.cancel_waiting(session, cert_id, requested_before=False)


def subscribe(factory, cert_id: uuid.UUID) -> uuid.UUID:  # type: ignore[no-untyped-def]
    """A webhook of the job's organization that hears of every ending."""
    job_row = row(factory, cert_id)
    hook = Webhook(
        organization_id=job_row.organization_id,
        url="https://hooks.example.com/modelcert",
        secret_ciphertext=b"not used here",
        events=[f"certification.{s.value}" for s in lifecycle.TERMINAL_STATUSES]
        + ["dead_letter.created"],
    )
    with transaction(factory) as session:
        session.add(hook)
    return hook.id


def deliveries(factory, hook_id: uuid.UUID) -> list[str]:  # type: ignore[no-untyped-def]
    with factory() as session:
        return sorted(
            session.scalars(
                select(WebhookDelivery.event).where(WebhookDelivery.webhook_id == hook_id)
            )
        )


def letters(factory, cert_id: uuid.UUID) -> list[DeadLetter]:  # type: ignore[no-untyped-def]
    with factory() as session:
        return list(
            session.scalars(select(DeadLetter).where(DeadLetter.certification_id == cert_id))
        )


def check(name: str, grades: tuple[Grade, ...] = (Grade.PASS,)) -> CheckResult:
    samples = tuple(
        Sample(index=i, prompt_id=f"p{i}", grade=g, status_code=200, response_excerpt=f"m{i}")
        for i, g in enumerate(grades)
    )
    return check_result(name, samples)


def test_fail_out_of_attempts_dead_letters_and_tells_the_webhook(
    factory, settings, auth, target
) -> None:  # type: ignore[no-untyped-def]
    cert_id = job(factory, settings, auth, target)
    hook = subscribe(factory, cert_id)
    claim = jobs.claim_job(factory, cert_id, "repo-test", 30)
    assert claim is not None
    assert jobs.fail(factory, claim, "server_error", "HTTP 500", dead_letter=True) is True
    assert jobs.fail(factory, claim, "server_error", "again") is False  # one ending only
    ended = row(factory, cert_id)
    assert ended.status is JobStatus.FAILED and ended.error_cause == "server_error"
    assert ended.lease_until is None and ended.finished_at is not None
    [letter] = letters(factory, cert_id)
    assert (letter.cause, letter.last_error, letter.attempts) == ("server_error", "HTTP 500", 1)
    assert deliveries(factory, hook) == ["certification.failed", "dead_letter.created"]


def test_stop_cancels_the_running_job_it_holds(factory, settings, auth, target) -> None:  # type: ignore[no-untyped-def]
    cert_id = job(factory, settings, auth, target)
    hook = subscribe(factory, cert_id)
    claim = jobs.claim_job(factory, cert_id, "repo-test", 30)
    assert claim is not None
    stale = jobs.Claim(**{**claim.__dict__, "attempt": claim.attempt + 1})
    assert jobs.stop(factory, stale) is False  # fenced on the claimed attempt
    assert jobs.stop(factory, claim) is True
    stopped = row(factory, cert_id)
    assert stopped.status is JobStatus.CANCELLED and stopped.error_cause == "cancelled"
    assert letters(factory, cert_id) == []
    assert deliveries(factory, hook) == ["certification.cancelled"]


def test_time_out_ends_only_a_running_job(factory, settings, auth, target) -> None:  # type: ignore[no-untyped-def]
    cert_id = job(factory, settings, auth, target)
    jobs.time_out(factory, cert_id)
    assert row(factory, cert_id).status is JobStatus.QUEUED  # not running: nothing to time out
    assert jobs.claim_job(factory, cert_id, "repo-test", 30) is not None
    jobs.time_out(factory, cert_id)
    ended = row(factory, cert_id)
    assert ended.status is JobStatus.TIMED_OUT and ended.error_cause == "timeout"


def test_cancel_waiting_from_the_api_and_from_a_claim(factory, settings, auth, target) -> None:  # type: ignore[no-untyped-def]
    api = job(factory, settings, auth, target)
    with transaction(factory) as session:
        # a claim only cancels a job whose cancel was requested before
        assert jobs.cancel_waiting(session, api, requested_before=True) is False
        assert jobs.cancel_waiting(session, api, requested_before=False) is True
        assert jobs.cancel_waiting(session, api, requested_before=False) is False  # ended
    cancelled = row(factory, api)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.cancel_requested_at is not None
    assert cancelled.error_message == "cancelled by request before it ran"

    requested = job(factory, settings, auth, target)
    set_columns(factory, requested, cancel_requested_at=datetime.now(UTC))
    assert jobs.claim_job(factory, requested, "repo-test", 30) is None  # no claim: settled
    assert row(factory, requested).status is JobStatus.CANCELLED


def test_request_cancel_only_marks_a_running_job(factory, settings, auth, target) -> None:  # type: ignore[no-untyped-def]
    cert_id = job(factory, settings, auth, target)
    with transaction(factory) as session:
        assert jobs.request_cancel(session, cert_id) is False
    claim = jobs.claim_job(factory, cert_id, "repo-test", 30)
    assert claim is not None
    with transaction(factory) as session:
        assert jobs.request_cancel(session, cert_id) is True
        assert jobs.status_of(session, cert_id) is JobStatus.RUNNING
    assert jobs.renew_lease(factory, claim, 30) == (True, True)  # the worker notices
    assert jobs.stop(factory, claim) is True


def test_settle_unclaimable_exhausts_a_job_out_of_attempts(factory, settings, auth, target) -> None:  # type: ignore[no-untyped-def]
    cert_id = job(factory, settings, auth, target)
    set_columns(factory, cert_id, attempt=2, max_attempts=2, status=JobStatus.RETRYING)
    assert jobs.claim_with_inputs(factory, cert_id, "repo-test", 30) is None
    jobs.settle_unclaimable(factory, cert_id)
    jobs.settle_unclaimable(factory, cert_id)  # once: the second finds it ended
    ended = row(factory, cert_id)
    assert ended.status is JobStatus.FAILED and ended.error_cause == "max_attempts"
    assert [letter.cause for letter in letters(factory, cert_id)] == ["max_attempts"]


def test_expire_leases_requeues_or_dead_letters(factory, settings, auth, target) -> None:  # type: ignore[no-untyped-def]
    again, last = job(factory, settings, auth, target), job(factory, settings, auth, target)
    for cert_id in (again, last):
        assert jobs.claim_job(factory, cert_id, "repo-test", 30) is not None
        set_columns(factory, cert_id, lease_until=datetime.now(UTC) - timedelta(minutes=1))
    set_columns(factory, last, max_attempts=1)
    with transaction(factory) as session:
        requeued, dead_lettered = jobs.expire_leases(session)
    assert requeued >= 1 and dead_lettered >= 1  # (and any other test's expired job)
    requeued_row, failed_row = row(factory, again), row(factory, last)
    assert requeued_row.status is lifecycle.EXPIRE_LEASE.target
    assert requeued_row.dispatched_at is None and requeued_row.next_attempt_at is not None
    assert failed_row.status is lifecycle.EXPIRE_EXHAUSTED.target
    assert [letter.cause for letter in letters(factory, last)] == ["lease_expired"]
    cancel(factory, again)


def test_requeue_marks_the_dead_letters_replayed(factory, settings, auth, target) -> None:  # type: ignore[no-untyped-def]
    cert_id = job(factory, settings, auth, target)
    with transaction(factory) as session:
        assert jobs.requeue(session, cert_id, 3) is False  # queued: nothing to requeue
    claim = jobs.claim_job(factory, cert_id, "repo-test", 30)
    assert claim is not None
    jobs.fail(factory, claim, "server_error", "HTTP 500", dead_letter=True)
    with transaction(factory) as session:
        assert jobs.target_deleted_at(session, cert_id) is None
        letter = jobs.dead_letter_for_update(
            session, letters(factory, cert_id)[0].id, claim.organization_id
        )
        assert letter is not None
        assert jobs.dead_letter_for_update(session, letter.id, uuid.uuid4()) is None  # not theirs
        assert jobs.requeue(session, cert_id, 3) is True
    again = row(factory, cert_id)
    assert again.status is JobStatus.QUEUED and again.max_attempts == again.attempt + 3
    assert again.error_cause is None and again.finished_at is None
    assert all(letter.replayed_at is not None for letter in letters(factory, cert_id))
    queue_name, priority = jobs.routing_of(factory, cert_id)
    assert (queue_name, priority.value) == (again.queue, again.priority.value)
    cancel(factory, cert_id)


def test_the_sweep_lock_admits_one_sweeper(factory) -> None:  # type: ignore[no-untyped-def]
    held, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with transaction(factory) as session:
            seen.append(jobs.lock_for_sweep(session))
            held.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert held.wait(10)
        with transaction(factory) as session:
            assert jobs.lock_for_sweep(session) is False
    finally:
        release.set()
        thread.join()
    assert seen == [True]
    with transaction(factory) as session:
        assert jobs.lock_for_sweep(session) is True  # released with its transaction


def test_publish_marks_and_the_sweepers_due_list(factory, settings, auth, target) -> None:  # type: ignore[no-untyped-def]
    cert_id = job(factory, settings, auth, target)
    set_columns(factory, cert_id, created_at=datetime.now(UTC) - timedelta(minutes=5))

    def due() -> list[uuid.UUID]:
        with transaction(factory) as session:
            rows = jobs.due_for_publish(
                session, publish_grace_seconds=2, lost_after_seconds=60, batch=10_000
            )
            return [r.id for r in rows]

    assert cert_id in due()  # never dispatched
    jobs.mark_published(factory, cert_id)
    assert row(factory, cert_id).dispatched_at is not None
    assert cert_id not in due()  # dispatched just now: not lost yet
    with transaction(factory) as session:
        low = [r.id for r in jobs.waiting_low_priority(session, 0, 10_000)]
    assert cert_id not in low  # normal priority never ages
    cancel(factory, cert_id)


def test_oldest_waiting_seconds_counts_waiting_jobs(factory, settings, auth, target) -> None:  # type: ignore[no-untyped-def]
    cert_id = job(factory, settings, auth, target)
    set_columns(factory, cert_id, created_at=datetime.now(UTC) - timedelta(hours=2))
    with factory.kw["bind"].connect() as conn:
        assert jobs.oldest_waiting_seconds(conn) >= 7200
    set_columns(factory, cert_id, status=JobStatus.CANCELLED)


def test_results_and_evidence_reads(factory, settings, auth, target) -> None:  # type: ignore[no-untyped-def]
    cert_id = job(factory, settings, auth, target)
    claim = jobs.claim_job(factory, cert_id, "repo-test", 30)
    assert claim is not None
    grades = (Grade.PASS, Grade.FAIL, Grade.ERROR, Grade.FAIL)
    assert jobs.save_check(factory, claim, check("connectivity", grades)) is not None
    assert jobs.save_check(factory, claim, check("basic_chat")) is not None
    assert jobs.resume_point(factory, cert_id) == ({"connectivity", "basic_chat"}, None)
    with factory() as session:
        assert [c.check_name for c in jobs.check_rows(session, cert_id)] == [
            "connectivity",
            "basic_chat",
        ]
        assert jobs.sample_count(session, cert_id) == 5
        worst = jobs.worst_samples(session, cert_id, 3)
        assert [s.grade for s in worst] == ["fail", "fail", "error"]
        assert jobs.answered_excerpts(session, cert_id, ["connectivity"]) == [
            "m0",
            "m1",
            "m2",
            "m3",
        ]
        only = session.scalars(jobs.samples_of(cert_id, "basic_chat")).all()
        assert [(s.check_name, s.sample_index) for s in only] == [("basic_chat", 0)]
        assert jobs.exists_for(session, claim.organization_id, cert_id)
        assert not jobs.exists_for(session, uuid.uuid4(), cert_id)
        assert jobs.load(session, uuid.uuid4(), cert_id) is None
    streamed = list(jobs.samples_streamed(factory, cert_id, 2))
    assert [(s.check_name, s.sample_index) for s in streamed] == [
        ("connectivity", 0),
        ("connectivity", 1),
        ("connectivity", 2),
        ("connectivity", 3),
        ("basic_chat", 0),
    ]
    assert jobs.stop(factory, claim) is True


def test_active_exists_and_the_latest_jobs(factory, settings, auth, target) -> None:  # type: ignore[no-untyped-def]
    first = job(factory, settings, auth, target)
    claim = jobs.claim_job(factory, first, "repo-test", 30)
    assert claim is not None
    with factory() as session:
        assert jobs.active_exists(session, claim.target_id, None, claim.suite_name)
        assert not jobs.active_exists(session, claim.target_id, "elsewhere", claim.suite_name)
    assert jobs.finish(factory, claim, JobStatus.SUCCEEDED) is True
    with factory() as session:
        assert not jobs.active_exists(session, claim.target_id, None, claim.suite_name)
    second = job(factory, settings, auth, target)
    with factory() as session:
        assert jobs.judges_of(session, second) == {}
        latest = jobs.latest_with_target_name(session, claim.organization_id, 10)
        assert [j.id for j, _ in latest][:2] == [second, first]
        assert jobs.by_idempotency_key(session, claim.organization_id, "never used") is None
    cancel(factory, second)
