"""Canonical JSON, signing and verification (tamper, expiry, unknown key, rotation)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.certification import certificates as certs
from app.certification.results import CheckOutcome, CheckResult
from app.cli.certify import verify as verify_command

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def result(name: str, outcome: CheckOutcome = CheckOutcome.PASSED) -> CheckResult:
    return CheckResult(
        name=name,
        outcome=outcome,
        required=True,
        passed=9,
        failed=1,
        errored=0,
        total=10,
        statistic=0.9,
        threshold=0.6,
        lower=0.5958,
        upper=0.9821,
        duration_seconds=1.23,
    )


def make_cert(seed: str, issued: datetime = NOW, verdict: str = "certified") -> dict:
    key = certs.load_private_key(seed)
    payload = certs.build_payload(
        certification_id="c-1",
        target_id="t-1",
        target_name="ref",
        model="m",
        region="eu",
        endpoint_fingerprint=certs.endpoint_fingerprint(
            "openai_compatible", "http://x/v1", "m", ["m"]
        ),
        suite_name="standard",
        suite_version="1.0.0",
        suite_hash="sha256:ab",
        results=[result("chat"), result("connectivity")],
        verdict=verdict,
        key_id=certs.key_id_for(certs.public_key_b64(key)),
        issued_at=issued,
        valid_for=timedelta(days=30),
    )
    return certs.sign(payload, key)


def keys_for(*seeds: str) -> dict[str, str]:
    publics = [certs.public_key_b64(certs.load_private_key(s)) for s in seeds]
    return certs.parse_keys_document(certs.keys_document(publics))


def test_canonical_json_sorted_compact_utf8() -> None:
    assert (
        certs.canonical_json({"b": 1, "a": [True, None, "é"]})
        == '{"a":[true,null,"é"],"b":1}'.encode()
    )
    with pytest.raises(ValueError):
        certs.canonical_json({"x": float("nan")})


def test_results_digest_ignores_order_and_timings() -> None:
    a, b = result("a"), result("b")
    slower = CheckResult(**{**a.__dict__, "duration_seconds": 99.0})
    assert certs.results_digest([a, b]) == certs.results_digest([b, slower])
    failed = CheckResult(**{**a.__dict__, "outcome": CheckOutcome.FAILED})
    assert certs.results_digest([a, b]) != certs.results_digest([failed, b])


def test_key_id_is_sha256_prefix_of_raw_public_key() -> None:
    seed = certs.generate_seed()
    key_id = certs.key_id_for(certs.public_key_b64(certs.load_private_key(seed)))
    assert len(key_id) == 16 and int(key_id, 16) >= 0


def test_bad_seed_is_refused() -> None:
    with pytest.raises(ValueError):
        certs.load_private_key("c2hvcnQ=")
    with pytest.raises(ValueError):
        certs.load_private_key("not base64!!")


def test_genuine_certificate_verifies() -> None:
    seed = certs.generate_seed()
    certs.verify(make_cert(seed), keys_for(seed), now=NOW + timedelta(days=1))


def test_tampered_verdict_is_rejected() -> None:
    seed = certs.generate_seed()
    cert = make_cert(seed, verdict="not_certified")
    forged = copy.deepcopy(cert)
    forged["payload"]["verdict"] = "certified"
    with pytest.raises(certs.CertificateInvalid) as info:
        certs.verify(forged, keys_for(seed), now=NOW)
    assert info.value.reason == "bad_signature"


def test_expired_certificate_is_rejected() -> None:
    seed = certs.generate_seed()
    with pytest.raises(certs.CertificateInvalid) as info:
        certs.verify(make_cert(seed), keys_for(seed), now=NOW + timedelta(days=31))
    assert info.value.reason == "expired"


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(certs.CertificateInvalid) as info:
        certs.verify(make_cert(certs.generate_seed()), keys_for(certs.generate_seed()), now=NOW)
    assert info.value.reason == "unknown_key"


def test_malformed_certificate_is_rejected() -> None:
    for bad in (None, {}, {"payload": {}, "signature": "x"}):
        with pytest.raises(certs.CertificateInvalid) as info:
            certs.verify(bad, {}, now=NOW)
        assert info.value.reason == "malformed"


def test_rotation_old_and_new_keys_both_verify() -> None:
    old, new = certs.generate_seed(), certs.generate_seed()
    keys = keys_for(old, new)
    certs.verify(make_cert(old), keys, now=NOW)
    certs.verify(make_cert(new), keys, now=NOW)


def test_signing_with_a_key_other_than_the_payloads_is_refused() -> None:
    cert = make_cert(certs.generate_seed())
    with pytest.raises(ValueError):
        certs.sign(cert["payload"], certs.load_private_key(certs.generate_seed()))


def test_fingerprint_normalises_the_url_and_sorts_the_listing() -> None:
    a = certs.endpoint_fingerprint("openai_compatible", "HTTP://Host:80/v1/", "m", ["b", "a"])
    b = certs.endpoint_fingerprint("openai_compatible", "http://host/v1", "m", ["a", "b", "a"])
    assert a == b
    assert a != certs.endpoint_fingerprint("openai_compatible", "http://host/v1", "m", ["a"])
    assert a != certs.endpoint_fingerprint("openai_compatible", "http://host/v1", "m", None)


def test_format_3_signs_the_run_and_its_baseline_and_format_1_still_verifies() -> None:
    seed = certs.generate_seed()
    key = certs.load_private_key(seed)
    run = certs.RunRecord(
        conditions={"concurrency": 4, "max_error_rate": "0.2000"},
        capabilities={"streaming": True, "context_length": 4096, "temperature": 0.5},
        covers=("chat", "connectivity"),
        engine_version="2.0",
        client="cli",
    )
    skipped = CheckResult(
        name="embeddings",
        outcome=CheckOutcome.SKIPPED,
        required=True,
        passed=0,
        failed=0,
        errored=0,
        total=0,
        statistic=None,
        threshold=0.7,
        lower=None,
        upper=None,
        duration_seconds=0.0,
    )
    payload = certs.build_payload(
        certification_id="c",
        target_id="t",
        target_name="n",
        model="m",
        region=None,
        endpoint_fingerprint="sha256:f",
        suite_name="s",
        suite_version="1",
        suite_hash="h",
        results=[result("chat"), skipped],
        verdict="certified",
        key_id=certs.key_id_for(certs.public_key_b64(key)),
        issued_at=NOW,
        run=run,
    )
    assert payload["format"] == "modelcert-certificate/3"
    assert payload["capabilities"]["temperature"] == "0.5000"  # no floats are signed
    assert payload["skipped_required"] == ["embeddings"]
    assert [c["name"] for c in payload["checks"]] == ["chat", "embeddings"]
    assert payload["client"] == "cli" and payload["engine_version"] == "2.0"
    assert payload["baseline"] is None  # said, not left out: there was none
    certs.verify(certs.sign(payload, key), keys_for(seed), now=NOW)
    no_baseline = copy.deepcopy(payload)
    del no_baseline["baseline"]  # a format-3 payload always says its baseline
    with pytest.raises(certs.CertificateInvalid, match="baseline"):
        certs.verify(certs.sign(no_baseline, key), keys_for(seed), now=NOW)
    old = make_cert(seed)  # format 1: no run section
    assert old["payload"]["format"] == "modelcert-certificate/1"
    certs.verify(old, keys_for(seed), now=NOW)
    stripped = copy.deepcopy(payload)
    del stripped["client"]  # a payload without its run section is malformed
    with pytest.raises(certs.CertificateInvalid, match="client"):
        certs.verify(certs.sign(stripped, key), keys_for(seed), now=NOW)


def test_only_a_certified_verdict_is_accepted() -> None:
    assert certs.accepts({"verdict": "certified"})
    assert not certs.accepts({"verdict": "certified_with_warnings"})
    assert certs.accepts({"verdict": "certified_with_warnings"}, allow_warnings=True)
    for verdict in ("not_certified", "inconclusive", None):
        assert not certs.accepts({"verdict": verdict}, allow_warnings=True)


FORMAT_2 = Path(__file__).resolve().parents[2] / "fixtures" / "certificate-format-2"


def test_an_existing_format_2_certificate_still_verifies() -> None:
    """A certificate `modelcert certify` wrote before format 3 (signed then, with its keys,
    valid for ten years): the library and `modelcert verify` still accept it, and tampering
    with it is still caught."""
    cert = json.loads((FORMAT_2 / "certificate.json").read_text())
    assert cert["payload"]["format"] == "modelcert-certificate/2"
    assert "baseline" not in cert["payload"]
    keys = certs.parse_keys_document(json.loads((FORMAT_2 / "keys.json").read_text()))
    certs.verify(cert, keys)
    run = CliRunner().invoke(verify_command, [str(FORMAT_2 / "certificate.json")])
    assert run.exit_code == 0, run.output
    assert "valid: certified" in run.output
    tampered = copy.deepcopy(cert)
    tampered["payload"]["verdict"] = "certified_with_warnings"
    with pytest.raises(certs.CertificateInvalid, match="signature"):
        certs.verify(tampered, keys)
