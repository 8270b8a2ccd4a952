"""A message the worker cannot decode, on any list it consumes, is moved aside to the
deployment's dead-letter list and the worker goes on: a real worker process, real Redis,
then a real job that completes (issue #22)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from app.config import Settings
from app.db.models import Target
from app.queue.names import DELIVER_WEBHOOK, priority_lists
from app.queue.publisher import Publisher, broker_transport_options
from tests.support.rows import insert_target, job_row, new_org
from tests.support.workers import queue_worker

GOOD_PROPERTIES = {
    "delivery_tag": "tag",
    "body_encoding": "base64",
    "priority": 0,
    "delivery_info": {"exchange": "", "routing_key": "q"},
}


def envelope(body: object, headers: object, **properties: object) -> dict[str, object]:
    return {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": headers,
        "properties": GOOD_PROPERTIES | properties,
    }


def garbage(n: int) -> list[tuple[bytes, bool]]:
    """(raw bytes, kept verbatim) for each kind of bad message, made unique by `n`. The last
    three are envelopes kombu takes but Celery cannot read: kept as decoded, re-encoded."""
    mark = f"{n}-{uuid.uuid4().hex[:6]}"
    kombu_level = [
        f"not an envelope {mark}".encode(),
        b"\xff\xfe\x00 not utf-8 " + mark.encode(),
        json.dumps([mark]).encode(),
        json.dumps({"body": mark}).encode(),
        json.dumps({"body": "", "properties": {"delivery_tag": mark}}).encode(),
        json.dumps(envelope([[], {}, {}], [mark])).encode(),
        json.dumps(envelope([[], {}, {}], {"task": "x"}, delivery_tag=[mark])).encode(),
    ]
    celery_level = [
        envelope([[mark], {}, {}], {"task": "modelcert.run_certification"}),  # no id
        envelope({"m": mark}, {"task": "modelcert.run_certification", "id": mark}),
        envelope([[mark], {}, {}], {"task": "nope", "lang": "py"}),  # unknown task, no id
    ]
    return [(raw, True) for raw in kombu_level] + [
        (json.dumps(e).encode(), False) for e in celery_level
    ]


@pytest.fixture()
def private(settings: Settings) -> Iterator[Settings]:
    """Settings with queues of their own, so that no other worker reads what this test pushes."""
    mine = settings.model_copy(
        update={
            "certification_queue_name": f"malformed-{uuid.uuid4().hex[:8]}",
            "certification_region_queues": "eu-west-1=eu",
        }
    )
    yield mine
    client = redis.Redis.from_url(str(mine.redis_url))
    client.delete(mine.malformed_list_name, *consumed_lists(mine))


def queues(settings: Settings) -> list[str]:
    """What the worker here consumes: its queue, the maintenance queue and a regional one."""
    return [*settings.job_queues, settings.maintenance_queue_name]


def consumed_lists(settings: Settings) -> list[str]:
    return [name for queue in queues(settings) for name in priority_lists(queue)]


def test_garbage_on_every_consumed_list_is_moved_aside_and_the_worker_goes_on(
    private, factory, reference_url, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(str(private.redis_url))
    proc, port = queue_worker(private, tmp_path / "worker.log", ",".join(queues(private)))
    try:
        pushed: list[tuple[bytes, bool]] = []
        for n, name in enumerate(consumed_lists(private)):
            for raw, verbatim in garbage(n):
                client.lpush(name, raw)
                pushed.append((raw, verbatim))
        # A broadcast (the pidbox every worker listens to) that is JSON but no envelope.
        broadcast = {"not": "an envelope", "mark": uuid.uuid4().hex}
        with Connection(
            str(private.redis_url), transport_options=broker_transport_options(private)
        ) as conn:
            conn.default_channel._put_fanout("celery.pidbox", broadcast, "")

        # Then real work on every queue: a certification on the default and on the regional
        # queue, and a webhook delivery (of an unknown id: it ends "gone") on the maintenance
        # queue.
        _, who = new_org(factory)
        target = insert_target(factory, who, f"{reference_url}/v1")
        with factory.begin() as session:
            session.execute(
                update(Target)
                .where(Target.id == target)
                .values(endpoints={"eu-west-1": f"{reference_url}/v1"})
            )
        cert_ids = [
            queued_via(private, factory, who, target, region) for region in (None, "eu-west-1")
        ]
        assert {job_row(factory, c).queue for c in cert_ids} == set(private.job_queues)
        delivery = str(uuid.uuid4())
        Publisher(private).publish_delivery(uuid.UUID(delivery))

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (
            any(job_row(factory, c).status.value != "succeeded" for c in cert_ids)
            or f"{DELIVER_WEBHOOK}[" not in proc.output()
            or client.llen(private.malformed_list_name) < len(pushed) + 1
        ):
            assert proc.popen.poll() is None, "the worker exited:\n" + proc.output()[-3000:]
            time.sleep(0.3)

        assert proc.popen.poll() is None
        assert all(job_row(factory, c).status.value == "succeeded" for c in cert_ids)
        assert f"{DELIVER_WEBHOOK}[" in proc.output()
        output = proc.output()
        assert "Unrecoverable error" not in output
        assert "Connection to broker lost" not in output  # which would cancel running jobs
        assert all(client.llen(name) == 0 for name in consumed_lists(private))

        kept = client.lrange(private.malformed_list_name, 0, -1)
        assert len(kept) == len(pushed) + 1
        assert {raw for raw, verbatim in pushed if verbatim} <= set(kept)
        decoded = [json.loads(k) for k in kept if k.startswith(b"{")]
        for raw, verbatim in pushed:
            if not verbatim:
                assert json.loads(raw) in decoded
        assert broadcast in decoded
        assert output.count("malformed_message_moved_aside") == len(pushed) + 1

        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        counted = sum(
            sample.value
            for family in text_string_to_metric_families(metrics)
            if family.name == "modelcert_malformed_messages"
            for sample in family.samples
            if sample.name.endswith("_total")
        )
        assert counted == len(pushed) + 1
    finally:
        proc.stop()


def queued_via(
    settings: Settings,
    factory,
    who,
    target: uuid.UUID,  # type: ignore[no-untyped-def]
    region: str | None,
) -> str:
    """A certification published to the queue `settings` route `region` to, as the API does."""
    from app.schemas.resources import CertificationCreate
    from app.services import certifications

    publisher = Publisher(settings)
    view, _ = certifications.create_certification(
        factory,
        settings,
        publisher.publish_run,
        who,
        CertificationCreate(target_id=target, suite="smoke", region=region),
        None,
    )
    return str(view.id)
