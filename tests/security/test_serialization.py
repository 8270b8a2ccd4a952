"""Celery accepts JSON only: a pickle message on the worker's queue is refused and logged,
never executed (the job row does not change, the pickled payload's side effect never runs)."""

from __future__ import annotations

import os
import pickle
import time
import uuid

import pytest
from kombu import Connection, Queue

from app.queue.names import RUN_CERTIFICATION
from app.queue.publisher import broker_transport_options
from tests.support.rows import insert_target, job_row, new_org, queued_job


class Exploit:
    """Unpickling this creates a file: proof of execution if it ever happens."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.path}",))


@pytest.mark.usefixtures("worker")
def test_pickle_message_is_refused_not_executed(settings, factory, worker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, who = new_org(factory)
    cert = queued_job(factory, settings, who, insert_target(factory, who, "http://127.0.0.1:9/v1"))
    before = job_row(factory, cert)
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    task_id = str(uuid.uuid4())
    body = pickle.dumps(
        (
            (cert, Exploit(str(marker))),
            {},
            {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
        )
    )
    queue = settings.certification_queue_name
    with Connection(
        str(settings.redis_url), transport_options=broker_transport_options(settings)
    ) as conn:
        conn.Producer().publish(
            body,
            exchange="",
            routing_key=queue,
            declare=[Queue(queue)],
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={
                "lang": "py",
                "task": RUN_CERTIFICATION,
                "id": task_id,
                "root_id": task_id,
                "parent_id": None,
                "argsrepr": repr((cert,)),
                "kwargsrepr": "{}",
                "origin": "attacker",
                "retries": 0,
            },
            serializer=None,
        )

    def refusals() -> list[str]:
        return [
            line
            for line in worker.output().splitlines()
            if "Refusing to deserialize" in line and cert in line
        ]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not refusals():
        time.sleep(0.3)
    assert refusals(), "the worker did not log the refusal"
    assert "application/x-python-serialize" in refusals()[0]
    time.sleep(2)  # give an (impossible) execution time to show itself
    after = job_row(factory, cert)
    assert (after.status, after.attempt, after.started_at, after.lease_until) == (
        before.status,
        before.attempt,
        before.started_at,
        before.lease_until,
    )
    assert not marker.exists()
