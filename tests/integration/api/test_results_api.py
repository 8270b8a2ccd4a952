"""Suites, results, evidence, certificates and signing keys over the API (real Postgres)."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner

from app.certification import certificates as certs
from app.cli.certify import verify
from tests.support.api import assert_problem, create_target
from tests.support.jobs import certified_target, queue, run_inline
from tests.support.rows import make_token

EVIDENCE_KEYS = {
    "check",
    "index",
    "prompt_id",
    "grade",
    "request_summary",
    "response_excerpt",
    "latency_ms",
    "ttft_ms",
    "status_code",
    "error",
    "error_cause",
    "finish_reason",
    "usage",
    "served_model",
    "retries",
    "detail",
}


@pytest.fixture()
def certified(client, auth, factory, settings, reference_url):  # type: ignore[no-untyped-def]
    """(target id, certification id) of a smoke certification run to the end in process."""
    target = create_target(client, auth, f"{reference_url}/v1")
    cert_id = queue(factory, settings, auth, target)
    assert run_inline(factory, settings, cert_id) == "succeeded"
    return target, cert_id


def test_suites(client, auth) -> None:  # type: ignore[no-untyped-def]
    names = {s["name"] for s in client.get("/v1/suites", headers=auth).get_json()["items"]}
    assert {"smoke", "standard"} <= names
    standard = client.get("/v1/suites/standard", headers=auth).get_json()
    assert standard["version"] and standard["content_hash"].startswith("sha256:")
    qa = next(c for c in standard["checks"] if c["name"] == "exact_answer")
    assert qa["required"] is True and qa["threshold"] == 0.8
    assert qa["params"] == {"dataset": "qa-basic.jsonl"}
    assert "qa-basic.jsonl" in standard["datasets"]
    assert_problem(client.get("/v1/suites/nope", headers=auth), 404)
    assert_problem(client.get("/v1/suites"), 401)


def test_results_evidence_and_certificate(client, auth, certified) -> None:  # type: ignore[no-untyped-def]
    target, cert_id = certified
    results = client.get(f"/v1/certifications/{cert_id}/results", headers=auth).get_json()
    assert results["status"] == "succeeded" and results["verdict"] == "certified"
    checks = {c["name"]: c for c in results["checks"]}
    assert set(checks) == {"connectivity", "chat"}
    chat = checks["chat"]
    assert chat["outcome"] == "passed" and chat["passed"] == chat["total"] == 10
    assert 0 < chat["lower"] <= chat["statistic"] <= chat["upper"] + 1e-9 <= 1 + 1e-9
    assert chat["threshold"] == 0.6 and chat["attempt"] == 1 and chat["duration_seconds"] >= 0

    r = client.get(f"/v1/certifications/{cert_id}/evidence", headers=auth)
    assert r.status_code == 200 and r.mimetype == "application/x-ndjson"
    lines = [json.loads(line) for line in r.get_data(as_text=True).splitlines()]
    assert len(lines) == 15 and all(set(line) == EVIDENCE_KEYS for line in lines)
    chats = [line for line in lines if line["check"] == "chat"]
    assert {(line["finish_reason"], line["served_model"]) for line in chats} == {
        ("stop", "reference-model")
    }
    assert all(line["detail"]["expected"] for line in chats)
    assert {line["check"] for line in lines} == {"connectivity", "chat"}
    assert all(line["grade"] == "pass" and line["status_code"] == 200 for line in lines)

    cert = client.get(f"/v1/certifications/{cert_id}/certificate", headers=auth).get_json()
    assert cert["status"] == "valid" and cert["payload"]["verdict"] == "certified"
    assert cert["payload"]["certification_id"] == cert_id
    assert cert["payload"]["target"]["id"] == target
    assert cert["payload"]["endpoint_fingerprint"].startswith("sha256:")
    keys = client.get("/v1/signing-keys").get_json()  # public: no token
    certs.verify(cert, certs.parse_keys_document(keys))
    current = client.get(f"/v1/targets/{target}/certificate", headers=auth).get_json()
    assert current["id"] == cert["id"]
    job = client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()
    assert job["valid_until"] is not None
    assert job["valid_until"].replace("+00:00", "Z") == cert["payload"]["valid_until"]


def test_verify_cli_accepts_keys_saved_from_the_api(
    client,
    auth,
    certified,  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    _, cert_id = certified
    cert_file, keys_file = tmp_path / "cert.json", tmp_path / "keys.json"
    cert_file.write_bytes(
        client.get(f"/v1/certifications/{cert_id}/certificate", headers=auth).data
    )
    keys_file.write_bytes(client.get("/v1/signing-keys").data)
    keys = json.loads(keys_file.read_text())["keys"]
    assert keys and {"key_id", "public_key", "created_at", "retired_at"} <= set(keys[0])
    ok = CliRunner().invoke(verify, [str(cert_file), "--keys", str(keys_file)])
    assert ok.exit_code == 0, ok.output
    cert = json.loads(cert_file.read_text())
    cert["payload"]["verdict"] = "certifiex"  # one byte changed
    cert_file.write_text(json.dumps(cert))
    bad = CliRunner().invoke(verify, [str(cert_file), "--keys", str(keys_file)])
    assert bad.exit_code == 4 and "bad_signature" in bad.output


def test_other_organizations_see_nothing(client, auth, factory, certified) -> None:  # type: ignore[no-untyped-def]
    target, cert_id = certified
    other = {"Authorization": f"Bearer {make_token(factory, f'org-{uuid.uuid4().hex[:8]}')}"}
    for path in (
        f"/v1/certifications/{cert_id}/results",
        f"/v1/certifications/{cert_id}/evidence",
        f"/v1/certifications/{cert_id}/certificate",
        f"/v1/targets/{target}/certificate",
    ):
        assert_problem(client.get(path, headers=other), 404)
        assert client.get(path, headers=auth).status_code == 200
    for bad in (str(uuid.uuid4()), "not-a-uuid"):
        assert_problem(client.get(f"/v1/certifications/{bad}/evidence", headers=auth), 404)
        assert_problem(client.get(f"/v1/targets/{bad}/certificate", headers=auth), 404)


def test_before_it_runs_there_is_nothing_to_show(
    client,
    auth,
    factory,
    settings,  # type: ignore[no-untyped-def]
    reference_url,
) -> None:
    target = create_target(client, auth, f"{reference_url}/v1")
    cert_id = queue(factory, settings, auth, target)
    assert_problem(client.get(f"/v1/certifications/{cert_id}/certificate", headers=auth), 404)
    assert_problem(client.get(f"/v1/targets/{target}/certificate", headers=auth), 404)
    results = client.get(f"/v1/certifications/{cert_id}/results", headers=auth).get_json()
    assert results["status"] == "queued" and results["checks"] == []
    r = client.get(f"/v1/certifications/{cert_id}/evidence", headers=auth)
    assert r.status_code == 200 and r.data == b""


def test_not_certified_is_signed_but_never_current(
    client,
    auth,
    factory,
    settings,  # type: ignore[no-untyped-def]
    reference_url,
) -> None:
    target, cert_id = certified_target(
        client, auth, factory, settings, f"{reference_url}/m/wrong/v1"
    )
    cert = client.get(f"/v1/certifications/{cert_id}/certificate", headers=auth).get_json()
    assert cert["payload"]["verdict"] == "not_certified" and cert["status"] == "not_certified"
    certs.verify(cert, certs.parse_keys_document(client.get("/v1/signing-keys").get_json()))
    assert (
        client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()["valid_until"] is None
    )
    assert_problem(client.get(f"/v1/targets/{target}/certificate", headers=auth), 404)


def test_a_newer_certificate_supersedes_the_older(
    client,
    auth,
    factory,
    settings,  # type: ignore[no-untyped-def]
    certified,
) -> None:
    target, first = certified
    second = queue(factory, settings, auth, target)
    assert run_inline(factory, settings, second) == "succeeded"
    current = client.get(f"/v1/targets/{target}/certificate", headers=auth).get_json()
    assert current["payload"]["certification_id"] == second
    old = client.get(f"/v1/certifications/{first}/certificate", headers=auth).get_json()
    assert old["status"] == "superseded"


def test_a_not_certified_run_ends_the_standing_of_the_certified_one(  # type: ignore[no-untyped-def]
    client, auth, factory, settings, reference_url, certified
) -> None:
    from sqlalchemy import update

    from app.db.models import Target
    from app.db.session import transaction

    target, first = certified
    with transaction(factory) as session:  # the same endpoint now answers wrong
        session.execute(
            update(Target)
            .where(Target.id == uuid.UUID(target))
            .values(base_url=f"{reference_url}/m/wrong/v1")
        )
    second = queue(factory, settings, auth, target)
    assert run_inline(factory, settings, second) == "succeeded"
    old = client.get(f"/v1/certifications/{first}/certificate", headers=auth).get_json()
    assert old["status"] == "superseded"
    current = client.get(f"/v1/targets/{target}/certificate", headers=auth)
    assert current.status_code == 404
    assert "smoke@1.1.0 certificate" in current.get_json()["detail"]


def test_openapi_documents_the_new_routes(client) -> None:  # type: ignore[no-untyped-def]
    paths = client.get("/openapi.json").get_json()["paths"]
    for path in (
        "/v1/suites",
        "/v1/suites/{name}",
        "/v1/signing-keys",
        "/v1/certifications/{certification_id}/results",
        "/v1/certifications/{certification_id}/evidence",
        "/v1/certifications/{certification_id}/certificate",
        "/v1/targets/{target_id}/certificate",
    ):
        assert path in paths, path
    evidence = paths["/v1/certifications/{certification_id}/evidence"]["get"]
    assert "application/x-ndjson" in evidence["responses"]["200"]["content"]


def test_rotated_keys_stay_published_and_verify(client, factory) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from app.db.session import transaction
    from app.services.signing import register_keys, signer_from

    old_seed, new_seed = certs.generate_seed(), certs.generate_seed()
    old, new = signer_from((old_seed,)), signer_from((new_seed, old_seed))
    with transaction(factory) as session:
        register_keys(session, old)
    payload = certs.build_payload(
        certification_id="c",
        target_id="t",
        target_name="n",
        model="m",
        region=None,
        endpoint_fingerprint="sha256:x",
        suite_name="smoke",
        suite_version="1.0.0",
        suite_hash="sha256:y",
        results=[],
        verdict="certified",
        key_id=old.key_id,
        issued_at=datetime.now(UTC),
    )
    signed_by_old = old.sign(payload)
    for _ in range(2):  # idempotent
        with transaction(factory) as session:
            register_keys(session, new)
    keys = {k["key_id"]: k for k in client.get("/v1/signing-keys").get_json()["keys"]}
    assert keys[old.key_id]["retired_at"] is not None
    assert keys[new.key_id]["retired_at"] is None
    certs.verify(signed_by_old, certs.parse_keys_document({"keys": list(keys.values())}))


def test_benchmark_suites_are_offered_only_where_enabled(client, auth, settings) -> None:  # type: ignore[no-untyped-def]
    """The test stack enables them (tests and benchmarks run them); a default deployment does
    not list them or accept a certification against one."""
    from app.config import Settings
    from app.services.suites import builtin_list

    assert settings.modelcert_benchmark_suites
    listed = {s["name"] for s in client.get("/v1/suites", headers=auth).get_json()["items"]}
    assert "bench-trivial" in listed
    assert "bench-trivial" not in {s.name for s in builtin_list(Settings())}
