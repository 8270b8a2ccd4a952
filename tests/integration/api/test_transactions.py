"""POST /v1/certifications costs one transaction of two statements (the token with the target,
the insert); other requests read the token in autocommit; every request, whatever its
outcome, gives its connections back."""

from __future__ import annotations

import threading
import uuid

import pytest

from app.api.factory import build_app
from app.db.session import autocommit_engine, dispose
from tests.support.sql import statements


@pytest.fixture()
def counted(settings):  # type: ignore[no-untyped-def]
    """An app of its own (its own pools), and a check that it holds no connection."""
    app = build_app(
        settings.model_copy(update={"certification_queue_name": f"nobody-{uuid.uuid4().hex[:8]}"})
    )
    engine = app.extensions["modelcert"].engine

    def idle() -> bool:
        return engine.pool.checkedout() == 0 == autocommit_engine(engine).pool.checkedout()

    yield app, idle
    app.extensions["modelcert"].dispatch.close()
    dispose(engine)


def idle_target(app, auth, name: str) -> str:  # type: ignore[no-untyped-def]
    """A target nothing listens on (its jobs stay queued: no worker reads this app's queue)."""
    return (
        app.test_client()
        .post(
            "/v1/targets",
            json={"name": name, "model": "m", "base_url": "http://127.0.0.1:9/v1"},
            headers=auth,
        )
        .get_json()["id"]
    )


def test_create_is_one_transaction_of_two_statements(counted, auth) -> None:  # type: ignore[no-untyped-def]
    """The token with the job's target, then the INSERT, committed once (e2e counts commits
    per job)."""
    app, idle = counted
    client = app.test_client()
    target = idle_target(app, auth, "one-read")
    client.post("/v1/certifications", json={"target_id": target}, headers=auth)  # warm
    for _ in range(3):
        with statements(this_thread_only=True) as seen:  # not the dispatch-marks thread
            r = client.post("/v1/certifications", json={"target_id": target}, headers=auth)
        assert r.status_code == 202, r.get_json()
        assert len(seen) == 4 and seen[0] == "BEGIN" and seen[3] == "COMMIT", seen
        assert "api_tokens" in seen[1] and "LEFT OUTER JOIN targets" in seen[1]
        assert seen[2].startswith("INSERT INTO certifications")
    assert idle()


def test_other_requests_authenticate_in_one_round_trip(counted, auth) -> None:  # type: ignore[no-untyped-def]
    app, idle = counted
    client = app.test_client()
    target = idle_target(app, auth, "get")
    with statements(this_thread_only=True) as seen:
        r = client.get(f"/v1/targets/{target}", headers=auth)
    assert r.status_code == 200, r.get_json()
    assert "api_tokens" in seen[0] and seen[1] != "COMMIT", seen  # the token read alone
    assert idle()


def test_another_organizations_target_is_not_found_with_the_token_read(  # type: ignore[no-untyped-def]
    counted, auth, factory
) -> None:
    from app.db.session import transaction
    from app.services.auth import create_token

    app, idle = counted
    theirs = idle_target(app, auth, "theirs")
    with transaction(factory) as session:
        token, _ = create_token(session, f"other-{uuid.uuid4().hex[:6]}")
    other = {"Authorization": f"Bearer {token}"}
    r = app.test_client().post("/v1/certifications", json={"target_id": theirs}, headers=other)
    assert r.status_code == 404, r.get_json()
    assert idle()


@pytest.mark.parametrize(
    "body, status",
    [
        ({"target_id": str(uuid.uuid4())}, 404),  # the view raises inside the shared txn
        ({"target_id": "not-a-uuid"}, 422),  # validation fails before the view runs
        ({"target_id": str(uuid.uuid4()), "suite": "no-such-suite"}, 422),
    ],
)
def test_failed_creates_give_the_connection_back(counted, auth, body, status) -> None:  # type: ignore[no-untyped-def]
    app, idle = counted
    client = app.test_client()
    r = client.post("/v1/certifications", json=body, headers=auth)
    assert r.status_code == status, r.get_json()
    assert idle()


def test_bad_token_is_401_before_validation(counted) -> None:  # type: ignore[no-untyped-def]
    app, idle = counted
    client = app.test_client()
    r = client.post(
        "/v1/certifications", json={"target_id": "x"}, headers={"Authorization": "Bearer mc_nope"}
    )
    assert r.status_code == 401
    assert idle()


def test_idempotent_replay_in_the_shared_transaction(counted, auth) -> None:  # type: ignore[no-untyped-def]
    app, idle = counted
    client = app.test_client()
    target = idle_target(app, auth, "tx2")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = client.post("/v1/certifications", json={"target_id": target}, headers=auth | key)
    again = client.post("/v1/certifications", json={"target_id": target}, headers=auth | key)
    other = client.post(
        "/v1/certifications", json={"target_id": target, "priority": "high"}, headers=auth | key
    )
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert other.status_code == 422  # the key was used with another body
    assert idle()


def test_racing_posts_with_one_key_make_one_job(counted, auth, factory) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from app.db.models import Certification

    app, idle = counted
    target = idle_target(app, auth, "race")
    key = uuid.uuid4().hex
    barrier = threading.Barrier(8)
    answers: list[tuple[int, str, str | None]] = []

    def post() -> None:
        client = app.test_client()
        barrier.wait()
        r = client.post(
            "/v1/certifications",
            json={"target_id": target},
            headers=auth | {"Idempotency-Key": key},
        )
        answers.append((r.status_code, r.get_json()["id"], r.headers.get("Idempotent-Replayed")))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == 8 and {a[0] for a in answers} == {202}
    assert len({a[1] for a in answers}) == 1
    assert sum(1 for a in answers if a[2] is None) == 1  # one created, seven replayed
    assert idle()
    with factory() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(Certification)
                .where(Certification.idempotency_key == key)
            )
            == 1
        )


def test_replay_survives_the_target_being_deleted(counted, auth, factory) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, update

    from app.db.models import Target

    app, idle = counted
    client = app.test_client()
    target = idle_target(app, auth, "gone")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = client.post("/v1/certifications", json={"target_id": target}, headers=auth | key)
    with factory.begin() as session:
        session.execute(
            update(Target).where(Target.id == uuid.UUID(target)).values(deleted_at=func.now())
        )
    again = client.post("/v1/certifications", json={"target_id": target}, headers=auth | key)
    assert again.status_code == 202 and again.get_json()["id"] == first.get_json()["id"]
    fresh = client.post("/v1/certifications", json={"target_id": target}, headers=auth)
    assert fresh.status_code == 404  # without the key: the deleted target is not found


def test_the_pool_holds_a_connection_for_each_request_thread_and_the_batch(settings) -> None:  # type: ignore[no-untyped-def]
    for threads in (1, 12):
        app = build_app(settings.model_copy(update={"api_threads": threads}))
        engine = app.extensions["modelcert"].engine
        try:  # and so does its autocommit twin, which authentication uses
            assert engine.pool.size() == threads + 1
            assert autocommit_engine(engine).pool.size() == threads + 1
        finally:
            app.extensions["modelcert"].dispatch.close()
            dispose(engine)
