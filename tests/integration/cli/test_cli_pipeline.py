"""`modelcert certify` in a pipeline (issue #27, item 7): `--json` puts one document on stdout
and progress on stderr; an unusable `--out` is exit 2 with one line, before any request; a
table written to a pipe is not cut to 80 columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import certify as certify_module
from app.cli.certify import certify
from tests.support.reference import running_reference

BIN = Path(sys.executable).parent
CAPS = ["--capability", "streaming=true"]


@pytest.fixture(scope="module")
def reference() -> Iterator[str]:
    with running_reference() as (root, _):
        yield root


def args(base_url: str, tmp: Path, *extra: str) -> list[str]:
    return [
        "--base-url", base_url, "--model", "reference-model", "--suite", "smoke",
        "--out", str(tmp / "out"), "--signing-key-file", str(tmp / "signing-key"), *extra,
    ]  # fmt: skip


def modelcert(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed command with its stdout on a pipe, as in a pipeline."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(
        [str(BIN / "modelcert"), *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("mode", "verdict", "code"), [("good", "certified", 0), ("wrong", "not_certified", 1)]
)
def test_json_is_one_document_on_stdout(
    reference: str, tmp_path: Path, mode: str, verdict: str, code: int
) -> None:
    done = modelcert("certify", *args(f"{reference}/m/{mode}/v1", tmp_path, "--json"), cwd=tmp_path)
    assert done.returncode == code, done.stderr
    document = json.loads(done.stdout)  # nothing else on stdout
    assert document["verdict"] == verdict and document["exit_code"] == code
    assert document["certified"] is (code == 0)
    assert document["suite"]["name"] == "smoke" and document["target"]["model"] == "reference-model"
    checks = {c["name"]: c for c in document["checks"]}
    assert set(checks) == {"connectivity", "chat"}
    chat = checks["chat"]
    assert chat["outcome"] == ("passed" if code == 0 else "failed")
    assert chat["passed"] + chat["failed"] + chat["errored"] == chat["total"] == 10
    assert 0 <= chat["lower"] <= chat["statistic"] <= chat["upper"] + 1e-9 <= 1 + 1e-9
    assert chat["threshold"] == 0.6 and "of 10 passed" in chat["explanation"]
    assert document["counts"]["checks"] == 2
    assert sum(document["counts"][o] for o in ("passed", "failed", "errored")) <= 2
    certificate = Path(tmp_path, document["certificate"]["path"])
    assert json.loads(certificate.read_text())["payload"]["verdict"] == verdict
    assert document["certificate"]["certification_id"]
    assert (
        Path(tmp_path, document["keys"]).is_file()
        and Path(tmp_path, document["evidence"]).is_file()
    )
    assert "chat:" in done.stderr  # progress is on stderr


def test_an_unusable_out_is_exit_2_before_any_request(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def no_run(*_: object) -> None:
        raise AssertionError("the certification ran")

    monkeypatch.setattr(certify_module, "run_with_progress", no_run)
    (tmp_path / "a-file").write_text("")
    cases = [tmp_path / "a-file" / "out"]  # a file where a directory must be
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append(locked)
    for out in cases:
        result = CliRunner().invoke(
            certify,
            ["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--out", str(out),
             "--signing-key-file", str(tmp_path / "signing-key"), "--json"],
        )  # fmt: skip
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: --out ")


def test_the_installed_command_says_one_line_for_an_unusable_out(tmp_path: Path) -> None:
    """No traceback, and exit 2, not the 1 of "not certified"; port 9 (discard) never
    answers, so a run would have ended with another message."""
    (tmp_path / "a-file").write_text("")
    done = modelcert(
        "certify", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
        "--out", "a-file/out", "--signing-key-file", "signing-key", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == "error: --out a-file/out: Not a directory\n", done.stderr
    assert done.stdout == ""


def test_a_piped_table_is_not_cut(reference: str, tmp_path: Path) -> None:
    argv = args(f"{reference}/m/serial/v1", tmp_path, "--suite", "standard", *CAPS)
    done = modelcert("certify", *argv, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    rows = done.stdout.splitlines()
    evidence = (tmp_path / "out" / "evidence.jsonl").read_text().splitlines()
    explanations = [json.loads(line)["explanation"] for line in evidence if '"check"' in line[:20]]
    assert any(len(e) > 80 for e in explanations)
    for explanation in explanations:
        assert any(explanation in row for row in rows), f"cut: {explanation!r}\n{done.stdout}"
    assert rows[-1].startswith("verdict: not_certified")
