"""The support-bot example (a `judge` grader) through `modelcert certify --suite-file` with
the reference endpoint as both the candidate and the judge; and judge calls through the
real provider adapter against the reference endpoint's error modes."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.certification.checks import TargetSpec
from app.certification.checks.dataset import DatasetParams
from app.certification.checks.graders import JudgeGrader, Reply
from app.certification.checks.judged import judged
from app.certification.checks.judging import Judge
from app.certification.providers.base import ChatRequest, ChatResult
from app.certification.providers.http import HttpClient, HttpPolicy, make_session
from app.certification.runner import build_provider
from app.certification.suites.documents import load_path
from app.cli.certify import certify, verify
from app.reports.files import report_from_dir
from app.reports.render import render_report
from tests.support import ROOT
from tests.support.reference import running_reference

EXAMPLES = ROOT / "docs" / "suites"
SUITE = EXAMPLES / "support-bot.yaml"


@pytest.fixture(scope="module")
def reference() -> Iterator[str]:
    with running_reference() as (root, _):
        yield root


def invoke(  # type: ignore[no-untyped-def]
    root: str, tmp: Path, mode: str, judge: str, *extra: str, judge_url: str | None = None
):
    """`modelcert certify` of the support-bot suite against the reference endpoint's `mode`,
    writing to tmp/<mode>-<judge>. `judge`: the reference endpoint's mode the judge runs in,
    at `judge_url` if given (else its OpenAI-compatible URL)."""
    return CliRunner().invoke(
        certify,
        [
            "--base-url",
            f"{root}/m/{mode}/v1",
            "--model",
            "reference-model",
            "--suite-file",
            str(SUITE),
            "--judge",
            f"grader={judge_url or f'{root}/m/{judge}/v1'}",
            "--judge-model",
            "grader=reference-model",
            "--out",
            str(tmp / f"{mode}-{judge}"),
            "--signing-key-file",
            str(tmp / "signing-key"),
            *extra,
        ],
    )


def run(  # type: ignore[type-arg]
    root: str, tmp: Path, mode: str, judge: str, *extra: str, judge_url: str | None = None
) -> tuple[int, str, dict]:
    """(exit code, what it printed, the certificate) of `invoke`."""
    result = invoke(root, tmp, mode, judge, *extra, judge_url=judge_url)
    out = tmp / f"{mode}-{judge}"
    cert = json.loads((out / "certificate.json").read_text()) if result.exit_code != 2 else {}
    return result.exit_code, result.output, cert


@pytest.mark.parametrize(
    ("mode", "judge", "exit_code", "outcome"),
    [
        ("good", "judge", 0, "passed"),
        ("parrot", "judge", 1, "failed"),
        ("wrong", "judge", 1, "failed"),
        ("good", "judge-lenient", 3, "errored"),
        ("good", "broken", 3, "errored"),
        ("good", "good", 3, "errored"),  # a model that answers, but gives no verdict
    ],
)
def test_the_support_bot_suite_with_a_judge(  # type: ignore[no-untyped-def]
    reference: str, tmp_path: Path, mode: str, judge: str, exit_code: int, outcome: str
) -> None:
    code, output, cert = run(reference, tmp_path, mode, judge)
    assert code == exit_code, output
    (check,) = cert["payload"]["checks"]
    assert check["outcome"] == outcome
    calibration = check["judge"]["calibration"]
    assert calibration["passed"] is (outcome != "errored")
    if outcome == "errored":
        assert check["cause"] == "judge_uncalibrated"
    if judge == "judge-lenient":
        assert calibration["misgraded"] == ["bad-wrong-deadline", "bad-evasive"]
    if judge in ("broken", "good"):
        assert len(calibration["errored"]) == 4
    if mode == "good" and judge == "judge":
        path = tmp_path / "good-judge" / "certificate.json"
        assert CliRunner().invoke(verify, [str(path)]).exit_code == 0
        lines = (tmp_path / "good-judge" / "evidence.jsonl").read_text().splitlines()
        check_line = json.loads(lines[0])
        assert check_line["details"]["judge"]["calibration"]["agreed"] == 4
        sample = json.loads(lines[1])
        assert sample["detail"]["judge"]["grade"] == "pass"


@pytest.mark.parametrize(
    ("judge", "agreed", "counts"), [("judge", "4 of 4", True), ("judge-lenient", "2 of 4", False)]
)
def test_the_report_shows_how_the_judge_graded_its_calibration(  # type: ignore[no-untyped-def]
    reference: str, tmp_path: Path, judge: str, agreed: str, counts: bool
) -> None:
    document = json.loads(invoke(reference, tmp_path, "good", judge, "--json").stdout)
    out = tmp_path / f"good-{judge}"
    (check,) = document["checks"]
    assert check["judge"]["name"] == "grader" and check["judge"]["model"] == "reference-model"
    calibration = check["judge"]["calibration"]
    assert calibration["passed"] is counts and f"{calibration['agreed']} of 4" == agreed
    assert "results" not in calibration  # each answer's evidence is in evidence.jsonl
    page = render_report(report_from_dir(out, out / "report.html")).html
    summary = re.search(
        r'<details class="calibration"( open)?>\s*<summary>(.*?)</summary>', page, re.S
    )
    assert summary is not None
    assert f"Judge grader (reference-model): agreed on {agreed} calibration answers" in summary[2]
    assert ("grades do not count" in summary[2]) is not counts
    assert (summary[1] == " open") is not counts  # a judge that failed it is shown open
    rows = re.findall(r'<tr( class="dir-regressed")?><td class="mono">([\w-]+)</td>', page)
    assert len(rows) == 4
    wrong = sorted(item for marked, item in rows if marked)
    assert wrong == ([] if counts else ["bad-evasive", "bad-wrong-deadline"])


@pytest.mark.parametrize(
    ("mode", "exit_code", "outcome"), [("good", 0, "passed"), ("wrong", 1, "failed")]
)
def test_a_judge_on_the_anthropic_messages_api(  # type: ignore[no-untyped-def]
    reference: str, tmp_path: Path, mode: str, exit_code: int, outcome: str
) -> None:
    """The same judge behind Anthropic's API (the reference endpoint serves /v1/messages with
    the same brain): calibrated, then grading the candidate, through the Anthropic adapter."""
    code, output, cert = run(
        reference,
        tmp_path,
        mode,
        "judge",
        "--judge-provider",
        "grader=anthropic",
        judge_url=f"{reference}/m/judge",
    )
    assert code == exit_code, output
    (check,) = cert["payload"]["checks"]
    assert check["outcome"] == outcome
    assert check["judge"]["provider"] == "anthropic"
    assert check["judge"]["calibration"]["passed"] is True


def test_judge_keys_are_redacted_like_the_targets(
    reference: str, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("JUDGE_KEY", "sk-judge-0123456789abcdef")
    code, output, _ = run(
        reference, tmp_path, "good", "judge", "--judge-api-key-env", "grader=JUDGE_KEY"
    )
    assert code == 0, output
    evidence = (tmp_path / "good-judge" / "evidence.jsonl").read_text()
    assert "sk-judge-0123456789abcdef" not in evidence + output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "is graded by judge 'grader': bind it with --judge grader=BASE_URL"),
        (["--judge", "grader=http://127.0.0.1:1/v1"], "judge 'grader' needs a model"),
        (
            ["--judge", "grader=http://127.0.0.1:1/v1", "--judge", "other=http://x/v1"],
            "the suite names no judge 'other'",
        ),
        (
            ["--judge", "grader=ftp://x", "--judge-model", "grader=m"],
            "is not an http(s) URL",
        ),
    ],
)
def test_a_bad_judge_binding_is_a_usage_error(
    reference: str, tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        certify,
        [
            "--base-url",
            f"{reference}/v1",
            "--model",
            "reference-model",
            "--suite-file",
            str(SUITE),
            "--out",
            str(tmp_path),
            "--signing-key-file",
            str(tmp_path / "key"),
            *args,
        ],
    )
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "certificate.json").exists()


def judge_once(root: str, mode: str, answer: str) -> tuple[bool, str | None, dict]:  # type: ignore[type-arg]
    """One reply judged by the reference endpoint in `mode`, through the real adapter."""
    suite = load_path(SUITE)
    params = DatasetParams.model_validate(suite.definition.checks[0].params)
    grader = params.grader
    assert isinstance(grader, JudgeGrader)
    row = suite.data["tickets"][0]
    messages = params.prompt.messages(row)

    async def go() -> tuple[bool, str | None, dict]:  # type: ignore[type-arg]
        policy = HttpPolicy(sample_retries=1, backoff_base=0.01, backoff_max=0.05)
        async with make_session(policy) as session:
            spec = TargetSpec("openai_compatible", "reference-model", f"{root}/m/{mode}/v1")
            provider = build_provider(spec, HttpClient(session, {}, policy))
            judge = Judge("grader", provider, asyncio.Semaphore(2))
            reply = Reply(ChatResult(answer, 200, 1.0), "\n".join(m["content"] for m in messages))
            got = await judged(judge, grader, row, ChatRequest(messages), reply)
            return got.passed, got.error and got.cause, got.detail

    return asyncio.run(go())


def test_a_judge_that_errors_makes_the_sample_an_error(reference: str) -> None:
    right = (
        "You can return an item within 30 days of delivery, unused and in its original packaging."
    )
    assert judge_once(reference, "judge", right)[:2] == (True, None)
    assert judge_once(reference, "judge", "Within 90 days of delivery.")[:2] == (False, None)
    passed, cause, detail = judge_once(reference, "broken", right)
    assert (passed, cause) == (False, "judge_error")
    assert "<answer>" in detail["judge"]["prompt"]
    passed, cause, detail = judge_once(reference, "flaky-100", right)
    assert cause == "judge_error"
    passed, cause, detail = judge_once(reference, "good", right)
    assert cause == "judge_unparseable" and detail["judge"]["verdict"]


def test_the_judge_keeps_to_its_own_concurrency_limit(tmp_path: Path) -> None:
    with running_reference() as (root, server):
        code, output, _ = run(
            root, tmp_path, "good", "judge", "--judge-max-concurrency", "grader=1"
        )
        assert code == 0, output
        judge, candidate = server.stats.by_scope["judge"], server.stats.by_scope["good"]
    assert judge["total"] == 4 + 12  # the calibration set, then one judgement per reply
    assert judge["peak_in_flight"] == 1
    assert candidate["total"] == 12
