"""The docs' commands that need a live stack, run as a reader runs them: in order, in one shell
per page, against a real API process (gunicorn), the session's worker, Postgres, Redis and the
reference endpoint. Which commands these are: tests/support/doc_commands.py.

What a reader puts in place of the docs' placeholders is put here: the API's address, a token,
ids of objects of the right kind (TARGET_ID, CERT_ID, ...: a fresh one for a command that
deletes, cancels or retries), the reference endpoint for the example model URLs, and a
`deploy` step after `modelcert verify … &&`. curl fails on an HTTP error (--fail-with-body), so
a command that answers 4xx or 5xx fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from cryptography.fernet import Fernet

from app.config import Settings
from app.db import jobs
from app.devtools.harness import BIN, Proc, free_port, fresh_database, settings_env, wait_http
from tests.support import ROOT
from tests.support.doc_commands import Command, commands_of, rule_for, script
from tests.support.rows import make_token

IDLE_REGION = "idle"  # its queue has no consumer (tests/conftest.py): jobs there stay queued
PRELUDE = """\
curl() { command curl --fail-with-body --max-time 60 "$@"; }
deploy() { echo "(the reader's deploy step)"; }
uuidgen() { python -c 'import uuid; print(uuid.uuid4())'; }
"""


@pytest.fixture(scope="module")
def live_api(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = Proc(
        [str(BIN / "modelcert"), "api", "--bind", f"127.0.0.1:{port}"],
        settings_env(settings),
        tmp_path_factory.mktemp("doc-api") / "api.log",
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/ready", 60, proc=proc.popen)
        yield base
    finally:
        proc.stop()


class Objects:
    """Objects of the kinds the docs' placeholders name, made through the live API."""

    def __init__(self, base: str, token: str, reference_url: str, factory, settings) -> None:  # type: ignore[no-untyped-def]
        self.http = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.reference_url = reference_url
        self.factory = factory
        self.settings = settings
        # A target certified against the standard suite (`?suite=standard` asks for it).
        self.target = self.new_target(capabilities={"streaming": True})
        self.certification = self.certify(self.target, suite="standard")
        body = self.wait_terminal(self.certification)
        assert body["status"] == "succeeded" and body["verdict"] == "certified", body

    def ok(self, response: httpx.Response) -> dict:  # type: ignore[type-arg]
        assert response.is_success, (response.request.url, response.status_code, response.text)
        return response.json()  # type: ignore[no-any-return]

    def new_target(self, region: str | None = None, **extra: object) -> str:
        where = (
            {"endpoints": {region: f"{self.reference_url}/v1"}}
            if region
            else {"base_url": f"{self.reference_url}/v1"}
        )
        body = {"name": f"doc-{uuid.uuid4().hex[:8]}", "model": "reference-model", **where}
        return self.ok(self.http.post("/v1/targets", json=body | extra))["id"]  # type: ignore[no-any-return]

    def certify(self, target: str, **extra: object) -> str:
        body = {"target_id": target, **extra}
        return self.ok(self.http.post("/v1/certifications", json=body))["id"]  # type: ignore[no-any-return]

    def wait_terminal(self, cert: str, timeout: float = 180) -> dict:  # type: ignore[type-arg]
        deadline = time.monotonic() + timeout  # a bound on a hang, not a timing assertion
        while True:
            body = self.ok(self.http.get(f"/v1/certifications/{cert}"))
            if body["status"] in {"succeeded", "failed", "timed_out", "cancelled"}:
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.3)

    def queued(self) -> str:
        return self.certify(self.new_target(IDLE_REGION), region=IDLE_REGION)

    def cancelled(self) -> str:
        cert = self.queued()
        self.ok(self.http.post(f"/v1/certifications/{cert}/cancel"))
        return cert

    def secret(self) -> str:
        body = {"name": f"doc-{uuid.uuid4().hex[:8]}", "value": "sk-doc-example"}
        return self.ok(self.http.post("/v1/secrets", json=body))["id"]  # type: ignore[no-any-return]

    def webhook(self) -> str:
        body = {"url": "http://127.0.0.1:9/hook", "events": ["certification.succeeded"]}
        return self.ok(self.http.post("/v1/webhooks", json=body))["id"]  # type: ignore[no-any-return]

    def dead_letter(self) -> str:
        """A queued job that runs out of attempts the way a worker would end it."""
        cert = self.queued()
        for _ in range(self.settings.max_attempts):
            claim = jobs.claim_job(self.factory, uuid.UUID(cert), "doc-worker", 30)
            assert claim is not None
            jobs.schedule_retry(self.factory, claim, "server_error", "HTTP 500", 0)
        letters = self.ok(self.http.get("/v1/dead-letters", params={"limit": 100}))["items"]
        return next(x["id"] for x in letters if x["certification_id"] == cert)  # type: ignore[no-any-return]

    def share(self) -> str:
        return self.ok(self.http.post(f"/v1/certifications/{self.certification}/share"))["id"]  # type: ignore[no-any-return]

    def cursor(self) -> str:
        self.queued()  # at least two, so the first page of one has a next page
        page = self.ok(self.http.get("/v1/certifications", params={"limit": 1}))
        return page["next_cursor"]  # type: ignore[no-any-return]

    def fill(self, text: str) -> str:
        """The command as a reader types it, placeholders replaced."""
        mutates = re.search(r"-X (DELETE|PATCH)\b", text)
        if "JUDGE_TARGET_ID" in text:  # a judge model: the reference endpoint's judge mode
            judge = self.new_target(base_url=f"{self.reference_url}/m/judge/v1")
            text = text.replace("JUDGE_TARGET_ID", judge)
        if "TARGET_ID" in text:
            text = text.replace("TARGET_ID", self.new_target() if mutates else self.target)
        if "CERT_ID" in text:
            if "/cancel" in text:
                cert = self.queued()
            elif "/retry" in text:
                cert = self.cancelled()
            else:
                cert = self.certification
            text = text.replace("CERT_ID", cert)
        for placeholder, make in (
            ("SECRET_ID", self.secret),
            ("WEBHOOK_ID", self.webhook),
            ("DEAD_LETTER_ID", self.dead_letter),
            ("NEXT_CURSOR", self.cursor),
            ("SHARE_ID", self.share),
        ):
            if placeholder in text:
                text = text.replace(placeholder, make())
        return re.sub(r"/dead-letters/ID/", lambda _: f"/dead-letters/{self.dead_letter()}/", text)


