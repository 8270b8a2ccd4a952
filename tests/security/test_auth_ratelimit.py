"""Failed authentication is rate limited by client address, before the token lookup: after
AUTH_FAILURE_LIMIT failed lookups, a request with any token is a 429 problem+json with
Retry-After and costs the database nothing; other addresses are unaffected; the count is
shared by API processes (Redis)."""

from __future__ import annotations

import uuid

import pytest
from limits import parse
from sqlalchemy import event

from app.api.ratelimit import AUTH_FAILURE_LIMIT
from app.config import Settings
from app.db.session import autocommit_engine
from tests.support.rows import make_token

LIMIT = parse(AUTH_FAILURE_LIMIT).amount


def new_address() -> dict[str, str]:
    n = uuid.uuid4().int
    return {"REMOTE_ADDR": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}


def bad_token() -> dict[str, str]:
    return {"Authorization": f"Bearer mc_{uuid.uuid4().hex}"}


class Checkouts:
    """Connections the app takes from its pools (both engines): a token lookup takes one."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.count = 0
        engine = app.extensions["modelcert"].engine
        self.pools = [engine.pool, autocommit_engine(engine).pool]
        for pool in self.pools:
            event.listen(pool, "checkout", self.seen)

    def seen(self, *_: object) -> None:
        self.count += 1

    def close(self) -> None:
        for pool in self.pools:
            event.remove(pool, "checkout", self.seen)


@pytest.fixture()
def checkouts(app):  # type: ignore[no-untyped-def]
    counter = Checkouts(app)
    yield counter
    counter.close()


def test_failed_lookups_are_limited_before_the_lookup(client, factory, checkouts) -> None:  # type: ignore[no-untyped-def]
    address = new_address()
    statuses = [
        client.get("/v1/targets", headers=bad_token(), environ_base=address).status_code
        for _ in range(LIMIT)
    ]
    assert statuses == [401] * LIMIT
    r = client.get("/v1/targets", headers=bad_token(), environ_base=address)
    assert r.status_code == 429 and r.mimetype == "application/problem+json"
    assert r.get_json()["status"] == 429 and "failed authentications" in r.get_json()["detail"]
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    lookups = checkouts.count
    assert lookups == LIMIT + 1

    # Now even a valid token from that address is refused, without a lookup.
    good = {"Authorization": f"Bearer {make_token(factory, f'af-{uuid.uuid4().hex[:8]}')}"}
    for _ in range(200):
        assert (
            client.get("/v1/targets", headers=bad_token(), environ_base=address).status_code == 429
        )
    assert (
        client.post("/v1/targets", json={}, headers=good, environ_base=address).status_code == 429
    )
    assert checkouts.count == lookups, "a refused request reached the database"
    # Other addresses are not affected; a request without a token is still a 401.
    assert client.get("/v1/targets", headers=good, environ_base=new_address()).status_code == 200
    assert client.get("/v1/targets", environ_base=address).status_code == 401


def test_successful_lookups_do_not_count(client, factory) -> None:  # type: ignore[no-untyped-def]
    address = new_address()
    good = {"Authorization": f"Bearer {make_token(factory, f'af-{uuid.uuid4().hex[:8]}')}"}
    for _ in range(LIMIT + 5):
        assert client.get("/v1/signing-keys", environ_base=address).status_code == 200
    for _ in range(LIMIT + 5):
        assert client.get("/v1/targets", headers=good, environ_base=address).status_code == 200
    # Tokens that cannot be ours, or none at all, cost no lookup and are not counted either.
    for headers in ({"Authorization": "Bearer not-ours"}, {}, {"Authorization": "Basic eDp5"}):
        for _ in range(LIMIT + 5):
            assert (
                client.get("/v1/targets", headers=headers, environ_base=address).status_code == 401
            )
    assert client.get("/v1/targets", headers=good, environ_base=address).status_code == 200


def test_redis_down_fails_open(settings: Settings, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    """Failures are not counted (and logged) while Redis is unreachable: 401s, never a 500."""
    from app import create_app
    from app.devtools.harness import free_port

    app = create_app(
        settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    )
    client = app.test_client()
    address = new_address()
    statuses = {
        client.get("/v1/targets", headers=bad_token(), environ_base=address).status_code
        for _ in range(LIMIT + 5)
    }
    assert statuses == {401}
    assert any("failed lookup not counted" in r.getMessage() for r in caplog.records)


def test_the_count_is_shared_by_api_processes(settings: Settings, app) -> None:  # type: ignore[no-untyped-def]
    """Two apps (as two gunicorn workers) on one Redis: failures seen by one count for the
    other, which refuses at its first failure over the limit."""
    from app import create_app

    other = create_app(settings).test_client()
    address = new_address()
    for _ in range(LIMIT):
        assert (
            app.test_client()
            .get("/v1/targets", headers=bad_token(), environ_base=address)
            .status_code
            == 401
        )
    assert other.get("/v1/targets", headers=bad_token(), environ_base=address).status_code == 429
    assert other.get("/v1/targets", headers=bad_token(), environ_base=address).status_code == 429
