"""A team's own suite file run by `modelcert certify --suite-file` against the reference
endpoint (in process): the documented examples get the verdict each persona deserves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli.certify import certify, verify
from app.cli.suites import validate
from tests.support import ROOT
from tests.support.reference import running_reference

EXAMPLES = ROOT / "docs" / "suites"


@pytest.fixture(scope="module")
def reference() -> Iterator[str]:
    with running_reference() as (root, _):
        yield root


def certify_with(root: str, tmp: Path, mode: str, suite: str) -> tuple[int, str, dict]:  # type: ignore[type-arg]
    result = CliRunner().invoke(
        certify,
        [
            "--base-url",
            f"{root}/m/{mode}/v1",
            "--model",
            "reference-model",
            "--suite-file",
            str(EXAMPLES / suite),
            "--out",
            str(tmp / mode),
            "--signing-key-file",
            str(tmp / "signing-key"),
        ],
    )
    cert_path = tmp / mode / "certificate.json"
    cert = json.loads(cert_path.read_text()) if cert_path.exists() else {}
    return result.exit_code, result.output, cert


@pytest.mark.parametrize(
    ("mode", "exit_code"), [("good", 0), ("wrong", 1), ("parrot", 1), ("refuse-all", 1)]
)
def test_multiple_choice_suite(reference: str, tmp_path: Path, mode: str, exit_code: int) -> None:
    code, output, cert = certify_with(reference, tmp_path, mode, "knowledge.yaml")
    assert code == exit_code, output
    payload = cert["payload"]
    assert payload["suite"]["ref"] == "knowledge@1.0.0"
    hashed = CliRunner().invoke(validate, ["--json", str(EXAMPLES / "knowledge.yaml")])
    assert payload["suite"]["content_hash"] == json.loads(hashed.output)["content_hash"]
    (check,) = payload["checks"]
    assert check["sampling"]["method"] == "beta-binomial-mixture-cs"
    # A clear case stops before the dataset's 24 rows: the number used is signed.
    assert check["sampling"]["n"] == check["total"] < 24
    assert check["sampling"]["stopped"] == "decided"
    if mode == "good":
        assert (
            CliRunner().invoke(verify, [str(tmp_path / mode / "certificate.json")]).exit_code == 0
        )


@pytest.mark.parametrize(("mode", "exit_code"), [("good", 0), ("wrong", 1), ("parrot", 1)])
def test_json_extraction_suite(reference: str, tmp_path: Path, mode: str, exit_code: int) -> None:
    code, output, cert = certify_with(reference, tmp_path, mode, "extraction.yaml")
    assert code == exit_code, output
    (check,) = cert["payload"]["checks"]
    assert check["name"] == "invoice_fields" and check["total"] == 6
    assert "sampling" not in check  # fixed sampling: all six rows


def test_an_invalid_suite_file_is_a_usage_error(reference: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('name: bad\nversion: "1"\nchecks:\n  - name: nope\n')
    result = CliRunner().invoke(validate, [str(bad)])
    assert result.exit_code == 2
    assert "checks.0.name (line 4): unknown check" in result.output
    result = CliRunner().invoke(
        certify,
        ["--base-url", f"{reference}/v1", "--model", "m", "--suite-file", str(bad)],
    )
    assert result.exit_code == 2 and "unknown check" in result.output
