"""A report from a `modelcert certify --out` directory: certificate.json, keys.json and
evidence.jsonl, as the CLI writes them (no server, no database)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

from app.certification import certificates as certs
from app.reports.model import (
    CheckReport,
    Comparison,
    Report,
    SampleReport,
    check_from_record,
    compare,
    ordered_samples,
    sample_from_record,
    verdict_reasons,
)
from app.reports.render import facts_from_payload

CERTIFICATE, KEYS, EVIDENCE = "certificate.json", "keys.json", "evidence.jsonl"


class ReportInputError(Exception):
    """The directory is not a finished run's: the message says what is missing."""


def read_run(cert_dir: Path) -> tuple[dict[str, Any], list[CheckReport], list[SampleReport]]:
    """(certificate, checks, samples) of a run directory."""
    try:
        cert = json.loads((cert_dir / CERTIFICATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportInputError(f"{cert_dir / CERTIFICATE} does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{cert_dir / CERTIFICATE} is not JSON: {exc}") from None
    if not isinstance(cert, dict) or not isinstance(cert.get("payload"), dict):
        raise ReportInputError(f"{cert_dir / CERTIFICATE} is not a certificate")
    checks: list[CheckReport] = []
    samples: list[SampleReport] = []
    path = cert_dir / EVIDENCE
    if path.exists():
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise ReportInputError(f"{path}:{number} is not JSON") from None
                if record.get("type") == "check":
                    checks.append(check_from_record(record))
                elif record.get("type") == "sample":
                    samples.append(sample_from_record(record))
    else:
        # Without evidence the certificate's own per-check summaries still say a lot.
        checks = [check_from_record(c) for c in cert["payload"].get("checks") or []]
    return cert, checks, samples


def certificate_status(cert: dict[str, Any], cert_dir: Path) -> str | None:
    """None when the certificate verifies against the run's keys.json, else why not."""
    try:
        keys = certs.parse_keys_document(json.loads((cert_dir / KEYS).read_text()))
    except (OSError, ValueError):
        return "not checked (no keys.json)"
    try:
        certs.verify(cert, keys)
    except certs.CertificateInvalid as exc:
        return exc.reason.replace("_", " ")
    return None


def report_from_dir(cert_dir: Path, html_path: Path, previous: Path | None = None) -> Report:
    cert, checks, samples = read_run(cert_dir)
    payload = cert["payload"]
    status = certificate_status(cert, cert_dir)
    comparison: Comparison | None = None
    if previous is not None:
        before, old_checks, _ = read_run(previous)
        comparison = compare(
            str(before["payload"].get("certification_id")),
            before["payload"].get("verdict"),
            before["payload"].get("issued_at"),
            old_checks,
            checks,
        )
    here = html_path.resolve().parent

    def link(name: str) -> str:
        return Path(os.path.relpath((cert_dir / name).resolve(), here)).as_posix()

    cert_file = shlex.quote(str(cert_dir / CERTIFICATE))
    keys_file = shlex.quote(str(cert_dir / KEYS))
    target = payload.get("target") or {}
    verdict = payload.get("verdict")
    return Report(
        certification_id=str(payload.get("certification_id")),
        status="succeeded",
        verdict=verdict,
        verdict_reasons=verdict_reasons(verdict, checks),
        target_name=str(target.get("name")),
        target_id=str(target.get("id")),
        model=str(payload.get("model")),
        region=payload.get("region"),
        suite_ref=str((payload.get("suite") or {}).get("ref")),
        covers=list(payload.get("covers") or []),
        checks=checks,
        samples=ordered_samples(samples, [c.name for c in checks]),
        samples_total=len(samples),
        facts=facts_from_payload(payload, status),
        certificate=cert,
        certificate_status=status,
        comparison=comparison,
        links={
            "certificate": link(CERTIFICATE),
            "keys": link(KEYS),
            **({"evidence": link(EVIDENCE)} if (cert_dir / EVIDENCE).exists() else {}),
        },
        verify_commands=[f"modelcert verify {cert_file} --keys {keys_file}"],
        generated_by="modelcert report",
    )
