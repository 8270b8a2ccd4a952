"""The API as a client drives it (the Flask test client or httpx): upload a suite, create a
target, certify it, wait for the end, and check a problem+json answer."""

from __future__ import annotations

import io
import time
import uuid

from tests.support import ROOT

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}
PROBLEM = "application/problem+json"
EXAMPLES = ROOT / "docs" / "suites"


def create_target(client, auth, base_url: str, **extra) -> str:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/targets",
        json={
            "name": f"t-{uuid.uuid4().hex[:8]}",
            "model": "reference-model",
            "base_url": base_url,
            **extra,
        },
        headers=auth,
    )
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def certify(client, auth, target_id: str, **extra) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/v1/certifications", json={"target_id": target_id, **extra}, headers=auth)
    assert r.status_code == 202, r.get_json()
    return r.get_json()["id"]


def wait_terminal(client, auth, cert_id: str, timeout: float = 90) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()
        if body["status"] in TERMINAL:
            return body
        time.sleep(0.3)
    raise AssertionError(f"certification {cert_id} not terminal after {timeout}s: {body}")


def wait_running_with_a_checkpoint(client, auth, cert_id: str, timeout: float = 60) -> dict:  # type: ignore[no-untyped-def]
    """Until the job runs and has committed at least one check (a mid-job moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()
        if body["status"] == "running" and body["checks"]:
            return body
        time.sleep(0.05)
    raise AssertionError(f"certification {cert_id} not running with a checkpoint: {body}")


def assert_problem(response, status: int) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    assert "Traceback" not in response.get_data(as_text=True)


def upload(client, auth, suite: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Upload the example `suite` of docs/suites with the datasets it names."""
    data = {"suite": (io.BytesIO((EXAMPLES / suite).read_bytes()), suite)}
    for jsonl in EXAMPLES.glob("*.jsonl"):
        if jsonl.name.encode() in (EXAMPLES / suite).read_bytes():
            data[jsonl.name] = (io.BytesIO(jsonl.read_bytes()), jsonl.name)
    r = client.post("/v1/suites", data=data, headers=auth, content_type="multipart/form-data")
    assert r.status_code in (200, 201), r.get_json()
    return r.get_json()  # type: ignore[no-any-return]