def _substitute(text: str, base: str, token: str, reference_url: str) -> str:
    """The reader's own values for the docs' example ones."""
    text = text.replace("http://localhost:8000", base)
    text = text.replace("localhost:8000", base.removeprefix("http://"))
    text = text.replace("http://127.0.0.1:8100", reference_url)
    text = text.replace("https://llm.example.invalid", reference_url)  # no DNS beyond loopback
    text = text.replace("https://ci.example.com/hooks/modelcert", "http://127.0.0.1:9/hook")
    text = text.replace("--base-url …", f"--base-url {reference_url}/v1")
    text = text.replace("--model …", "--model reference-model")
    text = text.replace("./cert-last-week", "./cert")  # a previous run's directory: here the same
    return re.sub(r"\bTOKEN=\.\.\.", f"TOKEN={token}", text)


LIVE_DOCS = sorted({c.doc for c in commands_of("live")})


@pytest.mark.parametrize("doc", LIVE_DOCS)
@pytest.mark.usefixtures("worker")
def test_live_commands_run(
    doc, live_api, settings, factory, reference_url, admin_database_url, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    token = make_token(factory, f"doc-{uuid.uuid4().hex[:8]}")
    objects = Objects(live_api, token, reference_url, factory, settings)
    work = tmp_path / "reader"
    work.mkdir()
    for name in (".venv", "scripts", "docs"):  # relative paths the docs use, from the root
        (work / name).symlink_to(ROOT / name)
    # The files a reader of this page has by then: the certificate from docs/api.md.
    (work / "cert.json").write_bytes(
        objects.http.get(f"/v1/certifications/{objects.certification}/certificate").content
    )
    env = settings_env(
        settings,
        PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        HOME=str(work),
        API=live_api,
        TOKEN=token,
        AUTH=f"Authorization: Bearer {token}",
        MODELCERT_API_URL=live_api,
        MODELCERT_TOKEN=token,
        MODELCERT_REFERENCE_URL=f"{reference_url}/v1",
        REDIS_URL=str(settings.redis_url),
    )
    commands: list[Command] = []
    with fresh_database(admin_database_url, "mc_docrot") as rotate_url:
        for command in commands_of("live", doc):
            assert rule_for(command).kind == "live"
            text = objects.fill(_substitute(command.text, live_api, token, reference_url))
            if "modelcert secrets rotate" in text:
                text = _rotate_in(rotate_url, settings, text)
            commands.append(Command(command.doc, command.line, text))
        result = subprocess.run(
            ["bash", "-c", script(commands, PRELUDE)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert result.returncode == 0, result.stderr[-4000:] + result.stdout[-2000:]
    ran = re.findall(r"^::: (\S+)$", result.stderr, re.M)
    assert ran == [f"{c.doc}:{c.line}" for c in commands], "every command ran"
    if any("secrets rotate" in c.text for c in commands):
        assert "re-encrypted 1 secret(s)" in result.stdout + result.stderr


def _rotate_in(url: str, settings: Settings, text: str) -> str:
    """Point the rotation at its own database, holding one secret encrypted with <old>."""
    from app.db.models import Secret
    from app.db.session import make_engine, make_session_factory, transaction
    from app.services.auth import create_token
    from app.services.secrets import SecretBox

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    box = SecretBox([old])
    engine = make_engine(url, pool_size=1)
    with transaction(make_session_factory(engine)) as session:
        _, who = create_token(session, "rotation")
        session.add(
            Secret(organization_id=who.organization_id, name="k", ciphertext=box.encrypt("sk-x"))
        )
    engine.dispose()
    text = text.replace("<new>", new).replace("<old>", old)
    return f"DATABASE_URL={url} {text}"


def test_no_live_command_reaches_beyond_loopback() -> None:
    """The substitutions above leave no example host a command would resolve."""
    for command in commands_of("live"):
        text = _substitute(command.text, "http://127.0.0.1:1", "t", "http://127.0.0.1:2")
        for host in re.findall(r"https?://([^/:\"' ]+)", text):
            assert host == "127.0.0.1", f"{command}: {host}"
