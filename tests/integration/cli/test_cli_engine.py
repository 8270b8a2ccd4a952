"""`certify` then `verify` against the reference endpoint, and the exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.certification import certificates as certs
from app.cli.certify import certify, verify
from tests.support.reference import MODE_VERDICTS, running_reference

CAPS = [
    "--capability",
    "streaming=true",
    "--capability",
    "tools=true",
    "--capability",
    "json_schema=true",
    "--capability",
    "context_length=4096",
]
EXIT = {"certified": 0, "certified_with_warnings": 0, "not_certified": 1, "inconclusive": 3}


@pytest.fixture(scope="module")
def reference() -> Iterator[str]:
    with running_reference() as (root, _):
        yield root


def run_certify(root: str, tmp: Path, mode: str, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        certify,
        [
            "--base-url",
            f"{root}/m/{mode}/v1",
            "--model",
            "reference-model",
            *CAPS,
            "--out",
            str(tmp / "out"),
            "--signing-key-file",
            str(tmp / "signing-key"),
            *extra,
        ],
    )
    return result.exit_code, result.output


def test_certify_then_verify_and_tamper(reference: str, tmp_path: Path) -> None:
    code, output = run_certify(reference, tmp_path, "good")
    assert code == 0, output
    cert_path = tmp_path / "out" / "certificate.json"
    assert "verdict: certified" in output
    assert (tmp_path / "out" / "evidence.jsonl").read_text().count('"type": "sample"') > 50

    ok = CliRunner().invoke(verify, [str(cert_path)])
    assert ok.exit_code == 0 and ok.output.startswith("valid: certified")

    raw = cert_path.read_bytes()
    position = raw.index(b'"verdict": "certified"') + len(b'"verdict": "c')
    cert_path.write_bytes(raw[:position] + b"C" + raw[position + 1 :])
    bad = CliRunner().invoke(verify, [str(cert_path)])
    assert bad.exit_code == 4 and "bad_signature" in bad.output


def test_old_certificates_verify_after_key_rotation(reference: str, tmp_path: Path) -> None:
    assert run_certify(reference, tmp_path, "good", "--suite", "smoke")[0] == 0
    first = tmp_path / "first.json"
    (tmp_path / "out" / "certificate.json").rename(first)
    (tmp_path / "signing-key").unlink()  # rotate: a new key is generated
    assert run_certify(reference, tmp_path, "good", "--suite", "smoke")[0] == 0
    keys = str(tmp_path / "out" / "keys.json")
    assert len(json.loads(Path(keys).read_text())["keys"]) == 2
    assert CliRunner().invoke(verify, [str(first), "--keys", keys]).exit_code == 0
    second = tmp_path / "out" / "certificate.json"
    assert CliRunner().invoke(verify, [str(second), "--keys", keys]).exit_code == 0


def test_unknown_key_and_expired_are_rejected(tmp_path: Path) -> None:
    seed = certs.generate_seed()
    key = certs.load_private_key(seed)
    from datetime import UTC, datetime, timedelta

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
        key_id=certs.key_id_for(certs.public_key_b64(key)),
        issued_at=datetime.now(UTC) - timedelta(days=40),
        valid_for=timedelta(days=30),
    )
    cert = tmp_path / "cert.json"
    cert.write_text(json.dumps(certs.sign(payload, key)))
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(certs.keys_document([certs.public_key_b64(key)])))
    expired = CliRunner().invoke(verify, [str(cert), "--keys", str(keys)])
    assert expired.exit_code == 4 and "expired" in expired.output
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps(
            certs.keys_document(
                [certs.public_key_b64(certs.load_private_key(certs.generate_seed()))]
            )
        )
    )
    unknown = CliRunner().invoke(verify, [str(cert), "--keys", str(other)])
    assert unknown.exit_code == 4 and "unknown_key" in unknown.output


def test_verify_passes_only_a_certified_verdict(reference: str, tmp_path: Path) -> None:
    """`modelcert verify cert.json && deploy` must not ship a failed model."""
    assert run_certify(reference, tmp_path, "parrot", "--suite", "smoke")[0] == 1
    cert = str(tmp_path / "out" / "certificate.json")
    refused = CliRunner().invoke(verify, [cert])
    assert refused.exit_code == 1
    assert "not certified: authentic, but the verdict is not_certified" in refused.output
    assert CliRunner().invoke(verify, [cert, "--allow-warnings"]).exit_code == 1
    assert "0  authentic, in force and certified" in CliRunner().invoke(verify, ["--help"]).output


def test_the_certificate_signs_what_the_verdict_was_reached_under(
    reference: str, tmp_path: Path
) -> None:
    assert (
        run_certify(
            reference,
            tmp_path,
            "no-embeddings",
            "--capability",
            "embeddings=true",
            "--max-concurrency",
            "2",
        )[0]
        == 1
    )
    payload = json.loads((tmp_path / "out" / "certificate.json").read_text())["payload"]
    assert payload["format"] == "modelcert-certificate/3"
    assert payload["client"] == "cli" and payload["engine_version"]
    assert payload["run_conditions"]["concurrency"] == 2  # the suite's 4, capped at 2
    assert payload["run_conditions"]["check_concurrency"] == {"latency": 2, "load": 2}
    assert payload["capabilities"]["embeddings"] is True
    assert "embeddings" in payload["covers"] and payload["skipped_required"] == []
    checks = {c["name"]: c for c in payload["checks"]}
    assert checks["embeddings"]["outcome"] == "failed"
    assert checks["embeddings"]["cause"] == "capability_unavailable"
    keys = str(tmp_path / "out" / "keys.json")
    assert (
        CliRunner()
        .invoke(verify, [str(tmp_path / "out" / "certificate.json"), "--keys", keys])
        .exit_code
        == 1
    )


def test_cli_evidence_has_the_api_shape(reference: str, tmp_path: Path) -> None:
    from app.schemas.results import EvidenceLine

    assert run_certify(reference, tmp_path, "good", "--suite", "smoke")[0] == 0
    lines = [
        json.loads(line) for line in (tmp_path / "out" / "evidence.jsonl").read_text().splitlines()
    ]
    samples = [line for line in lines if line.pop("type") == "sample"]
    assert samples and all(EvidenceLine.model_validate(s) for s in samples)
    chat = [s for s in samples if s["check"] == "chat"]
    assert {s["finish_reason"] for s in chat} == {"stop"}
    assert {s["served_model"] for s in chat} == {"reference-model"}
    assert all(s["usage"]["completion_tokens"] == 1 and s["retries"] == 0 for s in chat)
    assert all(set(EvidenceLine.model_fields) == set(s) for s in samples)


def test_exit_codes_for_verdicts_and_usage_errors(reference: str, tmp_path: Path) -> None:
    assert run_certify(reference, tmp_path, "wrong")[0] == 1
    code, output = run_certify(reference, tmp_path, "flaky-100")
    assert code == 2 and "endpoint unusable (server_error)" in output
    assert "Traceback" not in output
    code, output = run_certify(reference, tmp_path, "good", "--suite", "nope")
    assert code == 2 and "unknown suite" in output
    result = CliRunner().invoke(certify, ["--base-url", "ftp://x", "--model", "m"])
    assert result.exit_code == 2 and "http(s) URL" in result.output
    result = CliRunner().invoke(
        certify,
        [
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--signing-key-file",
            str(tmp_path / "k"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2 and "connect_error" in result.output


@pytest.mark.parametrize("mode", sorted(MODE_VERDICTS))
def test_each_behaviour_gets_the_verdict_it_deserves(
    reference: str, tmp_path: Path, mode: str
) -> None:
    """Through `modelcert certify` (embeddings declared: no-embeddings must fail them)."""
    for suite, expected in zip(("smoke", "standard"), MODE_VERDICTS[mode], strict=True):
        code, output = run_certify(
            reference, tmp_path / suite, mode, "--suite", suite, "--capability", "embeddings=true"
        )
        payload = json.loads((tmp_path / suite / "out" / "certificate.json").read_text())["payload"]
        assert (payload["verdict"], code) == (expected, EXIT[expected]), output


REGRESS_SUITE = """\
name: regress-cli
version: "1.0.0"
checks:
  - {name: chat, id: chat_reported, threshold: 0.3, params: {prompts: 60}}
  - {name: chat, id: chat_forbidden, threshold: 0.3, params: {prompts: 60}, regression: forbid}
