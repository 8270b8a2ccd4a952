"""What a report shows, built alike from the API's views (app/services/reports.py) and from a
`modelcert certify --out` directory (app/reports/files.py): both speak evidence's one shape
(app/certification/evidence.py), so one set of constructors reads both."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.certification import regressions

# Failed, then errored, then passed: what decided a verdict comes first.
GRADE_ORDER = {"fail": 0, "error": 1, "pass": 2}
PROMPT_CHARS = 600  # shown of a prompt (a needle prompt is tens of thousands of characters)
REPLY_CHARS = 2000  # the engine keeps at most this much of a reply


def _float(value: Any) -> float | None:
    """A ratio from a view (float) or from a signed summary ("0.9450")."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class CalibrationRow:
    """One answer of a judge's calibration set: what it should be graded, what the judge said."""

    item: str
    expected: str  # pass or fail
    judged: str  # pass, fail, or the cause of no verdict
    agreed: bool
    reason: str


@dataclass(frozen=True)
class JudgeCalibration:
    """A judge's grades of its rubric's calibration set: its grades count only if it agreed
    on every answer (else the check is errored, judge_uncalibrated)."""

    name: str
    model: str
    passed: bool
    agreed: int
    items: int
    rows: Sequence[CalibrationRow]


@dataclass(frozen=True)
class CheckReport:
    name: str
    check: str  # the check's kind (latency, load, chat...): details.check, else the name
    outcome: str
    required: bool
    passed: int
    failed: int
    errored: int
    total: int
    statistic: float | None
    lower: float | None
    upper: float | None
    threshold: float | None
    explanation: str
    duration_seconds: float | None
    details: Mapping[str, Any]

    @property
    def skipped(self) -> int:
        return max(self.total - self.passed - self.failed - self.errored, 0)

    @property
    def unit(self) -> str | None:
        unit = self.details.get("unit")
        return unit if isinstance(unit, str) else None

    @property
    def regressed(self) -> bool:
        """Significantly worse than its baseline, as its run judged it (and signed)."""
        record = self.details.get("regression")
        return isinstance(record, Mapping) and record.get("regressed") is True

    @property
    def judge_calibration(self) -> JudgeCalibration | None:
        """How the check's judge graded its rubric's calibration set, when a judge graded it."""
        judge = self.details.get("judge")
        calibration = judge.get("calibration") if isinstance(judge, Mapping) else None
        if not isinstance(judge, Mapping) or not isinstance(calibration, Mapping):
            return None
        rows = [
            CalibrationRow(
                item=str(r.get("id", "")),
                expected=str(r.get("expected", "")),
                judged=str(r.get("grade") or r.get("error_cause") or "no verdict"),
                agreed=r.get("agreed") is True,
                reason=str(r.get("reason") or r.get("error") or ""),
            )
            for r in calibration.get("results") or []
            if isinstance(r, Mapping)
        ]
        return JudgeCalibration(
            name=str(judge.get("name", "")),
            model=str(judge.get("model") or ""),
            passed=calibration.get("passed") is True,
            agreed=int(calibration.get("agreed") or 0),
            items=int(calibration.get("items") or len(rows)),
            rows=rows,
        )

    @property
    def is_rate(self) -> bool:
        """Graded per sample against a pass-rate threshold (latency and load are not)."""
        return self.unit is None and self.check not in ("latency", "load")


def check_from_record(record: Mapping[str, Any]) -> CheckReport:
    """From an API CheckResultView (dumped) or a CLI evidence.jsonl check line."""
    details = dict(record.get("details") or {})
    for key in ("quantiles", "regression"):  # a certificate's summary holds them beside
        if key not in details and record.get(key) is not None:
            details[key] = record[key]
    counts = {k: int(record.get(k) or 0) for k in ("passed", "failed", "errored", "total")}
    return CheckReport(
        name=str(record.get("name")),
        check=str(record.get("check") or details.get("check") or record.get("name")),
        outcome=str(record.get("outcome")),
        required=bool(record.get("required")),
        statistic=_float(record.get("statistic")),
        lower=_float(record.get("lower")),
        upper=_float(record.get("upper")),
        threshold=_float(record.get("threshold")),
        explanation=str(record.get("explanation") or details.get("explanation") or ""),
        duration_seconds=_float(record.get("duration_seconds")),
        details={k: v for k, v in details.items() if k != "explanation"},
        **counts,
    )


@dataclass(frozen=True)
class SampleReport:
    check: str
    index: int
    prompt_id: str
    grade: str
    prompt: str
    prompt_clipped: bool
    reply: str | None
    cause: str | None
    error: str | None
    retries: int
    latency_ms: float | None
    ttft_ms: float | None
    status_code: int | None
    finish_reason: str | None
    detail: Mapping[str, Any]


def _prompt_of(summary: Mapping[str, Any]) -> str:
    """What was sent: the prompt, else the embedding inputs, else the request line."""
    if isinstance(summary.get("prompt"), str):
        return str(summary["prompt"])
    if isinstance(summary.get("inputs"), list):
        return " | ".join(str(i) for i in summary["inputs"])
    if summary.get("method") and summary.get("path"):
        return f"{summary['method']} {summary['path']}"
    return ""


