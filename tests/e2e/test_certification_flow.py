"""API + real worker process + reference endpoint: the whole path on real services."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from app.db.models import Certification, CheckResultRow
from tests.support.api import certify, create_target, wait_terminal


def test_good_endpoint_is_certified(client, auth, reference_url, factory) -> None:  # type: ignore[no-untyped-def]
    target = create_target(client, auth, f"{reference_url}/v1")
    cert = wait_terminal(client, auth, certify(client, auth, target))
    assert cert["status"] == "succeeded", cert
    assert cert["verdict"] == "certified"
    outcomes = {c["name"]: c["outcome"] for c in cert["checks"]}
    assert outcomes == {"connectivity": "passed", "chat": "passed"}
    assert cert["attempt"] == 1 and cert["error"] is None
    assert cert["progress"]["done"] == cert["progress"]["total"] == 15
    with factory() as session:
        row = session.get(Certification, uuid.UUID(cert["id"]))
        assert row.status.value == "succeeded" and row.verdict.value == "certified"
        assert (
            session.scalar(
                select(func.count())
                .select_from(CheckResultRow)
                .where(CheckResultRow.certification_id == row.id)
            )
            == 2
        )


@pytest.mark.usefixtures("worker")
def test_wrong_answers_fail_the_chat_check(client, auth, reference_url) -> None:  # type: ignore[no-untyped-def]
    target = create_target(client, auth, f"{reference_url}/m/wrong/v1")
    cert = wait_terminal(client, auth, certify(client, auth, target))
    assert cert["status"] == "succeeded"
    assert cert["verdict"] == "not_certified"
    chat = next(c for c in cert["checks"] if c["name"] == "chat")
    assert chat["outcome"] == "failed" and chat["failed"] == chat["total"]


@pytest.mark.usefixtures("worker")
def test_auth_failure_fails_at_once_with_cause(client, auth, reference_url) -> None:  # type: ignore[no-untyped-def]
    target = create_target(client, auth, f"{reference_url}/m/auth/v1")
    cert = wait_terminal(client, auth, certify(client, auth, target))
    assert cert["status"] == "failed"
    assert cert["error"]["cause"] == "auth_failed" and cert["attempt"] == 1


@pytest.mark.usefixtures("worker", "beat")
def test_endpoint_down_ends_failed_with_cause(client, auth) -> None:  # type: ignore[no-untyped-def]
    from app.devtools.harness import free_port

    target = create_target(client, auth, f"http://127.0.0.1:{free_port()}/v1")
    cert = wait_terminal(client, auth, certify(client, auth, target), timeout=120)
    assert cert["status"] == "failed"
    assert cert["error"]["cause"] == "connect_error"
    assert cert["attempt"] == cert["max_attempts"]  # retried, then gave up


@pytest.mark.usefixtures("worker")
def test_duplicate_message_is_a_no_op(client, auth, reference_url, settings, factory) -> None:  # type: ignore[no-untyped-def]
    from app.queue.publisher import Publisher

    target = create_target(client, auth, f"{reference_url}/v1")
    cert_id = certify(client, auth, target)
    publisher = Publisher(settings)
    for _ in range(3):  # the same message delivered again, while and after it runs
        assert publisher.publish_run(
            uuid.UUID(cert_id), settings.certification_queue_name, "normal"
        )
    cert = wait_terminal(client, auth, cert_id)
    time.sleep(2)  # let the duplicates be consumed
    with factory() as session:
        row = session.get(Certification, uuid.UUID(cert_id))
        assert row.status.value == "succeeded" and row.attempt == 1
        assert (
            session.scalar(
                select(func.count())
                .select_from(CheckResultRow)
                .where(CheckResultRow.certification_id == row.id)
            )
            == 2
        )
    assert cert["status"] == "succeeded"


@pytest.mark.usefixtures("worker")
def test_worker_probes(settings) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client.parser import text_string_to_metric_families

    base = f"http://127.0.0.1:{settings.worker_health_port}"
    assert httpx.get(f"{base}/live").status_code == 200
    assert httpx.get(f"{base}/ready").status_code == 200
    health = httpx.get(f"{base}/health").json()
    assert health["broker"] == "connected" and health["database"] == "connected"
    assert health["pool_size"] == settings.certification_concurrency
    names = {f.name for f in text_string_to_metric_families(httpx.get(f"{base}/metrics").text)}
    assert {
        "modelcert_certifications",
        "modelcert_queue_depth",
        "modelcert_active_certifications",
    } <= names


@pytest.mark.usefixtures("worker")
def test_progress_moves_while_a_check_runs(client, auth, reference_url) -> None:  # type: ignore[no-untyped-def]
    """Samples of the check under way count as they finish (written with each lease renewal),
    not only when the check is stored."""
    target = create_target(client, auth, f"{reference_url}/m/slow-300/v1")
    cert_id = certify(client, auth, target, suite="standard")
    deadline = time.monotonic() + 60
    seen = None
    while time.monotonic() < deadline:
        body = client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()
        stored = sum(c["total"] for c in body["checks"])
        if body["status"] == "running" and body["progress"]["done"] > stored:
            seen = (body["progress"]["done"], stored)
            break
        time.sleep(0.25)
    client.post(f"/v1/certifications/{cert_id}/cancel", headers=auth)
    assert seen is not None, "progress only moved at checkpoints"
    assert wait_terminal(client, auth, cert_id)["status"] == "cancelled"