"""


def test_certify_with_a_baseline_marks_regressions(reference: str, tmp_path: Path) -> None:
    """A certified run, then the same suite against a worse model with --baseline: both checks
    regressed; the one whose suite entry forbids it fails, and the verdict with it."""
    suite = tmp_path / "regress.yaml"
    suite.write_text(REGRESS_SUITE)
    key = ["--signing-key-file", str(tmp_path / "signing-key"), "--suite-file", str(suite)]

    said: list[str] = []

    def run(mode: str, out: str, *extra: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            certify,
            [
                "--base-url",
                f"{reference}/m/{mode}/v1",
                "--model",
                "reference-model",
                "--out",
                str(tmp_path / out),
                "--json",
                *key,
                *extra,
            ],
        )
        said.append(result.stderr)
        return result.exit_code, result.stdout

    code, first = run("good", "before")
    assert code == 0, first
    assert json.loads(first)["baseline"] is None
    code, second = run("degraded", "after", "--baseline", str(tmp_path / "before"))
    assert code == 1, second
    document = json.loads(second)
    before_id = json.loads(first)["certificate"]["certification_id"]
    assert document["baseline"]["certification_id"] == before_id
    assert document["regressed"] == ["chat_reported", "chat_forbidden"]
    checks = {c["name"]: c for c in document["checks"]}
    assert checks["chat_reported"]["outcome"] == "passed"
    assert checks["chat_forbidden"]["outcome"] == "failed"
    assert checks["chat_forbidden"]["explanation"].startswith(
        f"regressed against certification {before_id}"
    )
    assert checks["chat_reported"]["regression"]["upper"] < 0
    payload = json.loads((tmp_path / "after" / "certificate.json").read_text())["payload"]
    assert payload["format"] == "modelcert-certificate/3"
    assert payload["baseline"]["certification_id"] == before_id
    signed = {c["name"]: c for c in payload["checks"]}
    assert signed["chat_forbidden"]["regression"]["regressed"] is True
    assert signed["chat_forbidden"]["cause"] == "regressed"

    # The same model again, judged against the first run: nothing regressed.
    code, again = run("good", "again", "--baseline", str(tmp_path / "before" / "certificate.json"))
    assert code == 0 and json.loads(again)["regressed"] == []

    # What cannot be a baseline is refused before any request, with exit 2.
    code, _ = run("good", "x", "--baseline", str(tmp_path / "after"))
    assert code == 2 and "is not_certified: a baseline is a certified run" in said[-1]
    refused = CliRunner().invoke(
        certify,
        [
            "--base-url",
            f"{reference}/m/good/v1",
            "--model",
            "reference-model",
            "--out",
            str(tmp_path / "y"),
            "--signing-key-file",
            str(tmp_path / "signing-key"),
            "--suite",
            "smoke",
            "--baseline",
            str(tmp_path / "before"),
        ],
    )
    assert refused.exit_code == 2 and "only the same suite version compares" in refused.output
    tampered = json.loads((tmp_path / "before" / "certificate.json").read_text())
    tampered["payload"]["checks"][0]["passed"] = 0
    (tmp_path / "forged.json").write_text(json.dumps(tampered))
    (tmp_path / "keys.json").write_text((tmp_path / "before" / "keys.json").read_text())
    code, _ = run("good", "z", "--baseline", str(tmp_path / "forged.json"))
    assert code == 2 and "is not authentic (bad_signature)" in said[-1]
