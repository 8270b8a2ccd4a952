"""What `modelcert certify` prints for pipelines: the `--json` document, a table that is never
cut to 80 columns when piped, and the check that `--out` is writable before any request."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from app.certification.certificates import judge_summary
from app.certification.checks import TargetSpec
from app.certification.results import CheckOutcome, CheckResult, Verdict
from app.certification.suites import Suite

# A table written to a pipe or a file is read by a program or a log, not a terminal: rich
# would fold it to 80 columns (cutting explanations mid-word); as wide as its rows instead.
PIPED_WIDTH = 10_000


def stdout_console() -> Console:
    """A console on stdout: the terminal's width, or no width limit when not a terminal."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=PIPED_WIDTH, soft_wrap=True)


def check_out_dir(out_dir: Path) -> str | None:
    """Create `out_dir` and prove a file can be written there; the reason it cannot, or None.
    Run before the certification: an unwritable directory found after it loses the run."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".modelcert-probe-"):
            pass
    except OSError as exc:
        return f"--out {out_dir}: {exc.strerror or exc}"
    for name in ("certificate.json", "keys.json", "evidence.jsonl"):
        path = out_dir / name
        if path.is_dir() or (path.exists() and not os.access(path, os.W_OK)):
            return f"--out {out_dir}: {name} exists and cannot be replaced"
    return None


def check_view(result: CheckResult) -> dict[str, Any]:
    """One check as `GET /v1/certifications/{id}/results` shows it (without the details)."""
    return {
        "name": result.name,
        "check": result.details.get("check"),
        "required": result.required,
        "outcome": str(result.outcome),
        "passed": result.passed,
        "failed": result.failed,
        "errored": result.errored,
        "total": result.total,
        "statistic": result.statistic,
        "lower": result.lower,
        "upper": result.upper,
        "threshold": result.threshold,
        "unit": result.details.get("unit"),
        "cause": result.details.get("cause"),
        "explanation": result.explanation,
        "duration_seconds": round(result.duration_seconds, 3),
        "regression": result.details.get("regression"),
        "judge": judge_summary(result.details),
    }


def results_document(
    verdict: Verdict,
    exit_code: int,
    results: list[CheckResult],
    suite: Suite,
    target: TargetSpec,
    payload: dict[str, Any],
    files: dict[str, Path],
) -> dict[str, Any]:
    """The `--json` document: one object on stdout, everything a pipeline decides on
    (`payload`: the certificate's signed payload)."""
    counts = {outcome.value: 0 for outcome in CheckOutcome}
    for result in results:
        counts[str(result.outcome)] += 1
    return {
        "verdict": str(verdict),
        "certified": verdict in (Verdict.CERTIFIED, Verdict.CERTIFIED_WITH_WARNINGS),
        "exit_code": exit_code,
        "suite": {"name": suite.name, "version": suite.version, "hash": suite.content_hash},
        "target": {
            "name": payload["target"]["name"],
            "model": target.model,
            "provider": target.provider,
            "base_url": target.base_url,
            "region": target.region,
        },
        "counts": {"checks": len(results), **counts},
        "baseline": payload.get("baseline"),  # what regressions were judged against
        "regressed": [
            r.name for r in results if (r.details.get("regression") or {}).get("regressed")
        ],
        "checks": [check_view(r) for r in results],
        "certificate": {
            "path": str(files["certificate"]),
            **{k: payload[k] for k in ("certification_id", "key_id", "issued_at", "valid_until")},
        },
        "keys": str(files["keys"]),
        "evidence": str(files["evidence"]),
    }
