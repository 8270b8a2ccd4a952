"""Worker operations on the session worker (+ beat): dead letters, cancel, webhooks, logs,
metrics. Real API, worker process, Postgres, Redis and reference endpoint."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from app.db.models import Certification, CheckResultRow, DeadLetter
from tests.support.api import certify, create_target, wait_running_with_a_checkpoint, wait_terminal
from tests.support.webhooks import Receiver

pytestmark = pytest.mark.usefixtures("worker", "beat")


def test_retryable_failure_ends_in_a_dead_letter_after_max_attempts(
    client, auth, reference_url, factory, settings
) -> None:  # type: ignore[no-untyped-def]
    target = create_target(client, auth, f"{reference_url}/m/flaky-100/v1")
    cert_id = certify(client, auth, target)
    seen: list[tuple[str, int, object]] = []  # (status, attempt, next_attempt_at) as it changes
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with factory() as session:
            row = session.get(Certification, uuid.UUID(cert_id))
            state = (row.status.value, row.attempt, row.next_attempt_at)
        if not seen or seen[-1] != state:
            seen.append(state)
        if state[0] == "failed":
            break
        time.sleep(0.1)
    print("transitions:", [(s, a, str(n)) for s, a, n in seen])
    cert = client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()
    assert cert["status"] == "failed", seen
    assert cert["attempt"] == cert["max_attempts"] == settings.max_attempts
    assert cert["error"]["cause"] == "server_error"
    retrying = [s for s in seen if s[0] == "retrying"]
    assert retrying and retrying[0][1] == 1 and retrying[0][2] is not None  # backoff scheduled
    attempts = [a for _, a, _ in seen]
    assert attempts == sorted(attempts)  # attempts only go up, counted in Postgres
    with factory() as session:
        letters = session.scalars(
            select(DeadLetter).where(DeadLetter.certification_id == uuid.UUID(cert_id))
        ).all()
    assert len(letters) == 1 and letters[0].attempts == settings.max_attempts
    assert letters[0].created_at > retrying[0][2]  # the second attempt waited for its time
    listed = client.get("/v1/dead-letters", headers=auth).get_json()["items"]
    assert [x["certification_id"] for x in listed] == [cert_id]

    r = client.post(f"/v1/dead-letters/{letters[0].id}/replay", headers=auth)
    assert r.status_code == 202
    assert client.post(f"/v1/dead-letters/{letters[0].id}/replay", headers=auth).status_code == 409
    replayed = wait_terminal(client, auth, cert_id, timeout=120)
    assert replayed["status"] == "failed"
    assert replayed["attempt"] == replayed["max_attempts"] == 2 * settings.max_attempts


def test_auth_failure_fails_at_once_without_a_dead_letter(
    client, auth, reference_url, factory
) -> None:  # type: ignore[no-untyped-def]
    target = create_target(client, auth, f"{reference_url}/m/auth/v1")
    cert = wait_terminal(client, auth, certify(client, auth, target))
    assert cert["status"] == "failed" and cert["attempt"] == 1
    assert cert["error"]["cause"] == "auth_failed"
    with factory() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(DeadLetter)
                .where(DeadLetter.certification_id == uuid.UUID(cert["id"]))
            )
            == 0
        )


def test_cancel_running_job_stops_at_a_sample_boundary_keeping_evidence(
    client, auth, reference_url, factory
) -> None:  # type: ignore[no-untyped-def]
    target = create_target(client, auth, f"{reference_url}/m/slow-500/v1")
    cert_id = certify(client, auth, target, suite="standard")
    wait_running_with_a_checkpoint(client, auth, cert_id)
    asked = time.monotonic()
    r = client.post(f"/v1/certifications/{cert_id}/cancel", headers=auth)
    assert r.status_code == 202, r.get_json()
    cert = wait_terminal(client, auth, cert_id, timeout=60)
    elapsed = time.monotonic() - asked
    print(f"cancel of a running job took {elapsed:.2f}s (target: within 5 s)")
    assert cert["status"] == "cancelled" and cert["verdict"] is None
    assert cert["error"]["cause"] == "cancelled"
    assert cert["checks"], "evidence of finished checks is kept"
    assert client.post(f"/v1/certifications/{cert_id}/cancel", headers=auth).status_code == 409
    # Retry starts a new attempt that resumes from the checkpoints.
    r = client.post(f"/v1/certifications/{cert_id}/retry", headers=auth)
    assert r.status_code == 202
    kept = {c["name"] for c in cert["checks"]}
    done = wait_terminal(client, auth, cert_id, timeout=120)
    assert done["status"] == "succeeded" and done["attempt"] == 2
    assert kept <= {c["name"] for c in done["checks"]}
    with factory() as session:
        rows = session.execute(
            select(CheckResultRow.check_name, CheckResultRow.attempt).where(
                CheckResultRow.certification_id == uuid.UUID(cert_id)
            )
        ).all()
    assert len(rows) == len({n for n, _ in rows})  # one row per check
    assert {n for n, a in rows if a == 1} == kept


def verify_signature(secret: str, headers: dict[str, str], body: bytes) -> None:
    fields = dict(part.split("=", 1) for part in headers["X-Modelcert-Signature"].split(","))
    expected = hmac.new(
        secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert abs(time.time() - int(fields["t"])) < 600


def test_webhooks_are_signed_and_a_failing_receiver_never_blocks(
    client, auth, reference_url, worker
) -> None:  # type: ignore[no-untyped-def]
    good, bad = Receiver(200), Receiver(500)
    try:
        target = create_target(client, auth, f"{reference_url}/v1")
        hooks = []
        for receiver in (good, bad):
            r = client.post(
                "/v1/webhooks",
                json={
                    "url": receiver.url,
                    "target_id": target,
                    "events": ["certification.succeeded", "certification.failed"],
                },
                headers=auth,
            )
            assert r.status_code == 201
            hooks.append(r.get_json())
        cert = wait_terminal(client, auth, certify(client, auth, target))
        assert cert["status"] == "succeeded"  # the failing receiver changed nothing
        good.wait()
        headers, body = good.requests[0]
        verify_signature(hooks[0]["secret"], headers, body)
        event = json.loads(body)
        assert event["type"] == "certification.succeeded"
        assert event["data"]["certification_id"] == cert["id"]
        assert event["data"]["verdict"] == "certified"
        assert headers["Content-Type"] == "application/json"
        bad.wait()
        verify_signature(hooks[1]["secret"], *bad.requests[0])

        def log(hook: dict) -> dict:  # type: ignore[type-arg]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                items = client.get(
                    f"/v1/webhooks/{hook['id']}/deliveries", headers=auth
                ).get_json()["items"]
                if items and items[0]["attempts"] >= 1:
                    return items[0]  # type: ignore[no-any-return]
                time.sleep(0.2)
            raise AssertionError("no delivery recorded")

        delivered = log(hooks[0])
        assert delivered["status"] == "delivered" and delivered["last_status_code"] == 200
        failing = log(hooks[1])
        assert failing["status"] == "sending" and failing["last_status_code"] == 500
        assert "HTTP 500" in failing["last_error"]

        # Every log line of the job carries its id, attempt and target id (JSON lines).
        lines = [
            json.loads(line)
            for line in worker.output().splitlines()
            if line.startswith("{") and cert["id"] in line
        ]
        job_lines = [
            x
            for x in lines
            if x.get("event")
            in ("certification_claimed", "check_finished", "certification_delivery_done")
        ]
        assert {x["event"] for x in job_lines} == {
            "certification_claimed",
            "check_finished",
            "certification_delivery_done",
        }
        for line in job_lines:
            assert line["certification_id"] == cert["id"]
            assert line["attempt"] == 1 and line["target_id"] == target
    finally:
        good.close()
        bad.close()


def test_metrics_have_every_name_and_the_real_provider_label(
    client, auth, reference_url, settings
) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client.parser import text_string_to_metric_families

    target = create_target(client, auth, f"{reference_url}/m/good", provider="anthropic")
    cert = wait_terminal(client, auth, certify(client, auth, target))
    assert cert["status"] == "succeeded", cert
    base = f"http://127.0.0.1:{settings.worker_health_port}"
    families = {
        f.name: f for f in text_string_to_metric_families(httpx.get(f"{base}/metrics").text)
    }
    for name in (
        "modelcert_certifications",
        "modelcert_certification_duration_seconds",
        "modelcert_active_certifications",
        "modelcert_retries",
        "modelcert_queue_depth",
        "modelcert_endpoint_requests",
        "modelcert_endpoint_latency_seconds",
    ):
        assert name in families, name
    assert families["modelcert_certification_duration_seconds"].type == "histogram"
    providers = {s.labels.get("provider") for s in families["modelcert_endpoint_requests"].samples}
    assert "anthropic" in providers and "unknown" not in providers  # the target's provider
    statuses = {
        (s.labels["status"], s.labels["verdict"])
        for s in families["modelcert_certifications"].samples
        if s.value > 0
    }
    assert ("succeeded", "certified") in statuses
    health = httpx.get(f"{base}/health").json()
    for key in (
        "version",
        "uptime_seconds",
        "pool_size",
        "active_jobs",
        "processed",
        "broker",
        "database",
        "queue_depth",
        "counts",
    ):
        assert key in health, key
    assert health["counts"]["succeeded"] >= 1 and health["processed"] >= 1
    # It consumes the two default queues and reports the depth of every configured one.
    assert health["queues"] == [settings.certification_queue_name, settings.maintenance_queue_name]
    assert set(health["queue_depth"]) == {*settings.job_queues, settings.maintenance_queue_name}
    ready = {s.labels["queue"]: s.value for s in families["modelcert_worker_queue_ready"].samples}
    assert ready == {settings.certification_queue_name: 1, settings.maintenance_queue_name: 1}
