"""API + real worker + reference endpoint: certificates, the CLI's agreement, resumption."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.certification.checks import StopRequested, TargetSpec
from app.certification.engine import EngineHooks
from app.certification.runner import execute
from app.certification.suites import get_suite
from app.db import jobs
from app.db.models import CheckResultRow, SampleRow
from app.devtools.harness import BIN
from app.queue.publisher import Publisher
from tests.support.api import certify, create_target, wait_terminal
from tests.support.jobs import queue

CAPABILITIES = {
    "streaming": True,
    "tools": True,
    "json_schema": True,
    "embeddings": True,
    "context_length": 8192,
    "embedding_model": "reference-embed",
}


def modelcert(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "modelcert"), *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.usefixtures("worker")
def test_api_and_cli_agree_and_the_certificate_verifies(
    client,
    auth,
    reference_url,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    base_url = f"{reference_url}/m/good/v1"
    target = create_target(client, auth, base_url, capabilities=CAPABILITIES)
    cert_id = certify(client, auth, target, suite="standard")
    cli = modelcert(
        "certify",
        "--base-url",
        base_url,
        "--model",
        "reference-model",
        "--suite",
        "standard",
        "--out",
        str(tmp_path / "cli"),
        "--signing-key-file",
        str(tmp_path / "cli-key"),
        *[
            arg
            for k, v in CAPABILITIES.items()
            for arg in ("--capability", f"{k}={str(v).lower()}")
        ],
    )
    job = wait_terminal(client, auth, cert_id, timeout=240)
    assert job["status"] == "succeeded", job
    assert cli.returncode == 0, cli.stderr[-2000:]

    api_outcomes = {c["name"]: c["outcome"] for c in job["checks"]}
    evidence = (tmp_path / "cli" / "evidence.jsonl").read_text().splitlines()
    cli_outcomes = {
        r["name"]: r["outcome"] for r in map(json.loads, evidence) if r["type"] == "check"
    }
    cli_cert = json.loads((tmp_path / "cli" / "certificate.json").read_text())
    assert job["verdict"] == cli_cert["payload"]["verdict"] == "certified"
    assert api_outcomes == cli_outcomes
    assert len(api_outcomes) == len(get_suite("standard").definition.checks)

    cert_file, keys_file = tmp_path / "cert.json", tmp_path / "keys.json"
    cert_file.write_bytes(
        client.get(f"/v1/certifications/{cert_id}/certificate", headers=auth).data
    )
    keys_file.write_bytes(client.get("/v1/signing-keys").data)
    ok = modelcert("verify", str(cert_file), "--keys", str(keys_file), timeout=60)
    assert ok.returncode == 0, ok.stderr
    api_payload = json.loads(cert_file.read_text())["payload"]
    assert api_payload["endpoint_fingerprint"] == cli_cert["payload"]["endpoint_fingerprint"]
    assert ok.stdout.startswith("valid: certified")

    raw = cert_file.read_bytes()
    at = raw.index(b'"verdict":"certified"') + len(b'"verdict":"c')
    cert_file.write_bytes(raw[:at] + b"C" + raw[at + 1 :])  # one byte of the verdict
    bad = modelcert("verify", str(cert_file), "--keys", str(keys_file), timeout=60)
    assert bad.returncode == 4 and "bad_signature" in bad.stderr


@pytest.mark.usefixtures("worker")
def test_redelivered_job_resumes_from_its_checkpoints(
    client,
    auth,
    factory,
    settings,  # type: ignore[no-untyped-def]
    reference_url,
) -> None:
    base_url = f"{reference_url}/v1"
    target = create_target(client, auth, base_url)
    cert_id = queue(factory, settings, auth, target)  # not published: nobody else runs it
    job_id = uuid.UUID(cert_id)

    # An earlier delivery: claims, finishes the first check, then stops (worker shutdown).
    claim = jobs.claim_job(factory, job_id, "earlier-worker", settings.certification_lease_seconds)
    assert claim is not None and claim.attempt == 1
    saved: list[str] = []

    def checkpoint(result) -> None:  # type: ignore[no-untyped-def]
        marked = dataclasses.replace(result, details={**result.details, "saved_by": "earlier"})
        assert jobs.save_check(factory, claim, marked) is not None
        saved.append(result.name)

    hooks = EngineHooks(on_check_finished=checkpoint, should_stop=lambda: bool(saved))
    spec = TargetSpec(
        "openai_compatible", "reference-model", base_url, capabilities={"streaming": True}
    )
    with pytest.raises(StopRequested):
        asyncio.run(execute(get_suite("smoke"), spec, None, hooks))
    assert saved == ["connectivity"]
    jobs.release(factory, claim)

    # Redelivery to the real worker.
    assert Publisher(settings).publish_run(job_id, settings.certification_queue_name, "normal")
    job = wait_terminal(client, auth, cert_id)
    assert job["status"] == "succeeded" and job["verdict"] == "certified", job
    assert {c["name"] for c in job["checks"]} == {"connectivity", "chat"}
    with factory() as session:
        rows = {
            r.check_name: r
            for r in session.scalars(
                select(CheckResultRow).where(CheckResultRow.certification_id == job_id)
            )
        }
        samples = dict(
            session.execute(
                select(SampleRow.check_name, func.count())
                .where(SampleRow.certification_id == job_id)
                .group_by(SampleRow.check_name)
            ).all()
        )
    assert rows["connectivity"].details["saved_by"] == "earlier"  # not rerun
    assert "saved_by" not in rows["chat"].details
    assert rows["connectivity"].created_at < rows["chat"].created_at
    assert samples == {"connectivity": 5, "chat": 10}  # not doubled
    assert job["progress"]["done"] == job["progress"]["total"] == 15
    assert client.get(f"/v1/certifications/{cert_id}/certificate", headers=auth).status_code == 200
