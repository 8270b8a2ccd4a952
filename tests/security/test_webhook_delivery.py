"""Webhook deliveries go through the engine's SSRF guard: a name that resolves to a public
address when checked and to a blocked one when connected to (DNS rebinding) is refused
before any byte reaches the blocked address; a name that does not resolve when checked is
refused (nothing is sent; retried later); the delivery log says "connection failed" or
"blocked by the SSRF guard", never the resolver's or the socket's words or an address.

DNS is outside this machine, so it is the one thing faked: socket.getaddrinfo answers for
names under .webhook.test from a script, and resolves everything else as usual.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.models import Webhook, WebhookDelivery
from app.db.session import transaction
from app.devtools.harness import free_port
from app.services import webhooks
from app.services.auth import Principal
from app.services.secrets import SecretBox
from tests.support.rows import new_org

PUBLIC = "93.184.216.34"
FAKE_ZONE = ".webhook.test"


class Receiver:
    """An HTTP receiver on 127.0.0.1 that records each request's Host header (and answers
    204, or a redirect to `redirect_to`)."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.hosts: list[str] = []
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def hook(request: web.Request) -> web.Response:
            self.hosts.append(request.headers.get("Host", ""))
            await request.read()
            if redirect_to:
                raise web.HTTPTemporaryRedirect(redirect_to)
            return web.Response(status=204)

        async def start() -> web.AppRunner:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", hook)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            return runner

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.runner = self.loop.run_until_complete(start())
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.runner.cleanup())

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


