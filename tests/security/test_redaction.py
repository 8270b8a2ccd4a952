"""An endpoint that reflects the key it is sent, in every spelling, gets it stored nowhere:
not verbatim, not JSON-escaped (`\\/`), URL-encoded, base64 (alone or inside
base64("Bearer <key>")), hex, not a run of it, not the part a cut left at the end of an
excerpt or an error. Checked over every table after real certifications (samples, check
details, the job's error), the evidence API, the webhook bodies sent, and log lines.

The reflecting endpoint is a small aiohttp server in this test (the reference endpoint does
not reflect); it speaks enough of the OpenAI API for the smoke suite.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import random
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
from aiohttp import web
from sqlalchemy import select, text

from app.config import Settings
from app.db.models import Webhook, WebhookDelivery
from app.db.session import transaction
from app.devtools.harness import free_port
from app.logging import log_handler
from app.redaction import MIN_RUN, REDACTED, forms, redact, redact_obj, remember
from app.schemas.resources import SecretCreate
from app.services import secrets, webhooks
from tests.support.jobs import run_inline
from tests.support.rows import insert_target, job_row, new_org, queued_job

_LETTERS = "ghijklmnopqrstuvwxyz"  # no hex digits: a window of the key never matches an id
KEY = (
    "sk-canary/"
    + "".join(random.choices(_LETTERS, k=20))
    + "/"
    + "".join(random.choices(_LETTERS.upper(), k=20))
)
JSON_ESCAPED = json.dumps(KEY)[1:-1].replace("/", "\\/")
URL_ENCODED = quote(KEY, safe="")
BASE64 = base64.b64encode(KEY.encode()).decode()
BEARER_BASE64 = base64.b64encode(f"Bearer {KEY}".encode()).decode()
HEX = KEY.encode().hex()
CUT = 9  # characters of the key left at a cut: more than MIN_EDGE, fewer than MIN_RUN


def leaks(value: str) -> list[str]:
    """Fragments of the key found in `value`: any 8 characters of a spelling (12 of the hex
    one, whose windows could otherwise match hex ids by chance)."""
    found = []
    spellings = [
        (KEY, 8),
        (JSON_ESCAPED, 8),
        (URL_ENCODED, 8),
        (BASE64, 8),
        (BEARER_BASE64[12:-4], 8),
        (HEX, 12),
    ]
    for spelling, size in spellings:
        found += [
            spelling[i : i + size]
            for i in range(len(spelling) - size + 1)
            if spelling[i : i + size] in value
        ]
    return found


# --- the redaction function itself --------------------------------------------------------


@pytest.mark.parametrize(
    "reflected",
    [
        KEY,
        JSON_ESCAPED,
        json.dumps(KEY)[1:-1],
        URL_ENCODED,
        URL_ENCODED.lower(),
        quote(KEY),
        BASE64,
        BASE64.rstrip("="),
        base64.urlsafe_b64encode(KEY.encode()).decode(),
        BEARER_BASE64,
        base64.b64encode(f"x-api-key: {KEY}!".encode()).decode(),
        HEX,
        KEY[3 : 3 + MIN_RUN],
        KEY[10:40],
    ],
    ids=[
        "raw",
        "json-solidus",
        "json",
        "url",
        "url-lower",
        "url-path",
        "base64",
        "base64-unpadded",
        "base64-url",
        "base64-bearer",
        "base64-shifted",
        "hex",
        "run-12",
        "run-30",
    ],
)
def test_every_spelling_is_redacted(reflected: str) -> None:
    out = redact(f"the key was: {reflected} (reflected)", (KEY,))
    assert not leaks(out), out
    assert REDACTED in out and out.startswith("the key was: ") and out.endswith("(reflected)")


@pytest.mark.parametrize("cut", [4, CUT, 11, 20])
def test_what_a_cut_leaves_of_a_spelling_is_redacted(cut: int) -> None:
    for spelling in (KEY, JSON_ESCAPED, URL_ENCODED):
        for tail in ("", "…", "...", " "):
            out = redact("x" * 50 + spelling[:cut] + tail, (KEY,))
            assert out == "x" * 50 + REDACTED + tail, (spelling, tail, out)


def test_ordinary_text_is_left_alone() -> None:
    texts = [
        "Paris is the capital of France.",
        "sk-",
        "ask",
        "canary",
        "x" * 3000,
        "the key is sk-other-0123456789abcdef",
    ]
    for value in texts:
        assert redact(value, (KEY,)) == value
    assert redact_obj({"a": ["b", 1, None, {"c": KEY}]}, (KEY,)) == {
        "a": ["b", 1, None, {"c": REDACTED}]
    }
    assert redact("short sk-1 key", ("sk-1",)) == f"short {REDACTED} key"  # as before
    assert KEY in forms(KEY)


# --- certifications against a reflecting endpoint -----------------------------------------


def chat_reply(index: int, key: str) -> web.Response:
    """How the reply to the index-th chat prompt reflects the key."""
    reflections = {
        1: key,
        2: json.dumps(key)[1:-1].replace("/", "\\/"),
        3: quote(key, safe=""),
        4: base64.b64encode(key.encode()).decode(),
        5: base64.b64encode(f"Bearer {key}".encode()).decode(),
        9: key.encode().hex(),
        10: key[5:25],
    }
    if index in reflections:
        content = f"token-{index} your key: {reflections[index]} ok"
    elif index == 6:  # the excerpt (2000 characters) cuts the key after CUT characters
        content = "y" * (2000 - CUT) + key
    elif index == 7:  # the error message keeps 200 characters of the body: the key is cut
        return web.Response(status=400, text="e" * (200 - CUT) + key)
    elif index == 8:
        return web.json_response(
            {"error": {"message": f"bad key {key}"}},
            status=400,
            dumps=lambda v: json.dumps(v).replace("/", "\\/"),
        )
    else:
        content = f"token-{index}"
    return web.json_response(
        {
            "id": "c",
            "object": "chat.completion",
            "model": "reference-model",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }
    )


@pytest.fixture(scope="module")
def reflecting_endpoint() -> Iterator[str]:
    """/ok/v1: lists and answers, reflecting the key; /deny/v1: 401 quoting the key."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port = free_port()

    def key_of(request: web.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    async def models(request: web.Request) -> web.Response:
        key = key_of(request)
        ids = [
            "reference-model",
            key,
            json.dumps(key)[1:-1].replace("/", "\\/"),
            quote(key, safe=""),
            base64.b64encode(key.encode()).decode(),
        ]
        return web.json_response({"object": "list", "data": [{"id": i} for i in ids]})

    async def chat(request: web.Request) -> web.Response:
        prompt = (await request.json())["messages"][0]["content"]
        return chat_reply(int(prompt.rsplit("-", 1)[1]), key_of(request))

    async def deny(request: web.Request) -> web.Response:
        return web.Response(status=401, text=f'{{"error": "invalid key {key_of(request)}"}}')

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/ok/v1/models", models)
        app.router.add_post("/ok/v1/chat/completions", chat)
        app.router.add_route("*", "/deny/{tail:.*}", deny)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    def serve() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", bodies
    server.shutdown()
    server.server_close()


def test_a_reflected_key_is_stored_sent_and_logged_nowhere(
    factory,
    settings: Settings,
    client,
    reflecting_endpoint: str,  # type: ignore[no-untyped-def]
    receiver: tuple[str, list[bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    hook_url, bodies = receiver
    token, who = new_org(factory)
    with transaction(factory) as session:
        secret_id = secrets.create_secret(
            session, secrets.box_for(settings), who, SecretCreate(name="reflected", value=KEY)
        ).id
        session.add(
            Webhook(
                organization_id=who.organization_id,
                url=hook_url,
                secret_ciphertext=secrets.box_for(settings).encrypt("whsec_t"),
                events=["certification.succeeded", "certification.failed"],
                active=True,
            )
        )
    reflected = queued_job(
        factory,
        settings,
        who,
        insert_target(factory, who, f"{reflecting_endpoint}/ok/v1", secret_id=secret_id),
    )
    denied = queued_job(
        factory,
        settings,
        who,
        insert_target(factory, who, f"{reflecting_endpoint}/deny/v1", secret_id=secret_id),
    )

    assert run_inline(factory, settings, reflected, "redaction-test") == "succeeded"
    assert run_inline(factory, settings, denied, "redaction-test") == "failed"
    failed = job_row(factory, denied)
    assert failed.error_cause == "auth_failed" and REDACTED in (failed.error_message or "")

    with factory() as session:
        deliveries = session.scalars(
            select(WebhookDelivery.id)
            .join(Webhook)
            .where(Webhook.organization_id == who.organization_id)
        ).all()
    assert len(deliveries) == 2
    for delivery_id in deliveries:
        assert webhooks.deliver(factory, settings, delivery_id).status == "delivered"

    # The evidence the endpoint's answers became: the reflections were there, redacted.
    evidence = client.get(
        f"/v1/certifications/{reflected}/evidence", headers={"Authorization": f"Bearer {token}"}
    )
    assert evidence.status_code == 200
    samples = [json.loads(line) for line in evidence.get_data(as_text=True).splitlines()]
    stored = json.dumps(samples)
    assert stored.count(REDACTED) >= 10, stored[:2000]

    places: dict[str, str] = {
        "evidence API": stored,
        "webhook bodies": b"\n".join(bodies).decode(),
        "log records": "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records),
    }
    with factory() as session:
        for table in session.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).all():
            places[f"table {table}"] = "\n".join(
                session.scalars(text(f'SELECT row_to_json(t)::text FROM "{table}" t'))
            )
    assert len(bodies) == 2 and "auth_failed" in places["webhook bodies"]
    found = {place: leaks(value) for place, value in places.items() if leaks(value)}
    assert not found, found


def test_log_lines_are_redacted_of_the_keys_a_process_handled() -> None:
    stream = io.StringIO()
    logger = logging.getLogger(f"test.redaction.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(log_handler("json", stream))
    logger.setLevel(logging.DEBUG)
    remember([KEY])
    logger.info("sent %s", KEY, extra={"body": {"echo": JSON_ESCAPED}, "header": BEARER_BASE64})
    try:
        raise ValueError(f"endpoint said {URL_ENCODED}")
    except ValueError:
        logger.exception("failed with key %s", KEY[:CUT])
    logger.handlers[0].setFormatter(logging.Formatter("%(message)s"))  # text formats too
    logger.warning("cut: %s…", KEY[:20])
    out = stream.getvalue()
    assert not leaks(out), out
    assert out.count(REDACTED) >= 5 and "endpoint said" in out


def test_the_cli_evidence_file_is_redacted_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.certification.results import CheckOutcome, CheckResult, Grade, Sample
    from app.cli.certify import write_evidence

    sample = Sample(
        index=0,
        prompt_id="p",
        grade=Grade.ERROR,
        response_excerpt="y" * 100 + KEY[:CUT] + "…",
        error=f"HTTP 401: bad key {JSON_ESCAPED}",
        detail={"echo": BASE64},
    )
    result = CheckResult(
        name="chat",
        outcome=CheckOutcome.ERRORED,
        required=True,
        passed=0,
        failed=0,
        errored=1,
        total=1,
        statistic=None,
        threshold=0.6,
        lower=None,
        upper=None,
        duration_seconds=0.1,
        details={"note": URL_ENCODED},
        samples=(sample,),
    )
    write_evidence(tmp_path / "evidence.jsonl", [result], (KEY,))
    written = (tmp_path / "evidence.jsonl").read_text()
    assert not leaks(written) and written.count(REDACTED) == 4, written


def test_a_webhook_body_is_redacted_at_delivery_too(
    factory,
    settings: Settings,  # type: ignore[no-untyped-def]
    receiver: tuple[str, list[bytes]],
) -> None:
    """A payload stored with the key in it (before this redaction, or in a form it missed
    then) is redacted again with the target's key when it is sent."""
    hook_url, bodies = receiver
    _, who = new_org(factory)
    with transaction(factory) as session:
        secret_id = secrets.create_secret(
            session, secrets.box_for(settings), who, SecretCreate(name="old", value=KEY)
        ).id
        hook = Webhook(
            organization_id=who.organization_id,
            url=hook_url,
            secret_ciphertext=secrets.box_for(settings).encrypt("whsec_t"),
            events=["certification.failed"],
            active=True,
        )
        session.add(hook)
        session.flush()
        hook_id = hook.id
    target = insert_target(factory, who, "http://127.0.0.1:9/v1", secret_id=secret_id)
    with transaction(factory) as session:
        delivery = WebhookDelivery(
            webhook_id=hook_id,
            event_id=f"old-{uuid.uuid4().hex}",
            event="certification.failed",
            payload={
                "type": "certification.failed",
                "data": {
                    "target_id": str(target),
                    "error": {"cause": "auth_failed", "message": f"HTTP 401: {KEY} {BASE64}"},
                },
            },
            status="sending",
            attempts=0,
        )
        session.add(delivery)
        session.flush()
        delivery_id = delivery.id
    sent_before = len(bodies)
    assert webhooks.deliver(factory, settings, delivery_id).status == "delivered"
    body = bodies[sent_before].decode()
    assert "auth_failed" in body and body.count(REDACTED) == 2 and not leaks(body), body
