"""Report pages rendered from a certify run's files: escaping, the CSP's hash, the filters,
the comparison, and the verify page's three outcomes."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.certification import certificates as certs
from app.certification.regressions import Baseline, assess, figures_of
from app.certification.results import CheckOutcome, CheckResult
from app.cli.certify import write_evidence, write_keys
from app.cli.report import report as report_command
from app.reports.files import report_from_dir
from app.reports.model import (
    check_from_record,
    compare,
    verdict_reasons,
)
from app.reports.render import content_security_policy, render_report
from app.reports.verify import verify_document, verify_text
from app.services.certifications import verdict_reasons as service_reasons

SEED = certs.generate_seed()
EVIL = "<script>window.__pwned=1</script><svg onload=alert(1)>"


def result(name: str, outcome: str, passed: int, failed: int, required: bool = True) -> CheckResult:
    from app.certification.scoring import wilson_interval

    lower, upper = wilson_interval(passed, passed + failed)
    return CheckResult(
        name=name,
        outcome=CheckOutcome(outcome),
        required=required,
        passed=passed,
        failed=failed,
        errored=0,
        total=passed + failed,
        statistic=passed / (passed + failed),
        threshold=0.6,
        lower=lower,
        upper=upper,
        duration_seconds=0.5,
        details={"check": name},
        explanation=f"{passed} of {passed + failed} passed",
    )


def write_run(directory: Path, results: list[CheckResult], verdict: str) -> Path:
    key = certs.load_private_key(SEED)
    public = certs.public_key_b64(key)
    payload = certs.build_payload(
        certification_id="cert-1",
        target_id="local-1",
        target_name=EVIL,
        model="m",
        region=None,
        endpoint_fingerprint="sha256:00",
        suite_name="smoke",
        suite_version="1.1.0",
        suite_hash="sha256:11",
        results=results,
        verdict=verdict,
        key_id=certs.key_id_for(public),
        issued_at=datetime.now(UTC),
        valid_for=timedelta(days=1),
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "certificate.json").write_text(json.dumps(certs.sign(payload, key)))
    write_keys(directory / "keys.json", public)
    write_evidence(directory / "evidence.jsonl", results)
    return directory


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    from app.certification.results import Grade, Sample

    chat = result("chat", "failed", 1, 9)
    chat = dataclasses.replace(
        chat,
        samples=tuple(
            Sample(
                index=i,
                prompt_id=f"chat-{i}",
                grade=Grade.FAIL if i else Grade.PASS,
                request_summary={"prompt": "Reply with exactly apple-1"},
                response_excerpt=EVIL if i else "apple-1",
                latency_ms=12.0,
                detail={"reason": "echoed_prompt"} if i else {},
            )
            for i in range(10)
        ),
    )
    return write_run(
        tmp_path / "run", [result("connectivity", "passed", 5, 0), chat], "not_certified"
    )


def test_the_page_escapes_evidence_and_hashes_its_only_style(run_dir: Path) -> None:
    page = render_report(report_from_dir(run_dir, run_dir / "report.html"))
    assert "<script" not in page.html and "<svg onload" not in page.html
    assert page.html.count("&lt;script&gt;window.__pwned=1&lt;/script&gt;") >= 9
    css = re.search(r"<style>(.*?)</style>", page.html, re.S).group(1)  # type: ignore[union-attr]
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page.csp and page.csp == content_security_policy(css)
    assert "style=" not in page.html  # no inline style attribute for the CSP to allow
    assert not re.search(r"(src|href)=\"(https?:)?//", page.html)  # nothing from elsewhere


def test_failed_samples_come_first_and_filters_are_css(run_dir: Path) -> None:
    page = render_report(report_from_dir(run_dir, run_dir / "report.html")).html
    grades = re.findall(r'class="sample g-(\w+)', page)
    assert grades == ["fail"] * 9 + ["pass"]
    assert 'id="fc-1"' in page and "main:has(#fc-1:checked) .sample:not(.c1)" in page
    assert "chat: 1 of 10 passed" in page  # the verdict's reason


def test_verdict_reasons_agree_with_the_service_rule() -> None:
    rows = [result("a", "failed", 0, 5), result("b", "passed", 5, 0, required=False)]
    views = [check_from_record(r.__dict__ | {"outcome": str(r.outcome)}) for r in rows]

    class Row:
        def __init__(self, r: CheckResult) -> None:
            self.check_name, self.outcome, self.required = r.name, r.outcome, r.required
            self.details = {"explanation": r.explanation}

    for verdict in ("not_certified", "inconclusive", "certified_with_warnings", "certified"):
        assert verdict_reasons(verdict, views) == service_reasons(verdict, [Row(r) for r in rows])


def test_comparison_names_what_improved_and_regressed() -> None:
    """Improved and regressed mean beyond chance (the engine's comparison): 10 of 10 then 8
    of 10 is within noise, 10 of 10 then 3 of 10 is a regression."""
    before = [
        check_from_record(r.__dict__ | {"outcome": str(r.outcome)})
        for r in (
            result("chat", "failed", 1, 9),
            result("json", "passed", 10, 0),
            result("tools", "passed", 10, 0),
        )
    ]
    after = [
        check_from_record(r.__dict__ | {"outcome": str(r.outcome)})
        for r in (
            result("chat", "passed", 10, 0),
            result("json", "failed", 3, 7),
            result("tools", "passed", 8, 2),
        )
    ]
    diff = compare("old", "not_certified", None, before, after)
    assert [c.check for c in diff.improved] == ["chat"]
    assert [c.check for c in diff.regressed] == ["json"]
    assert {c.check: c.direction for c in diff.changes}["tools"] == "within_noise"
    assert "pass rate 1.00 → 0.30" in diff.regressed[0].summary


def test_a_regressed_check_is_shown_regressed_as_its_certificate_says(tmp_path: Path) -> None:
    before = write_run(tmp_path / "before", [result("qa", "passed", 58, 2)], "certified")
    baseline = Baseline(
        "cert-1",
        "smoke@1.1.0",
        "2026-01-01T00:00:00Z",
        {"qa": figures_of(certs.check_summary(result("qa", "passed", 58, 2)))},
    )
    judged = assess(result("qa", "passed", 35, 25), "report", baseline)
    after = write_run(tmp_path / "after", [judged], "certified")
    assert certs.check_summary(judged)["regression"]["regressed"] is True  # what is signed
    line = json.loads((after / "evidence.jsonl").read_text().splitlines()[0])
    assert line["type"] == "check" and line["regression"]["regressed"] is True
    out = tmp_path / "page.html"
    run = CliRunner().invoke(
        report_command, [str(after), "--out", str(out), "--previous", str(before)]
    )
    assert run.exit_code == 0, run.output
    page = out.read_text()
    check = re.search(r'<article class="check"[^>]*data-check="qa">.*?</article>', page, re.S)
    assert check is not None and '<span class="pill dir-regressed">regressed</span>' in check[0]
    row = re.search(r'<tr class="dir-(\w+)"><td>qa</td>', page)
    assert row is not None and row[1] == "regressed"
    assert "1 regressed" in page and "regressed against certification cert-1" in page


def test_cli_report_writes_one_self_contained_file(run_dir: Path, tmp_path: Path) -> None:
    previous = write_run(tmp_path / "before", [result("chat", "passed", 10, 0)], "certified")
    out = tmp_path / "out" / "r.html"
    run = CliRunner().invoke(
        report_command, [str(run_dir), "--out", str(out), "--previous", str(previous)]
    )
    assert run.exit_code == 0, run.output
    page = out.read_text()
    assert 'http-equiv="Content-Security-Policy"' in page and "regressed" in page
    assert 'href="../run/certificate.json"' in page  # relative: the file travels with the run
    assert f"modelcert verify {run_dir / 'certificate.json'} --keys {run_dir / 'keys.json'}" in page
    bad = CliRunner().invoke(report_command, [str(tmp_path)])
    assert bad.exit_code == 2 and "certificate.json does not exist" in bad.output


def test_the_verify_outcomes(run_dir: Path, tmp_path: Path) -> None:
    keys = certs.parse_keys_document(json.loads((run_dir / "keys.json").read_text()))
    cert = json.loads((run_dir / "certificate.json").read_text())
    assert verify_document(cert, keys).exit_code == 1  # authentic, not certified
    good = write_run(tmp_path / "good", [result("chat", "passed", 10, 0)], "certified")
    good_cert = json.loads((good / "certificate.json").read_text())
    assert verify_document(good_cert, keys).exit_code == 0
    good_cert["payload"]["verdict"] = "certified_with_warnings"
    assert verify_text(json.dumps(good_cert), keys).outcome == "invalid"
    assert verify_text("not json", keys).exit_code == 4
    assert verify_document(cert, {}).detail.startswith("invalid (unknown_key)")
    shutil.rmtree(good)
