"""Through the production server (`modelcert api`, gunicorn), where framing is decided: the
body limit holds for chunked bodies as for Content-Length ones; what gunicorn refuses by
itself (request line or headers too long, malformed HTTP, bad chunks) is problem+json too,
and neither the answer nor the log quotes the request."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from app.config import Settings
from app.devtools.harness import BIN, Proc, free_port, settings_env, wait_http
from tests.support.rows import make_token

MAX_BODY = 4096


MARKER = f"probe-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def api(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Proc]]:
    port = free_port()
    env = settings_env(
        settings,
        API_WORKERS="1",
        API_THREADS="2",
        API_MAX_BODY_BYTES=str(MAX_BODY),
        API_RATE_LIMIT="100000/minute",
    )
    proc = Proc(
        [str(BIN / "modelcert"), "api", "--bind", f"127.0.0.1:{port}"],
        env,
        tmp_path_factory.mktemp("api") / "api.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ready", 60, proc=proc.popen)
        yield url, proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def api_url(api: tuple[str, Proc]) -> str:
    return api[0]


@pytest.fixture()
def headers(factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    token = make_token(factory, f"http-{uuid.uuid4().hex[:8]}")
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def target_body(padding: int) -> bytes:
    """A valid target whose JSON ends in `padding` spaces: cut anywhere in the padding, it
    still parses."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    return (
        b'{"name": "' + name.encode() + b'", "model": "m", '
        b'"base_url": "http://127.0.0.1:9/v1"}' + b" " * padding
    )


def chunked(body: bytes, size: int = 1000) -> Iterator[bytes]:
    """A generator body: httpx sends it with Transfer-Encoding: chunked, no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


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
    assert_413(
        httpx.post(f"{api_url}/v1/targets", content=chunked(body), headers=headers, timeout=30)
    )


def test_same_body_with_content_length_is_413(api_url: str, headers: dict[str, str]) -> None:
    r = httpx.post(
        f"{api_url}/v1/targets", content=target_body(3 * MAX_BODY), headers=headers, timeout=30
    )
    assert r.request.headers["content-length"]
    assert_413(r)


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_body_at_the_limit_is_accepted(api_url: str, headers: dict[str, str], framing: str) -> None:
    body = target_body(0)
    body += b" " * (MAX_BODY - len(body))
    content = chunked(body) if framing == "chunked" else body
    r = httpx.post(f"{api_url}/v1/targets", content=content, headers=headers, timeout=30)
    assert r.status_code == 201, r.text


def raw_exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client library would send them) and read the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


def assert_server_problem(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict:  # type: ignore[type-arg]
    assert status == expected, (status, headers, body[:300])
    assert headers["content-type"] == "application/problem+json", headers
    problem = json.loads(body)
    assert problem["status"] == expected and problem["type"].startswith("https://")
    assert MARKER.encode() not in body
    return problem  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        # request line over gunicorn's limit (4094 bytes)
        (f"GET /v1/targets?q={MARKER}{'x' * 8000} HTTP/1.1\r\nHost: a\r\n\r\n".encode(), 414),
        # a header over gunicorn's field size limit (8190 bytes)
        (f"GET /live HTTP/1.1\r\nHost: a\r\nX-Big: {MARKER}{'x' * 9000}\r\n\r\n".encode(), 431),
        # not HTTP at all
        (f"{MARKER} nonsense\r\n\r\n".encode(), 400),
        # a header line without a colon
        (f"GET /live HTTP/1.1\r\nHost: a\r\n{MARKER}\r\n\r\n".encode(), 400),
        # an unknown transfer coding
        (
            b"POST /v1/targets HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
            + MARKER.encode()
            + b"\r\n\r\n",
            501,
        ),
    ],
    ids=[
        "line-too-long",
        "header-too-large",
        "not-http",
        "header-without-colon",
        "unknown-transfer-coding",
    ],
)
def test_what_gunicorn_refuses_is_problem_json(
    api_url: str, request_bytes: bytes, expected: int
) -> None:
    assert_server_problem(*raw_exchange(api_url, request_bytes), expected)


def test_a_malformed_chunk_is_400_not_500(api_url: str) -> None:
    """The chunks are decoded while the body is read: a bad chunk size is the client's
    fault, whoever reads the body."""
    request = (
        b"POST /v1/targets HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"a":\r\nZZ' + MARKER.encode() + b"\r\n1\r\n}\r\n0\r\n\r\n"
    )
    assert_server_problem(*raw_exchange(api_url, request), 400)


def test_the_log_never_quotes_a_refused_request(api: tuple[str, Proc]) -> None:
    url, proc = api
    raw_exchange(url, f"GET /{MARKER} HTTP/9.9\r\nHost: a\r\n\r\n".encode())
    raw_exchange(url, f"GET /live HTTP/1.1\r\nHost: a\r\n{MARKER}\r\n\r\n".encode())
    assert httpx.get(f"{url}/live", timeout=10).status_code == 200  # a line after the others
    assert "request refused by the server" in proc.output()
    assert MARKER not in proc.output()
