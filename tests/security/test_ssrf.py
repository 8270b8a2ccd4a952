"""SSRF guard: a corpus of refused URLs at creation (422 naming the field), public addresses
accepted, and at run time the address actually connected to (DNS rebinding, literal loopback)
fails the job with cause `blocked_address`; redirects are never followed."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from app.certification.checks import TargetSpec
from app.certification.engine import EngineHooks, JobFailure
from app.certification.netguard import AddressPolicy, check_url, literal_address
from app.certification.providers.http import BlockedAddressError
from app.certification.runner import execute
from app.certification.suites import get_suite
from app.config import Settings
from tests.support.jobs import run_inline
from tests.support.rows import insert_target, job_row, new_org, queued_job

BLOCKED = [
    # loopback, in every spelling a resolver accepts
    "http://127.0.0.1/v1",
    "http://127.0.0.1:8100/v1",
    "http://127.1/v1",
    "http://127.0.1/v1",
    "http://2130706433/v1",
    "http://0x7f000001/v1",
    "http://017700000001/v1",
    "http://0177.0.0.1/v1",
    "http://0x7f.0.0.1/v1",
    "http://0x7f.1/v1",
    "http://127.000.000.001/v1",
    "http://127.255.255.254/v1",
    "http://localhost/v1",
    "http://LOCALHOST:8000/v1",
    "http://api.localhost/v1",
    "http://[::1]/v1",
    "http://[0:0:0:0:0:0:0:1]/v1",
    "http://[::ffff:127.0.0.1]/v1",
    "http://[::ffff:7f00:1]/v1",
    "http://[::127.0.0.1]/v1",
    # private
    "http://10.0.0.1/v1",
    "http://10.255.255.255/v1",
    "http://012.0.0.1/v1",
    "http://167772161/v1",
    "http://172.16.0.1/v1",
    "http://172.31.255.254/v1",
    "http://192.168.0.1/v1",
    "http://192.168.1.1:8443/v1",
    "http://0xc0.0xa8.1.1/v1",
    "http://3232235777/v1",
    "http://[::ffff:10.0.0.1]/v1",
    "http://[::ffff:192.168.1.1]/v1",
    "http://[fc00::1]/v1",
    "http://[fd12:3456:789a::1]/v1",
    # CGNAT
    "http://100.64.0.1/v1",
    "http://100.127.255.254/v1",
    # link-local and cloud metadata
    "http://169.254.169.254/latest/meta-data",
    "http://169.254.0.1/v1",
    "http://2852039166/v1",
    "http://0xa9fea9fe/v1",
    "http://0251.0376.0251.0376/v1",
    "http://[fe80::1]/v1",
    "http://[::ffff:169.254.169.254]/v1",
    "http://metadata.google.internal/v1",
    "http://metadata/v1",
    # unspecified, broadcast, reserved, multicast
    "http://0.0.0.0/v1",
    "http://0/v1",
    "http://[::]/v1",
    "http://255.255.255.255/v1",
    "http://240.0.0.1/v1",
    "http://224.0.0.1/v1",
    "http://239.255.255.250/v1",
    "http://[ff02::1]/v1",
    "http://[ff05::2]/v1",
    # private addresses embedded in IPv6 (NAT64, 6to4, IPv4-compatible)
    "http://[64:ff9b::7f00:1]/v1",
    "http://[64:ff9b::a00:1]/v1",
    "http://[64:ff9b::a9fe:a9fe]/v1",
    "http://[2002:7f00:1::1]/v1",
    "http://[2002:c0a8:101::1]/v1",
    "http://[2002:a9fe:a9fe::]/v1",
    "https://127.0.0.1:443/v1",
    "https://[::1]:8443/v1",
]

PUBLIC = [
    "http://93.184.216.34/v1",
    "https://93.184.216.34:8443/v1",
    "http://8.8.8.8/v1",
    "http://1.1.1.1/v1",
    "http://[2606:2800:220:1:248:1893:25c8:1946]/v1",
    "http://[64:ff9b::5db8:d822]/v1",
    "http://[2002:5db8:d822::1]/v1",
    "http://[::ffff:93.184.216.34]/v1",
    "http://1572395042/v1",
]


def no_dns(host: str, port: int) -> list[str] | None:
    raise AssertionError(f"the corpus must not need DNS ({host})")


def test_corpus_is_large() -> None:
    assert len(set(BLOCKED)) >= 50


@pytest.mark.parametrize("url", BLOCKED)
def test_blocked_url_is_refused_by_the_guard(url: str) -> None:
    with pytest.raises(BlockedAddressError):
        check_url(url, AddressPolicy(allow_private=False), resolver=no_dns)


@pytest.mark.parametrize("url", PUBLIC)
def test_public_address_passes(url: str) -> None:
    check_url(url, AddressPolicy(allow_private=False), resolver=no_dns)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8100/v1",
        "http://10.1.2.3/v1",
        "http://[::1]/v1",
        "http://100.64.1.1/v1",
        "http://localhost/v1",
    ],
)
def test_private_allowed_only_when_enabled(url: str) -> None:
    check_url(url, AddressPolicy(allow_private=True), resolver=lambda h, p: ["127.0.0.1"])


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/", "http://0.0.0.0/v1", "http://[fe80::1]/v1", "http://224.0.0.1/v1"],
)
def test_metadata_and_unspecified_refused_even_when_private_allowed(url: str) -> None:
    with pytest.raises(BlockedAddressError):
        check_url(url, AddressPolicy(allow_private=True), resolver=no_dns)


def test_name_resolving_to_private_is_refused() -> None:
    with pytest.raises(BlockedAddressError, match="10.0.0.7"):
        check_url(
            "https://models.example.test/v1",
            AddressPolicy(),
            resolver=lambda h, p: ["93.184.216.34", "10.0.0.7"],
        )


def test_legacy_spellings_parse_like_inet_aton() -> None:
    for spelling in ("2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "0x7f.0.1"):
        assert str(literal_address(spelling)) == "127.0.0.1", spelling
        assert literal_address(spelling) == literal_address(
            socket.inet_ntoa(socket.inet_aton(spelling))
        )
    assert literal_address("example.com") is None
    assert literal_address("1.2.3.4.5") is None


@pytest.fixture(scope="module")
def strict_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"modelcert_allow_private_targets": False})


@pytest.fixture(scope="module")
def strict_client(strict_settings: Settings):  # type: ignore[no-untyped-def]
    from app import create_app

    return create_app(strict_settings).test_client()


@pytest.mark.parametrize("url", BLOCKED)
def test_target_creation_refuses_blocked_url(strict_client, auth, url: str) -> None:  # type: ignore[no-untyped-def]
    r = strict_client.post(
        "/v1/targets",
        json={"name": f"t-{uuid.uuid4().hex[:8]}", "model": "m", "base_url": url},
        headers=auth,
    )
    assert r.status_code == 422, r.get_json()
    body = r.get_json()
    assert r.mimetype == "application/problem+json"
    assert body["errors"][0]["loc"] == ["body", "base_url"], body


def test_target_creation_names_the_region_field(strict_client, auth) -> None:  # type: ignore[no-untyped-def]
    r = strict_client.post(
        "/v1/targets",
        json={
            "name": "regional",
            "model": "m",
            "endpoints": {"eu": "http://93.184.216.34/v1", "us": "http://169.254.169.254/v1"},
        },
        headers=auth,
    )
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["loc"] == ["body", "endpoints", "us"]


@pytest.mark.parametrize("url", PUBLIC[:3])
def test_target_creation_accepts_public_address(strict_client, auth, url: str) -> None:  # type: ignore[no-untyped-def]
    r = strict_client.post(
        "/v1/targets",
        json={"name": f"t-{uuid.uuid4().hex[:8]}", "model": "m", "base_url": url},
        headers=auth,
    )
    assert r.status_code == 201, r.get_json()


class RebindingDns(AbstractResolver):
    """DNS that answered a public address at creation and now answers loopback."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):  # type: ignore[no-untyped-def, override]
        return [
            {
                "hostname": host,
                "host": self.answer,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


def test_dns_rebinding_fails_the_job_with_blocked_address(
    factory, strict_settings, reference_url
) -> None:  # type: ignore[no-untyped-def]
    _, who = new_org(factory)
    port = reference_url.rsplit(":", 1)[1]
    target = insert_target(factory, who, f"http://models.rebind.test:{port}/v1")
    cert = queued_job(factory, strict_settings, who, target)
    rebinding = run_inline(
        factory,
        strict_settings,
        cert,
        "ssrf-test",
        resolver_factory=lambda: RebindingDns("127.0.0.1"),
    )
    assert rebinding == "failed"
    row = job_row(factory, cert)
    assert row.error_cause == "blocked_address", (row.error_cause, row.error_message)
    assert "127.0.0.1" in (row.error_message or "")


def test_literal_loopback_fails_the_job_with_blocked_address(
    factory, strict_settings, reference_url
) -> None:  # type: ignore[no-untyped-def]
    """aiohttp skips the resolver for IP literals; the socket factory still refuses."""
    _, who = new_org(factory)
    target = insert_target(factory, who, f"{reference_url}/v1")
    cert = queued_job(factory, strict_settings, who, target)
    assert run_inline(factory, strict_settings, cert, "ssrf-test") == "failed"
    row = job_row(factory, cert)
    assert row.error_cause == "blocked_address", (row.error_cause, row.error_message)


def test_private_allowed_setting_lets_the_job_run(factory, settings, reference_url) -> None:  # type: ignore[no-untyped-def]
    _, who = new_org(factory)
    cert = queued_job(factory, settings, who, insert_target(factory, who, f"{reference_url}/v1"))
    assert run_inline(factory, settings, cert, "ssrf-test") == "succeeded"


@pytest.fixture()
def redirecting_endpoint() -> Iterator[tuple[str, dict[str, int]]]:
    """An endpoint that answers every request with 302 to a second server that counts hits."""
    hits = {"redirector": 0, "landing": 0}
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    ports: dict[str, int] = {}

    async def landing(request: web.Request) -> web.Response:
        hits["landing"] += 1
        return web.json_response({"object": "list", "data": [{"id": "reference-model"}]})

    async def start() -> list[web.AppRunner]:
        runners = []
        land = web.Application()
        land.router.add_route("*", "/{tail:.*}", landing)
        runner = web.AppRunner(land)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports["landing"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        runners.append(runner)

        async def redirect(request: web.Request) -> web.Response:
            hits["redirector"] += 1
            raise web.HTTPFound(f"http://127.0.0.1:{ports['landing']}{request.path}")

        red = web.Application()
        red.router.add_route("*", "/{tail:.*}", redirect)
        runner = web.AppRunner(red)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports["redirector"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        runners.append(runner)
        return runners

    def serve() -> None:
        asyncio.set_event_loop(loop)
        runners = loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        for r in runners:
            loop.run_until_complete(r.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{ports['redirector']}/v1", hits
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_redirect_is_never_followed(redirecting_endpoint) -> None:  # type: ignore[no-untyped-def]
    base_url, hits = redirecting_endpoint
    spec = TargetSpec(
        provider="openai_compatible",
        model="reference-model",
        base_url=base_url,
        region=None,
        capabilities={},
        rate_limit_rps=None,
        max_concurrency=None,
    )
    with pytest.raises(JobFailure) as failure:
        asyncio.run(execute(get_suite("smoke"), spec, None, EngineHooks()))
    assert "302" in failure.value.message
    assert hits["redirector"] >= 1 and hits["landing"] == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/hook",
        "http://127.0.0.1:9/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://0x7f.1/hook",
    ],
)
def test_webhook_urls_get_the_same_guard(strict_client, auth, url: str) -> None:  # type: ignore[no-untyped-def]
    r = strict_client.post(
        "/v1/webhooks", json={"url": url, "events": ["certification.succeeded"]}, headers=auth
    )
    assert r.status_code == 422, r.get_data(as_text=True)
    assert r.get_json()["errors"][0]["loc"] == ["body", "url"]
