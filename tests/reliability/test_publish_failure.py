"""The broker refuses 100 publishes after commit: every job still finishes, via the sweeper."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import func, select

from app.api.factory import build_app
from app.db.models import Certification
from app.db.session import make_engine, make_session_factory
from app.devtools.harness import free_port, fresh_database
from tests.support.rows import make_token
from tests.support.stack import PrivateRedis, Stack

pytestmark = pytest.mark.slow


def test_hundred_refused_publishes_all_finish(tmp_path, admin_database_url, reference_url) -> None:  # type: ignore[no-untyped-def]
    redis = PrivateRedis(tmp_path)
    with fresh_database(admin_database_url) as url:
        stack = Stack.create(tmp_path, url, redis.url, certification_concurrency=3)
        factory = make_session_factory(make_engine(url, pool_size=1))
        try:
            auth = {"Authorization": f"Bearer {make_token(factory, 'outbox')}"}
            # The API's broker refuses every connection (nothing listens on that port).
            refusing = stack.settings.model_copy(
                update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"}
            )
            client = build_app(refusing).test_client()
            target = client.post(
                "/v1/targets",
                json={
                    "name": "outbox",
                    "model": "reference-model",
                    "base_url": f"{reference_url}/v1",
                },
                headers=auth,
            ).get_json()["id"]
            ids = []
            for _ in range(100):
                r = client.post("/v1/certifications", json={"target_id": target}, headers=auth)
                assert r.status_code == 202
                assert r.get_json()["timings"]["dispatched_at"] is None
                ids.append(uuid.UUID(r.get_json()["id"]))
            stack.start_beat()
            stack.wait_ready(stack.start_worker())
            deadline = time.monotonic() + 240
            done = 0
            while time.monotonic() < deadline:
                with factory() as session:
                    done = session.scalar(
                        select(func.count())
                        .select_from(Certification)
                        .where(Certification.id.in_(ids), Certification.status == "succeeded")
                    )
                if done == len(ids):
                    break
                time.sleep(1)
            assert done == 100
            with factory() as session:
                assert (
                    session.scalar(
                        select(func.max(Certification.attempt)).where(Certification.id.in_(ids))
                    )
                    == 1
                )
        finally:
            stack.stop()
    redis.stop()
