"""A tenant cannot name a queue (issue #22). A queue is a Redis key: a target's
`region_queues` once let a tenant publish to `unacked_index`, which stopped every worker on
that Redis. Now a tenant picks a region; the operator maps regions to queues."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis

from app.queue.names import priority_lists
from app.queue.publisher import Publisher

ENDPOINT = "http://127.0.0.1:9/v1"


@pytest.fixture()
def rdb(settings) -> Iterator[redis.Redis]:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(str(settings.redis_url))
    # The idle region's queue has no consumer: other tests leave their jobs there (the live
    # docs' commands do), so the counts below start from an empty queue.
    client.delete(*priority_lists(settings.region_queues["idle"]))
    yield client
    client.delete(*priority_lists(settings.region_queues["idle"]))


@pytest.mark.parametrize(
    "value",
    [
        {"eu-west-1": "unacked_index"},
        {"idle": "_kombu.binding.x"},
        {"eu-west-1": "certification"},
        {},
        None,
        "unacked",
    ],
)
def test_a_target_cannot_carry_queue_names(client, auth, value) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/targets",
        json={
            "name": f"t-{uuid.uuid4().hex[:8]}",
            "model": "m",
            "endpoints": {"eu-west-1": ENDPOINT},
            "region_queues": value,
        },
        headers=auth,
    )
    assert r.status_code == 422 and r.mimetype == "application/problem+json", r.get_json()
    (error,) = r.get_json()["errors"]
    assert error["loc"] == ["body", "region_queues"]
    assert "operator configuration" in error["msg"]
    assert "CERTIFICATION_REGION_QUEUES" in error["msg"]


def test_the_api_knows_no_queue_names_of_a_tenant(client, auth) -> None:  # type: ignore[no-untyped-def]
    assert "region_queues" not in json.dumps(client.get("/openapi.json").get_json())
    r = client.post(
        "/v1/targets",
        json={"name": f"t-{uuid.uuid4().hex[:8]}", "model": "m", "endpoints": {"idle": ENDPOINT}},
        headers=auth,
    )
    assert r.status_code == 201
    assert "region_queues" not in r.get_json()
    assert (
        "region_queues"
        not in client.get(f"/v1/targets/{r.get_json()['id']}", headers=auth).get_json()
    )


def test_the_operator_maps_regions_to_queues(client, auth, settings, rdb) -> None:  # type: ignore[no-untyped-def]
    target = client.post(
        "/v1/targets",
        json={
            "name": f"t-{uuid.uuid4().hex[:8]}",
            "model": "m",
            "base_url": ENDPOINT,
            "endpoints": {"idle": ENDPOINT, "ap-south-1": ENDPOINT},
        },
        headers=auth,
    ).get_json()["id"]
    queues = {}
    for region in ("idle", "ap-south-1", None):
        r = client.post(
            "/v1/certifications", json={"target_id": target, "region": region}, headers=auth
        )
        assert r.status_code == 202, r.get_json()
        queues[region] = r.get_json()["queue"]
        # 200 while queued; 202 when a worker of the session (default queue) took it already.
        assert client.post(
            f"/v1/certifications/{r.get_json()['id']}/cancel", headers=auth
        ).status_code in (200, 202)
    assert queues == {
        "idle": f"{settings.certification_queue_name}.idle",
        "ap-south-1": settings.certification_queue_name,  # not mapped: default
        None: settings.certification_queue_name,
    }
    # The message went where the row says.
    assert sum(rdb.llen(name) for name in priority_lists(queues["idle"])) == 1


@pytest.mark.parametrize(
    "stored",
    [
        "unacked_index",
        "unacked",
        "_kombu.binding.celery",
        "certification.eu-west-1",
        "another-deployment",
    ],
)
def test_a_stored_queue_name_outside_the_configuration_is_never_published_to(
    settings, stored: str
) -> None:  # type: ignore[no-untyped-def]
    """A job stored before this fix may carry a tenant's queue name, and the sweeper publishes
    what a row says: the publisher sends only to configured queues, else the default one."""
    private = settings.model_copy(
        update={"certification_queue_name": f"names-{uuid.uuid4().hex[:8]}"}
    )
    client = redis.Redis.from_url(str(private.redis_url))
    before = client.type(stored)
    job = uuid.uuid4()
    try:
        assert Publisher(private).publish_run(job, stored, "normal")
        # Not made a list (what stopped every worker). A worker of the session may meanwhile
        # create the transport's own keys (unacked, unacked_index) as hashes and sorted sets.
        assert client.type(stored) == before or client.type(stored) in (b"hash", b"zset")
        messages = [
            json.loads(raw)
            for name in priority_lists(private.certification_queue_name)
            for raw in client.lrange(name, 0, -1)
        ]
        assert [m["headers"]["argsrepr"] for m in messages] == [repr([str(job)])]
    finally:
        client.delete(*priority_lists(private.certification_queue_name))
