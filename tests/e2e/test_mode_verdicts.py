"""Every behaviour of the reference endpoint, through the API and a real worker, gets the
verdict docs/methodology.md says it deserves; the same runs in process are in
tests/integration/certification/test_engine_reference.py (the CLI's path)."""

from __future__ import annotations

import json

import pytest

from tests.support.api import certify, create_target, wait_terminal
from tests.support.reference import MODE_VERDICTS

CAPABILITIES = {
    "streaming": True,
    "tools": True,
    "json_schema": True,
    "embeddings": True,
    "context_length": 4096,
}


@pytest.fixture(scope="module")
def verdicts(app, factory, reference_url, worker):  # type: ignore[no-untyped-def]
    """Every mode under both shipped suites, queued at once, then awaited: (mode, suite) →
    the certification as the API shows it."""
    from tests.support.rows import make_token

    client = app.test_client()
    auth = {"Authorization": f"Bearer {make_token(factory, 'org-mode-verdicts')}"}
    queued = {}
    for mode in MODE_VERDICTS:
        target = create_target(
            client, auth, f"{reference_url}/m/{mode}/v1", capabilities=CAPABILITIES
        )
        for suite in ("smoke", "standard"):
            queued[mode, suite] = (target, certify(client, auth, target, suite=suite))
    done = {key: wait_terminal(client, auth, job, timeout=240) for key, (_, job) in queued.items()}
    return client, auth, queued, done


@pytest.mark.parametrize("mode", sorted(MODE_VERDICTS))
def test_each_behaviour_gets_the_verdict_it_deserves(verdicts, mode: str) -> None:  # type: ignore[no-untyped-def]
    _, _, _, done = verdicts
    smoke, standard = MODE_VERDICTS[mode]
    got = {
        suite: (done[mode, suite]["status"], done[mode, suite]["verdict"])
        for suite in ("smoke", "standard")
    }
    assert got == {"smoke": ("succeeded", smoke), "standard": ("succeeded", standard)}


def test_parrot_reasons_name_the_echo(verdicts) -> None:  # type: ignore[no-untyped-def]
    _, _, _, done = verdicts
    job = done["parrot", "smoke"]
    assert job["verdict_reasons"] == [
        "chat: 0 of 10 passed (95 % CI 0.00–0.28, threshold 0.60); 10 of 10 repeated the prompt"
    ]
    chat = next(c for c in job["checks"] if c["name"] == "chat")
    assert chat["explanation"] == job["verdict_reasons"][0].removeprefix("chat: ")


def test_api_evidence_records_what_the_endpoint_said(verdicts) -> None:  # type: ignore[no-untyped-def]
    client, auth, _, done = verdicts
    job = done["parrot", "smoke"]
    lines = [
        json.loads(line)
        for line in client.get(
            f"/v1/certifications/{job['id']}/evidence", headers=auth
        ).data.splitlines()
    ]
    chat = [line for line in lines if line["check"] == "chat"]
    assert len(chat) == 10
    assert {line["finish_reason"] for line in chat} == {"length"}
    assert {line["served_model"] for line in chat} == {"reference-model"}
    assert {line["detail"]["reason"] for line in chat} == {"echoed_prompt"}
    assert all(line["usage"]["completion_tokens"] == 32 and line["retries"] == 0 for line in chat)


def test_a_weaker_suite_never_stands_in_for_a_stronger_one(verdicts) -> None:  # type: ignore[no-untyped-def]
    """comply-all: standard not_certified, smoke certified. The target's current certificate
    is per suite; asked without one, the stronger suite's verdict answers."""
    client, auth, queued, done = verdicts
    target, _ = queued["comply-all", "smoke"]
    smoke = client.get(f"/v1/targets/{target}/certificate?suite=smoke", headers=auth)
    assert smoke.status_code == 200
    assert smoke.get_json()["payload"]["suite"]["name"] == "smoke"
    standard = client.get(f"/v1/targets/{target}/certificate?suite=standard", headers=auth)
    assert standard.status_code == 404
    assert "standard@2.1.0 certificate" in standard.get_json()["detail"]
    assert "not_certified" in standard.get_json()["detail"]
    strongest = client.get(f"/v1/targets/{target}/certificate", headers=auth)
    assert strongest.status_code == 404
    assert "standard@2.1.0" in strongest.get_json()["detail"]


def test_the_worker_signs_what_the_verdict_was_reached_under(verdicts) -> None:  # type: ignore[no-untyped-def]
    client, auth, _, done = verdicts
    job = done["no-embeddings", "standard"]
    cert = client.get(f"/v1/certifications/{job['id']}/certificate", headers=auth).get_json()
    payload = cert["payload"]
    assert payload["format"] == "modelcert-certificate/3" and payload["client"] == "worker"
    assert payload["run_conditions"]["concurrency"] == 4
    assert payload["run_conditions"]["check_concurrency"] == {"latency": 8, "load": 8}
    assert payload["capabilities"]["embeddings"] is True
    assert "embeddings" in payload["covers"]
    checks = {c["name"]: c for c in payload["checks"]}
    assert checks["embeddings"]["cause"] == "capability_unavailable"
    assert payload["verdict"] == "not_certified"


@pytest.mark.usefixtures("worker")
def test_a_model_the_server_does_not_list_stops_there(client, auth, reference_url) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/targets",
        json={
            "name": "bogus-model",
            "model": "gpt-bogus",
            "base_url": f"{reference_url}/m/any-model/v1",
        },
        headers=auth,
    )
    assert r.status_code == 201, r.get_json()
    job = wait_terminal(client, auth, certify(client, auth, r.get_json()["id"], suite="smoke"))
    assert (job["status"], job["verdict"]) == ("succeeded", "not_certified")
    checks = {c["name"]: c for c in job["checks"]}
    assert checks["connectivity"]["outcome"] == "failed"
    assert checks["chat"]["outcome"] == "skipped"
    assert "model_not_listed" in checks["chat"]["explanation"]
    assert job["verdict_reasons"][0].startswith("connectivity: the endpoint does not list")
