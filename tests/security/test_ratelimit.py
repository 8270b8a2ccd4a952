"""Per-token rate limits: 429 problem+json with Retry-After, probes exempt, tokens apart;
Redis down -> requests go through (fail open, logged), never a 500. Body limit 413 kept."""

from __future__ import annotations

import logging
import uuid

import pytest

from app.config import Settings
from app.devtools.harness import free_port, start_redis_server
from tests.support.rows import make_token


@pytest.fixture(scope="module")
def limited_app(settings: Settings):  # type: ignore[no-untyped-def]
    from app import create_app

    return create_app(settings.model_copy(update={"api_rate_limit": "5/minute"}))


def token_header(factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {make_token(factory, f'rl-{uuid.uuid4().hex[:8]}')}"}


def test_token_over_its_limit_gets_429_with_retry_after(limited_app, factory) -> None:  # type: ignore[no-untyped-def]
    client = limited_app.test_client()
    first, second = token_header(factory), token_header(factory)
    statuses = [client.get("/v1/targets", headers=first).status_code for _ in range(5)]
    assert statuses == [200] * 5
    r = client.get("/v1/secrets", headers=first)  # the limit is per token, across routes
    assert r.status_code == 429
    assert r.mimetype == "application/problem+json"
    assert r.get_json()["status"] == 429
    assert int(r.headers["Retry-After"]) > 0
    assert client.get("/v1/targets", headers=second).status_code == 200


def test_probes_are_exempt(limited_app) -> None:  # type: ignore[no-untyped-def]
    client = limited_app.test_client()
    for _ in range(12):
        assert client.get("/live").status_code == 200
        assert client.get("/openapi.json").status_code == 200


def test_body_over_the_limit_is_413(limited_app, factory) -> None:  # type: ignore[no-untyped-def]
    client = limited_app.test_client()
    big = b'{"name": "' + b"x" * (limited_app.config["MAX_CONTENT_LENGTH"] + 10) + b'"}'
    r = client.post(
        "/v1/targets", data=big, content_type="application/json", headers=token_header(factory)
    )
    assert r.status_code == 413 and r.mimetype == "application/problem+json"


def test_bad_rate_limit_setting_is_refused() -> None:
    from pydantic import ValidationError

    from app.config import describe_validation_error

    with pytest.raises(ValidationError) as exc:
        Settings(api_rate_limit="lots")
    assert "API_RATE_LIMIT='lots' is invalid" in describe_validation_error(exc.value)


def test_redis_down_fails_open(settings: Settings, factory, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    from app import create_app

    port = free_port()
    proc = start_redis_server(port, tmp_path / "redis")
    try:
        app = create_app(
            settings.model_copy(
                update={"redis_url": f"redis://127.0.0.1:{port}/0", "api_rate_limit": "1000/minute"}
            )
        )
        client = app.test_client()
        headers = token_header(factory)
        assert client.get("/v1/targets", headers=headers).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            r = client.get("/v1/targets", headers=headers)
            assert r.status_code == 200, r.get_data()[:300]
    assert any("rate limit" in record.getMessage().lower() for record in caplog.records)


def test_headers_come_from_the_hit_in_one_round_trip(
    limited_app,
    factory,  # type: ignore[no-untyped-def]
    settings: Settings,
) -> None:
    """X-RateLimit-* agree with the window as limits itself reads it, and no request reads
    the window again after its hit (one script call per request on the limiter's key)."""
    import threading
    import time

    import redis
    from limits import parse
    from limits.storage import RedisStorage
    from limits.strategies import FixedWindowRateLimiter

    from app.api.ratelimit import KEY_PREFIX

    client = limited_app.test_client()
    headers = token_header(factory)
    r = redis.Redis.from_url(str(settings.redis_url))
    seen: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        with r.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                seen.append(command["command"])
                if "stop-watching" in command["command"]:
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ready.wait(5)
    remaining = []
    for _ in range(3):
        response = client.get("/v1/targets", headers=headers)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "5"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        reset = int(response.headers["X-RateLimit-Reset"])
        assert time.time() - 1 <= reset <= time.time() + 61
    r.get("stop-watching")
    watcher.join(10)
    assert remaining == [4, 3, 2]
    token_id = next(c for c in seen if "token:" in c).split("token:")[1].split("/")[0]
    on_key = [c.split()[0].upper() for c in seen if f"token:{token_id}" in c]
    assert on_key.count("EVALSHA") == 3 and "GET" not in on_key and "TTL" not in on_key, on_key
    # limits' own reading of the same window agrees.
    storage = RedisStorage(str(settings.redis_url))
    stats = FixedWindowRateLimiter(storage).get_window_stats(
        parse("5/minute"), KEY_PREFIX, f"token:{token_id}", "global"
    )
    assert stats.remaining == 2 and abs(stats.reset_time - reset) <= 2


def test_several_limits_the_narrowest_first(settings: Settings, factory) -> None:  # type: ignore[no-untyped-def]
    """'10/hour;3/minute;3/minute': the minute's window is counted once and, with the fewest
    requests left, gives the headers; the fourth request is refused by it, with its headers
    and Retry-After."""
    import time

    from app import create_app

    app = create_app(settings.model_copy(update={"api_rate_limit": "10/hour;3/minute;3/minute"}))
    client = app.test_client()
    headers = token_header(factory)
    seen = []
    for _ in range(3):
        r = client.get("/v1/targets", headers=headers)
        assert r.status_code == 200
        seen.append((r.headers["X-RateLimit-Limit"], r.headers["X-RateLimit-Remaining"]))
    assert seen == [("3", "2"), ("3", "1"), ("3", "0")]  # counted once, though named twice
    r = client.get("/v1/targets", headers=headers)
    assert r.status_code == 429 and r.mimetype == "application/problem+json"
    body = r.get_json()
    assert body["type"].endswith("too-many-requests") and "3 per 1 minute" in body["detail"]
    assert r.headers["X-RateLimit-Limit"] == "3" and r.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert int(r.headers["X-RateLimit-Reset"]) <= time.time() + 61
    assert body["request_id"] == r.headers["X-Request-ID"]


def test_requests_without_a_token_are_limited_by_address(limited_app) -> None:  # type: ignore[no-untyped-def]
    """The public signing keys need no token: their limit is the caller's address's."""
    client = limited_app.test_client()
    first, second = (
        {"REMOTE_ADDR": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}
        for n in (uuid.uuid4().int, uuid.uuid4().int)
    )
    statuses = [client.get("/v1/signing-keys", environ_base=first).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    assert client.get("/v1/signing-keys", environ_base=second).status_code == 200
    assert "X-RateLimit-Limit" not in client.get("/live").headers  # not limited, no headers
