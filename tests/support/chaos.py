"""Submit N certifications, SIGKILL workers every few seconds, restart Redis and Postgres once;
then check that every job is terminal exactly once with no duplicated or lost result."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from app.db.lifecycle import TERMINAL_STATUSES
from app.db.models import Certification, DeadLetter
from app.db.session import make_engine, make_session_factory, transaction
from app.services.auth import create_token
from tests.support.stack import PrivatePostgres, PrivateRedis, Stack


@dataclass
class ChaosReport:
    submitted: int
    succeeded: int
    failed: int
    timed_out: int
    cancelled: int
    dead_lettered: int
    redelivered: int
    worker_kills: int
    worker_restarts: int
    duration: float
    duplicate_results: int
    duplicate_samples: int
    not_terminal: int
    missing: int
    multiple_dead_letters: int

    def line(self) -> str:
        return (
            "chaos: submitted={submitted} succeeded={succeeded} failed={failed} "
            "timed_out={timed_out} dead_lettered={dead_lettered} redelivered={redelivered} "
            "worker_kills={worker_kills} worker_restarts={worker_restarts} "
            "duplicates={duplicate_results}/{duplicate_samples} not_terminal={not_terminal} "
            "missing={missing} duration={duration:.1f}s"
        ).format(**self.__dict__)


def run_chaos(
    root: Path,
    reference_url: str,
    jobs: int,
    *,
    workers: int = 2,
    kill_every: float = 3.0,
    deadline_seconds: float = 600.0,
    seed: int = 7,
) -> ChaosReport:
    rng = random.Random(seed)
    postgres = PrivatePostgres(root)
    redis = PrivateRedis(root)
    from app.db.migrate import upgrade_database

    upgrade_database(postgres.url)
    stack = Stack.create(
        root, postgres.url, redis.url, certification_max_retries=6, certification_concurrency=3
    )
    engine = make_engine(postgres.url, pool_size=2)
    factory = make_session_factory(engine)
    try:
        with transaction(factory) as session:
            token, _ = create_token(session, "chaos")
        from app.api.factory import build_app

        client = build_app(stack.settings).test_client()
        auth = {"Authorization": f"Bearer {token}"}
        target = client.post(
            "/v1/targets",
            json={
                "name": "chaos",
                "model": "reference-model",
                "base_url": f"{reference_url}/m/slow-30/v1",
            },
            headers=auth,
        ).get_json()["id"]
        stack.start_beat()
        for _ in range(workers):
            stack.start_worker()
        ids: list[uuid.UUID] = []
        started = time.monotonic()
        for _ in range(jobs):
            r = client.post("/v1/certifications", json={"target_id": target}, headers=auth)
            assert r.status_code == 202, r.get_data(as_text=True)
            ids.append(uuid.UUID(r.get_json()["id"]))
        redis_restarted = postgres_restarted = False
        next_kill = time.monotonic() + kill_every
        terminal = 0
        while time.monotonic() - started < deadline_seconds:
            try:
                with factory() as session:
                    terminal = session.scalar(
                        select(func.count())
                        .select_from(Certification)
                        .where(Certification.status.in_(TERMINAL_STATUSES))
                    )
            except OperationalError:
                pass
            if terminal >= jobs:
                break
            now = time.monotonic()
            if now >= next_kill and terminal < jobs:
                stack.kill_random_worker(rng)
                next_kill = now + kill_every
            if not redis_restarted and terminal >= jobs // 4:
                redis.restart()
                redis_restarted = True
            if not postgres_restarted and terminal >= jobs // 2:
                engine.dispose()
                postgres.restart()
                postgres_restarted = True
            stack.supervise(workers)
            time.sleep(0.5)
        duration = time.monotonic() - started
        assert redis_restarted and postgres_restarted, "the run ended before the restarts"
        with factory() as session:
            by_status = dict(
                session.execute(
                    select(Certification.status, func.count()).group_by(Certification.status)
                ).all()
            )
            dead = session.scalar(select(func.count()).select_from(DeadLetter))
            multi_dead = session.scalar(
                text(
                    "SELECT count(*) FROM (SELECT certification_id FROM dead_letters "
                    "GROUP BY certification_id HAVING count(*) > 1) x"
                )
            )
            redelivered = session.scalar(
                select(func.coalesce(func.sum(Certification.delivery_count - 1), 0)).where(
                    Certification.delivery_count > 1
                )
            )
            dup_results = session.scalar(
                text(
                    "SELECT count(*) FROM (SELECT 1 FROM check_results "
                    "GROUP BY certification_id, check_name HAVING count(*) > 1) x"
                )
            )
            dup_samples = session.scalar(
                text(
                    "SELECT count(*) FROM (SELECT 1 FROM samples GROUP BY certification_id, "
                    "check_name, sample_index HAVING count(*) > 1) x"
                )
            )
            present = session.scalar(
                select(func.count()).select_from(Certification).where(Certification.id.in_(ids))
            )
        counts = {status.value: n for status, n in by_status.items()}
        return ChaosReport(
            submitted=jobs,
            succeeded=counts.get("succeeded", 0),
            failed=counts.get("failed", 0),
            timed_out=counts.get("timed_out", 0),
            cancelled=counts.get("cancelled", 0),
            dead_lettered=dead,
            redelivered=int(redelivered),
            worker_kills=stack.kills,
            worker_restarts=stack.restarts,
            duration=duration,
            duplicate_results=dup_results,
            duplicate_samples=dup_samples,
            not_terminal=jobs
            - sum(n for s, n in counts.items() if s in {t.value for t in TERMINAL_STATUSES}),
            missing=jobs - present,
            multiple_dead_letters=multi_dead,
        )
    finally:
        stack.stop()
        engine.dispose()
        redis.stop()
        postgres.stop()
