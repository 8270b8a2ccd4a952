"""Cancel, retry, dead letters and webhooks through the API (real Postgres and Redis).

Jobs here are in the region `idle`, whose queue (tests/conftest.py) no worker consumes, so
they stay where the test puts them.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.db import jobs
from app.db.models import DeadLetter, WebhookDelivery
from app.queue.names import priority_lists
from tests.support.rows import make_token

IDLE_REGION = "idle"


def idle_target(client, auth) -> str:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/targets",
        json={
            "name": f"idle-{uuid.uuid4().hex[:8]}",
            "model": "m",
            "endpoints": {IDLE_REGION: "http://127.0.0.1:9/v1"},
        },
        headers=auth,
    )
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def queued(client, auth, target: str) -> str:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/certifications", json={"target_id": target, "region": IDLE_REGION}, headers=auth
    )
    assert r.status_code == 202 and r.get_json()["queue"].endswith(f".{IDLE_REGION}")
    return r.get_json()["id"]


def test_cancel_queued_then_retry_then_conflicts(client, auth) -> None:  # type: ignore[no-untyped-def]
    cert = queued(client, auth, idle_target(client, auth))
    r = client.post(f"/v1/certifications/{cert}/cancel", headers=auth)
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"
    assert r.get_json()["error"]["cause"] == "cancelled"
    r = client.post(f"/v1/certifications/{cert}/cancel", headers=auth)
    assert r.status_code == 409 and r.mimetype == "application/problem+json"
    r = client.post(f"/v1/certifications/{cert}/retry", headers=auth)
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    assert body["status"] == "queued" and body["error"] is None
    assert body["timings"]["dispatched_at"] is not None
    r = client.post(f"/v1/certifications/{cert}/retry", headers=auth)
    assert r.status_code == 409  # queued: nothing to retry
    assert client.post(f"/v1/certifications/{cert}/cancel", headers=auth).status_code == 200


def test_cancel_and_retry_unknown_or_foreign_ids_are_404(client, auth, factory) -> None:  # type: ignore[no-untyped-def]
    cert = queued(client, auth, idle_target(client, auth))
    other = {"Authorization": f"Bearer {make_token(factory, f'o-{uuid.uuid4().hex[:8]}')}"}
    for path in (
        f"/v1/certifications/{cert}/cancel",
        f"/v1/certifications/{cert}/retry",
        "/v1/certifications/not-a-uuid/cancel",
        f"/v1/dead-letters/{uuid.uuid4()}/replay",
        "/v1/dead-letters/nope/replay",
    ):
        r = client.post(path, headers=other)
        assert r.status_code == 404, (path, r.get_json())


def test_dead_letter_list_and_replay_once(client, auth, factory, settings) -> None:  # type: ignore[no-untyped-def]
    target = idle_target(client, auth)
    ids = [queued(client, auth, target) for _ in range(3)]
    for cert in ids:  # run out of attempts the way a worker would
        for _ in range(settings.max_attempts):
            claim = jobs.claim_job(factory, uuid.UUID(cert), "test-worker", 30)
            assert claim is not None
            jobs.schedule_retry(factory, claim, "server_error", "HTTP 500", 0)
    r = client.get("/v1/dead-letters?limit=2", headers=auth)
    assert r.status_code == 200
    page = r.get_json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = client.get(
        f"/v1/dead-letters?limit=2&cursor={page['next_cursor']}", headers=auth
    ).get_json()
    letters = page["items"] + rest["items"]
    assert {x["certification_id"] for x in letters} == set(ids)
    assert all(
        x["cause"] == "server_error"
        and x["attempts"] == settings.max_attempts
        and x["replayed_at"] is None
        for x in letters
    )
    assert client.get("/v1/dead-letters?cursor=garbage", headers=auth).status_code == 422

    letter = letters[0]
    r = client.post(f"/v1/dead-letters/{letter['id']}/replay", headers=auth)
    assert r.status_code == 202, r.get_json()
    cert = client.get(f"/v1/certifications/{letter['certification_id']}", headers=auth).get_json()
    assert cert["status"] == "queued"
    assert cert["max_attempts"] == settings.max_attempts * 2  # a fresh budget
    assert cert["attempt"] == settings.max_attempts  # attempts stay counted
    assert client.post(f"/v1/dead-letters/{letter['id']}/replay", headers=auth).status_code == 409
    with factory() as session:
        row = session.get(DeadLetter, uuid.UUID(letter["id"]))
        assert row.replayed_at is not None
    # Another organization sees none of them.
    other = {"Authorization": f"Bearer {make_token(factory, f'o-{uuid.uuid4().hex[:8]}')}"}
    assert client.get("/v1/dead-letters", headers=other).get_json()["items"] == []


def test_webhooks_crud_and_validation(client, auth, factory) -> None:  # type: ignore[no-untyped-def]
    target = idle_target(client, auth)
    r = client.post(
        "/v1/webhooks",
        json={
            "url": "https://hooks.example.com/in",
            "events": ["certification.cancelled"],
            "target_id": target,
        },
        headers=auth,
    )
    assert r.status_code == 201, r.get_json()
    hook = r.get_json()
    assert hook["secret"].startswith("whsec_") and hook["target_id"] == target
    listed = client.get("/v1/webhooks", headers=auth).get_json()["items"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    for bad in (
        {"url": "ftp://x.example.com", "events": ["certification.failed"]},
        {"url": "https://u:p@x.example.com", "events": ["certification.failed"]},
        {"url": "https://x.example.com", "events": ["certification.exploded"]},
        {"url": "https://x.example.com", "events": []},
        {
            "url": "https://x.example.com",
            "events": ["dead_letter.created"],
            "target_id": str(uuid.uuid4()),
        },
    ):
        r = client.post("/v1/webhooks", json=bad, headers=auth)
        assert r.status_code == 422, (bad, r.get_json())

    # A cancel records the event in the same transaction; the delivery log shows it.
    cert = queued(client, auth, target)
    assert client.post(f"/v1/certifications/{cert}/cancel", headers=auth).status_code == 200
    with factory() as session:
        rows = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.webhook_id == uuid.UUID(hook["id"]))
        ).all()
    assert [r.event for r in rows] == ["certification.cancelled"]
    assert rows[0].payload["data"]["certification_id"] == cert
    log = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth).get_json()
    assert [d["event"] for d in log["items"]] == ["certification.cancelled"]

    other = {"Authorization": f"Bearer {make_token(factory, f'o-{uuid.uuid4().hex[:8]}')}"}
    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=other).status_code == 404
    assert client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=other).status_code == 404
    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=auth).status_code == 204
    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=auth).status_code == 404
    assert client.get("/v1/webhooks", headers=auth).get_json()["items"] == []


@pytest.mark.parametrize("path", ["/v1/dead-letters", "/v1/webhooks"])
def test_operations_resources_need_a_token(client, path: str) -> None:  # type: ignore[no-untyped-def]
    assert client.get(path).status_code == 401


@pytest.fixture(scope="module", autouse=True)
def _drop_idle_queue(redis_url: str, settings):  # type: ignore[no-untyped-def]
    """Leave nothing behind in the shared Redis."""
    yield
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete(*priority_lists(settings.region_queues[IDLE_REGION]))


def test_sweeper_ages_a_starving_low_priority_job_to_normal(
    client, auth, factory, settings
) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from app.queue.publisher import Publisher
    from app.services import sweeper

    target = idle_target(client, auth)
    r = client.post(
        "/v1/certifications",
        json={"target_id": target, "region": IDLE_REGION, "priority": "low"},
        headers=auth,
    )
    cert = r.get_json()["id"]
    publisher = Publisher(settings)
    sent: list[tuple[str, str]] = []

    def publish(cert_id, queue, priority):  # type: ignore[no-untyped-def]
        sent.append((str(cert_id), priority))
        return publisher.publish_run(cert_id, queue, priority)

    sweeper.sweep(factory, publish, low_aging_seconds=600)
    assert (cert, "normal") not in sent  # dispatched just now: not starving yet
    with factory.begin() as session:
        session.execute(
            text(
                "UPDATE certifications SET dispatched_at = now() - interval "
                "'11 minutes' WHERE id = :id"
            ),
            {"id": cert},
        )
    sweeper.sweep(factory, publish, low_aging_seconds=600)
    assert (cert, "normal") in sent
    sent.clear()
    sweeper.sweep(factory, publish, low_aging_seconds=600)
    assert (cert, "normal") not in sent  # once per aging period, not every sweep
