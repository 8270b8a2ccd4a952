"""Through the production server (`modelcert api`, gunicorn), where framing is decided: the
body limit holds for chunked bodies as for Content-Length ones."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from app.config import Settings
from tests.conftest import BIN, Proc, free_port, make_token, settings_env, wait_http

MAX_BODY = 4096


@pytest.fixture(scope="module")
def api_url(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = settings_env(settings, API_WORKERS="1", API_THREADS="2",
                       API_MAX_BODY_BYTES=str(MAX_BODY), API_RATE_LIMIT="100000/minute")
    proc = Proc([str(BIN / "modelcert"), "api", "--bind", f"127.0.0.1:{port}"], env,
                tmp_path_factory.mktemp("api") / "api.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ready", 60, proc=proc.popen)
        yield url
    finally:
        proc.stop()


@pytest.fixture()
def headers(factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    token = make_token(factory, f"http-{uuid.uuid4().hex[:8]}")
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def target_body(padding: int) -> bytes:
    """A valid target whose JSON ends in `padding` spaces: cut anywhere in the padding, it
    still parses."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    return (b'{"name": "' + name.encode() + b'", "model": "m", '
            b'"base_url": "http://127.0.0.1:9/v1"}' + b" " * padding)


def chunked(body: bytes, size: int = 1000) -> Iterator[bytes]:
    """A generator body: httpx sends it with Transfer-Encoding: chunked, no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


def assert_413(response: httpx.Response) -> None:
    assert response.status_code == 413, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 413


def test_chunked_body_over_the_limit_is_413(api_url: str, headers: dict[str, str]) -> None:
    body = target_body(3 * MAX_BODY)
    r = httpx.post(f"{api_url}/v1/targets", content=chunked(body), headers=headers, timeout=30)
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    assert_413(r)


def test_chunked_body_one_byte_over_is_413(api_url: str, headers: dict[str, str]) -> None:
    body = target_body(0)
    body += b" " * (MAX_BODY + 1 - len(body))
    assert len(body) == MAX_BODY + 1
    assert_413(httpx.post(f"{api_url}/v1/targets", content=chunked(body), headers=headers,
                          timeout=30))


def test_same_body_with_content_length_is_413(api_url: str, headers: dict[str, str]) -> None:
    r = httpx.post(f"{api_url}/v1/targets", content=target_body(3 * MAX_BODY), headers=headers,
                   timeout=30)
    assert r.request.headers["content-length"]
    assert_413(r)


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_body_at_the_limit_is_accepted(api_url: str, headers: dict[str, str],
                                       framing: str) -> None:
    body = target_body(0)
    body += b" " * (MAX_BODY - len(body))
    content = chunked(body) if framing == "chunked" else body
    r = httpx.post(f"{api_url}/v1/targets", content=content, headers=headers, timeout=30)
    assert r.status_code == 201, r.text