class FakeDns:
    """Scripted answers for names under FAKE_ZONE: each lookup takes the next answer (the
    last one repeats); None is NXDOMAIN."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.script: dict[str, list[str | None]] = {}
        self.lookups: list[str] = []
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if not name.rstrip(".").endswith(FAKE_ZONE):
                return real(host, port, *args, **kwargs)
            self.lookups.append(name)
            answers = self.script.get(name.rstrip("."), [None])
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            if answer is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (
                    socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (answer, int(port or 0)),
                )
            ]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def answer(self, name: str, *answers: str | None) -> None:
        self.script[name] = list(answers)


@pytest.fixture()
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    return FakeDns(monkeypatch)


@pytest.fixture(scope="module")
def strict_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"modelcert_allow_private_targets": False})


def pending_delivery(
    factory: sessionmaker[Session], settings: Settings, who: Principal, url: str
) -> uuid.UUID:
    """A webhook (as if it had passed the creation check) with one delivery to make."""
    with transaction(factory) as session:
        hook = Webhook(
            organization_id=who.organization_id,
            url=url,
            secret_ciphertext=SecretBox.from_settings(settings).encrypt("whsec_x"),
            events=["certification.succeeded"],
            active=True,
        )
        session.add(hook)
        session.flush()
        delivery = WebhookDelivery(
            webhook_id=hook.id,
            event_id=f"e-{uuid.uuid4().hex}",
            event="certification.succeeded",
            payload={"type": "certification.succeeded"},
            status="sending",
            attempts=0,
        )
        session.add(delivery)
        session.flush()
        return delivery.id


def stored(factory: sessionmaker[Session], delivery_id: uuid.UUID) -> WebhookDelivery:
    with factory() as session:
        row = session.get(WebhookDelivery, delivery_id)
        assert row is not None
        session.expunge(row)
        return row


Deliver = Callable[[Settings, str], tuple[webhooks.DeliveryOutcome, WebhookDelivery]]


@pytest.fixture()
def deliver(factory) -> Deliver:  # type: ignore[no-untyped-def]
    _, who = new_org(factory)

    def run(settings: Settings, url: str) -> tuple[webhooks.DeliveryOutcome, WebhookDelivery]:
        delivery_id = pending_delivery(factory, settings, who, url)
        return webhooks.deliver(factory, settings, delivery_id), stored(factory, delivery_id)

    return run


def test_dns_rebinding_between_check_and_connect_is_refused(
    dns: FakeDns, receiver: Receiver, deliver: Deliver, strict_settings: Settings
) -> None:
    name = f"rebind{FAKE_ZONE}"
    dns.answer(name, PUBLIC, "127.0.0.1")  # public when checked, loopback ever after
    outcome, row = deliver(strict_settings, f"http://{name}:{receiver.port}/hook")
    assert receiver.hosts == [], "the delivery reached the loopback receiver"
    assert len(dns.lookups) >= 2  # checked, then resolved again to connect
    assert outcome.status == "failed" and row.status == "failed"
    assert row.last_error == "blocked by the SSRF guard"


def test_a_blocked_literal_address_is_refused(
    receiver: Receiver, deliver: Deliver, strict_settings: Settings
) -> None:
    outcome, row = deliver(strict_settings, f"http://127.0.0.1:{receiver.port}/hook")
    assert receiver.hosts == [] and outcome.status == "failed"
    assert row.last_error == "blocked by the SSRF guard"


def test_an_unresolvable_name_is_not_sent_to(
    dns: FakeDns, deliver: Deliver, strict_settings: Settings
) -> None:
    outcome, row = deliver(strict_settings, f"http://nowhere{FAKE_ZONE}/hook")
    assert outcome.status == "retry"  # DNS may come back: retried with backoff
    assert row.last_error == "connection failed" and row.last_status_code is None


def test_a_name_unresolvable_when_checked_is_not_resolved_again_to_connect(
    dns: FakeDns, receiver: Receiver, deliver: Deliver, strict_settings: Settings
) -> None:
    """No answer when checked, loopback when connecting: the check does not wave it through."""
    name = f"late{FAKE_ZONE}"
    dns.answer(name, None, "127.0.0.1")
    outcome, row = deliver(strict_settings, f"http://{name}:{receiver.port}/hook")
    assert receiver.hosts == [], "the delivery reached the loopback receiver"
    assert outcome.status == "retry" and row.last_error == "connection failed"


def test_the_log_says_connection_failed_not_the_socket_error(
    deliver: Deliver, settings: Settings
) -> None:
    closed = free_port()  # nothing listens: connection refused
    outcome, row = deliver(settings, f"http://127.0.0.1:{closed}/hook")
    assert outcome.status == "retry"
    assert row.last_error == "connection failed"
    # One jittered delay, the task's countdown and the row's next_attempt_at alike.
    assert outcome.retry_in is not None
    assert 0 <= outcome.retry_in <= webhooks.retry_window(settings, 1)
    assert row.next_attempt_at is not None


def test_the_checked_address_is_connected_to_with_the_name_as_host(
    dns: FakeDns, receiver: Receiver, deliver: Deliver, settings: Settings
) -> None:
    """Private targets allowed (local development): the name resolves to the receiver; the
    request carries the URL's host name, not the address."""
    name = f"pinned{FAKE_ZONE}"
    dns.answer(name, "127.0.0.1")
    outcome, row = deliver(settings, f"http://{name}:{receiver.port}/hook")
    assert outcome.status == "delivered", row.last_error
    assert receiver.hosts == [f"{name}:{receiver.port}"]
    assert row.last_status_code == 204 and row.last_error is None


def test_redirects_are_not_followed(
    receiver: Receiver, deliver: Deliver, settings: Settings
) -> None:
    redirector = Receiver(redirect_to=f"http://127.0.0.1:{receiver.port}/hook")
    try:
        outcome, row = deliver(settings, f"http://127.0.0.1:{redirector.port}/hook")
    finally:
        redirector.close()
    assert len(redirector.hosts) == 1 and receiver.hosts == []
    assert outcome.status == "retry" and row.last_error == "the receiver answered HTTP 307"


def test_a_proxy_from_the_environment_is_not_used(
    receiver: Receiver, deliver: Deliver, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = Receiver()
    try:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        outcome, _ = deliver(settings, f"http://127.0.0.1:{receiver.port}/hook")
    finally:
        proxy.close()
    assert outcome.status == "delivered" and len(receiver.hosts) == 1 and proxy.hosts == []
