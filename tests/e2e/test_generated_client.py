"""A client generated from /openapi.json, as a client team would (issue #27, item 9):
openapi-python-client with docs/clients/openapi-python-client.yaml, from the document a real
`modelcert api` serves, without a warning; then the README's flow through it against that
server and a real worker: create a target (the reference endpoint), queue a certification with
an Idempotency-Key (the retry gets the same job), wait, read the results, the samples, the
evidence stream and the certificate (verified offline with the published keys), and get a
typed Problem for a bad id."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from app.certification import certificates as certs
from app.devtools.harness import BIN, Proc, free_port, settings_env, wait_http
from tests.support.rows import make_token

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "docs/clients/openapi-python-client.yaml"
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


@pytest.fixture(scope="module")
def api_url(settings, tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    port = free_port()
    log = tmp_path_factory.mktemp("api") / "api.log"
    api = Proc(
        [str(BIN / "modelcert"), "api", "--bind", f"127.0.0.1:{port}"],
        settings_env(settings, API_WORKERS="1", API_THREADS="2"),
        log,
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", 60, proc=api.popen)
        yield f"http://127.0.0.1:{port}"
    finally:
        api.stop()


@pytest.fixture(scope="module")
def generated(api_url: str, tmp_path_factory) -> Iterator[ModuleType]:  # type: ignore[no-untyped-def]
    """The generated package, imported; the generator's warnings fail the test."""
    out = tmp_path_factory.mktemp("client")
    spec = out / "openapi.json"
    spec.write_text(httpx.get(f"{api_url}/openapi.json", timeout=10).text)
    done = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--config",
            str(CONFIG),
            "--meta",
            "none",
            "--output-path",
            str(out / "modelcert_client"),
        ],
        cwd=out,
        env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Warning" not in output and "WARNING" not in output, output
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("modelcert_client")
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m.split(".")[0] == "modelcert_client"]:
            del sys.modules[name]


def api(generated: ModuleType, path: str) -> Any:
    return importlib.import_module(f"{generated.__name__}.api.{path}")


def test_the_operations_have_short_stable_names(generated: ModuleType) -> None:
    for path in (
        "targets.create_target",
        "targets.get_target",
        "certifications.create_certification",
        "certifications.get_certification",
        "certifications.cancel_certification",
        "results.get_results",
        "results.list_samples",
        "results.get_evidence",
        "certificates.get_certification_certificate",
        "certificates.list_signing_keys",
    ):
        module = api(generated, path)
        assert callable(module.sync) and callable(module.sync_detailed), path
    create = api(generated, "certifications.create_certification")
    assert "idempotency_key" in create.sync.__code__.co_varnames


@pytest.mark.usefixtures("worker")
def test_the_readme_flow_through_a_generated_client(  # type: ignore[no-untyped-def]
    generated: ModuleType, api_url: str, reference_url: str, factory
) -> None:
    models = importlib.import_module(f"{generated.__name__}.models")
    token = make_token(factory, f"generated-{uuid.uuid4().hex[:8]}")
    client = generated.AuthenticatedClient(
        base_url=api_url, token=token, raise_on_unexpected_status=True
    )

    target = api(generated, "targets.create_target").sync(
        client=client,
        body=models.TargetCreate(
            name=f"generated-{uuid.uuid4().hex[:8]}",
            model="reference-model",
            base_url=f"{reference_url}/v1",
        ),
    )
    assert isinstance(target, models.TargetView), target

    create = api(generated, "certifications.create_certification")
    body = models.CertificationCreate(target_id=target.id, suite="smoke")
    key = uuid.uuid4().hex
    first = create.sync_detailed(client=client, body=body, idempotency_key=key)
    assert first.status_code == 202 and isinstance(first.parsed, models.CertificationView)
    job = first.parsed
    assert first.headers["Location"] == f"/v1/certifications/{job.id}"
    again = create.sync_detailed(client=client, body=body, idempotency_key=key)
    assert again.status_code == 202 and again.parsed.id == job.id  # the same job
    assert again.headers["Idempotent-Replayed"] == "true"

    get_certification = api(generated, "certifications.get_certification")
    deadline = time.monotonic() + 120
    while True:
        view = get_certification.sync(client=client, certification_id=str(job.id))
        assert isinstance(view, models.CertificationView), view
        if view.status.value in TERMINAL or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert view.status.value == "succeeded", view.to_dict()
    assert view.verdict.value == "certified"

    results = api(generated, "results.get_results").sync(
        client=client, certification_id=str(job.id)
    )
    assert isinstance(results, models.ResultsView)
    outcomes = {c.name: c.outcome for c in results.checks}
    assert outcomes == {"connectivity": "passed", "chat": "passed"}, outcomes
    total = sum(c.total for c in results.checks)

    list_samples = api(generated, "results.list_samples")
    samples: list[Any] = []
    cursor: Any = generated.types.UNSET
    while True:
        page = list_samples.sync(
            client=client, certification_id=str(job.id), limit=4, cursor=cursor
        )
        assert isinstance(page, models.SampleList), page
        samples += page.items
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert len(samples) == total and all(isinstance(s, models.EvidenceLine) for s in samples)
    assert {s.check for s in samples} == {"connectivity", "chat"}

    evidence = api(generated, "results.get_evidence").sync(
        client=client, certification_id=str(job.id)
    )
    lines = evidence.payload.read().decode().splitlines()
    assert len(lines) == total

    certificate = api(generated, "certificates.get_certification_certificate").sync(
        client=client, certification_id=str(job.id)
    )
    assert isinstance(certificate, models.CertificateView), certificate
    keys = api(generated, "certificates.list_signing_keys").sync(
        client=generated.Client(base_url=api_url)  # public: no token
    )
    signed = {"payload": certificate.payload.to_dict(), "signature": certificate.signature}
    certs.verify(signed, certs.parse_keys_document(keys.to_dict()))
    assert signed["payload"]["verdict"] == "certified"

    for bad in ("not-an-id", str(uuid.uuid4())):
        missing = get_certification.sync_detailed(client=client, certification_id=bad)
        assert missing.status_code == 404
        assert isinstance(missing.parsed, models.Problem), missing.parsed
        assert missing.parsed.status == 404 and missing.parsed.type_.endswith("not-found")
        assert missing.headers["Content-Type"].startswith("application/problem+json")
