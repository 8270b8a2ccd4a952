"""Redis down during POST: 202 at once, row undispatched; the sweeper publishes it later."""

from __future__ import annotations

import time
import uuid

import redis
from sqlalchemy import select

from app.api.factory import build_app
from app.db.models import Certification
from app.devtools.harness import free_port, start_redis_server
from app.queue.publisher import Publisher
from app.services import sweeper


def test_broker_down_at_post_then_sweeper_dispatches(settings, factory, auth, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    proc = start_redis_server(port, tmp_path / "redis")
    private = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    client = build_app(private).test_client()
    target = client.post(
        "/v1/targets",
        json={"name": "outbox", "model": "m", "base_url": "http://127.0.0.1:9/v1"},
        headers=auth,
    ).get_json()["id"]
    proc.terminate()
    proc.wait(timeout=10)

    ids = []
    for _ in range(3):
        started = time.monotonic()
        r = client.post("/v1/certifications", json={"target_id": target}, headers=auth)
        assert r.status_code == 202, r.get_json()
        assert time.monotonic() - started < private.broker_publish_timeout * 4 + 2  # bounded
        assert r.get_json()["timings"]["dispatched_at"] is None
        ids.append(uuid.UUID(r.get_json()["id"]))

    publisher = Publisher(private)
    time.sleep(2.1)  # past the sweeper's grace for fresh rows
    report = sweeper.sweep(factory, publisher.publish_run)
    assert report.published == 0 and report.publish_failed >= 1  # still down: nothing lost

    proc = start_redis_server(port, tmp_path / "redis")
    try:
        report = sweeper.sweep(factory, publisher.publish_run)
        assert set(report.ids) >= {str(i) for i in ids}
        with factory() as session:
            rows = session.scalars(select(Certification).where(Certification.id.in_(ids))).all()
            assert all(r.dispatched_at is not None and r.status.value == "queued" for r in rows)
        queue = private.certification_queue_name
        client_redis = redis.Redis(port=port)
        waiting = sum(
            client_redis.llen(name) for name in (queue, f"{queue}:3", f"{queue}:6", f"{queue}:9")
        )
        assert waiting >= len(ids)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