def sample_from_record(record: Mapping[str, Any]) -> SampleReport:
    """From an evidence line (the API's stream and the CLI's evidence.jsonl alike)."""
    summary = record.get("request_summary") or {}
    detail = record.get("detail") or {}
    prompt = _prompt_of(summary)
    reason = detail.get("reason") if isinstance(detail.get("reason"), str) else None
    reply = record.get("response_excerpt")
    return SampleReport(
        check=str(record.get("check")),
        index=int(record.get("index") or 0),
        prompt_id=str(record.get("prompt_id") or ""),
        grade=str(record.get("grade")),
        prompt=prompt[:PROMPT_CHARS],
        prompt_clipped=len(prompt) > PROMPT_CHARS,
        reply=reply[:REPLY_CHARS] if isinstance(reply, str) else None,
        cause=record.get("error_cause") or reason,
        error=record.get("error"),
        retries=int(record.get("retries") or 0),
        latency_ms=_float(record.get("latency_ms")),
        ttft_ms=_float(record.get("ttft_ms")),
        status_code=record.get("status_code"),
        finish_reason=record.get("finish_reason"),
        detail=detail,
    )


def ordered_samples(samples: Iterable[SampleReport], checks: Sequence[str]) -> list[SampleReport]:
    """Failed and errored samples first, then by the checks' order and index."""
    position = {name: i for i, name in enumerate(checks)}
    return sorted(
        samples,
        key=lambda s: (GRADE_ORDER.get(s.grade, 3), position.get(s.check, len(position)), s.index),
    )


def verdict_reasons(verdict: str | None, checks: Sequence[CheckReport]) -> list[str]:
    """The checks that decided a verdict short of certified, each with its explanation: the
    rule of app/services/certifications.verdict_reasons (which the API's view carries), for a
    certificate read from files (tests/unit/reports pins that both agree)."""
    rules: dict[str, Callable[[CheckReport], bool]] = {
        "not_certified": lambda c: c.required and c.outcome == "failed",
        "inconclusive": lambda c: c.required and c.outcome != "passed",
        "certified_with_warnings": lambda c: (
            not c.required and c.outcome not in ("passed", "skipped")
        ),
    }
    deciding = rules.get(verdict or "")
    if deciding is None:
        return []
    return [f"{c.name}: {c.explanation or c.outcome}" for c in checks if deciding(c)]


@dataclass(frozen=True)
class Change:
    check: str
    before: str | None  # outcome in the previous certification (None: not run then)
    after: str | None
    before_rate: float | None
    after_rate: float | None
    # improved | regressed (significantly better or worse, regressions.compare: what the
    # certificate says) | within_noise (figures moved, not beyond chance) | changed (an
    # outcome moved that no figure compares) | unchanged | added | removed
    direction: str
    summary: str = ""  # the comparison's line (pass rates or quantiles with their intervals)


@dataclass(frozen=True)
class Comparison:
    previous_id: str
    previous_verdict: str | None
    previous_when: str | None
    changes: list[Change]

    @property
    def improved(self) -> list[Change]:
        return [c for c in self.changes if c.direction == "improved"]

    @property
    def regressed(self) -> list[Change]:
        return [c for c in self.changes if c.direction == "regressed"]


def compare(
    previous_id: str,
    previous_verdict: str | None,
    previous_when: str | None,
    before: Sequence[CheckReport],
    after: Sequence[CheckReport],
) -> Comparison:
    """Per check, the engine's comparison (app/certification/regressions.py), so the page
    and the certificate agree: a check is regressed or improved only beyond chance at 95 %.
    A check whose run judged it against this very certification keeps that judgement."""
    old = {c.name: c for c in before}
    new = {c.name: c for c in after}
    changes = []
    for name in list(new) + [n for n in old if n not in new]:
        a, b = old.get(name), new.get(name)
        summary = ""
        if a is None or b is None:
            direction = "added" if a is None else "removed"
        else:
            direction, summary = _direction(previous_id, a, b)
        changes.append(
            Change(
                check=name,
                before=a.outcome if a else None,
                after=b.outcome if b else None,
                before_rate=a.statistic if a else None,
                after_rate=b.statistic if b else None,
                direction=direction,
                summary=summary,
            )
        )
    return Comparison(previous_id, previous_verdict, previous_when, changes)


def _direction(previous_id: str, a: CheckReport, b: CheckReport) -> tuple[str, str]:
    found = regressions.compare(
        regressions.figures_of(_figures(b)), regressions.figures_of(_figures(a))
    )
    record = b.details.get("regression")
    if isinstance(record, Mapping) and record.get("baseline") == previous_id:
        if record.get("regressed") is True:  # as signed
            return "regressed", found.summary if found else ""
    if found is not None:
        if found.regressed:
            return "regressed", found.summary
        if found.improved:
            return "improved", found.summary
        moved = (
            a.statistic is not None
            and b.statistic is not None
            and abs(a.statistic - b.statistic) > 1e-9
        )
        return ("within_noise" if moved else "unchanged"), found.summary
    if a.outcome != b.outcome:
        return "changed", ""
    return "unchanged", ""


def _figures(check: CheckReport) -> dict[str, Any]:
    return {"passed": check.passed, "failed": check.failed, "details": check.details}


@dataclass(frozen=True)
class Fact:
    label: str
    value: str
    mono: bool = False


@dataclass
class Report:
    """Everything one report page shows."""

    certification_id: str
    status: str
    verdict: str | None
    verdict_reasons: list[str]
    target_name: str
    target_id: str
    model: str
    region: str | None
    suite_ref: str
    covers: list[str]
    checks: list[CheckReport]
    samples: list[SampleReport]
    facts: list[Fact] = field(default_factory=list)  # run conditions, timings, key...
    certificate: Mapping[str, Any] | None = None  # the signed document
    certificate_status: str | None = None  # valid, expired, superseded, revoked...
    comparison: Comparison | None = None
    error: str | None = None  # why a run that did not succeed stopped
    samples_total: int = 0  # stored samples (some may be left out of the page)
    links: dict[str, str] = field(default_factory=dict)  # certificate, evidence, keys
    verify_commands: list[str] = field(default_factory=list)
    generated_by: str = "modelcert"
