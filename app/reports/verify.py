"""The verify page's answer: the three outcomes of `modelcert verify` (exit 0, 1, 4), with the
payload laid out for a person."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.certification import certificates as certs
from app.reports.model import Fact
from app.reports.render import facts_from_payload

MAX_CERTIFICATE_BYTES = 256 * 1024


@dataclass(frozen=True)
class VerifyResult:
    outcome: str  # certified | not_certified | invalid (the page's verdict class)
    exit_code: int  # what `modelcert verify` (without --allow-warnings) exits with
    title: str
    detail: str
    facts: list[Fact] = field(default_factory=list)
    checks: Sequence[Mapping[str, Any]] = field(default_factory=list)


def verify_text(text: str | bytes, keys: dict[str, str]) -> VerifyResult:
    if isinstance(text, bytes):
        if len(text) > MAX_CERTIFICATE_BYTES:
            return _invalid("malformed", "the certificate is larger than any certificate is")
        text = text.decode("utf-8", errors="replace")
    try:
        cert = json.loads(text)
    except (ValueError, RecursionError):
        return _invalid("malformed", "not JSON: paste the certificate's JSON document")
    return verify_document(cert, keys)


def verify_document(cert: Any, keys: dict[str, str]) -> VerifyResult:
    try:
        certs.verify(cert, keys)
    except certs.CertificateInvalid as exc:
        result = _invalid(exc.reason, exc.message)
        payload = cert.get("payload") if isinstance(cert, dict) else None
        if isinstance(payload, dict) and exc.reason in ("expired", "unknown_key"):
            # Authentic-looking but not trusted now: its claims are shown, marked as such.
            return VerifyResult(**{**result.__dict__, "facts": _facts(payload)})
        return result
    payload = cert["payload"]
    described = (
        f"{payload['model']} ({payload['suite']['ref']}), key {payload['key_id']}, "
        f"valid until {payload['valid_until']}"
    )
    checks = [c for c in payload.get("checks") or [] if isinstance(c, dict)]
    if certs.accepts(payload):
        return VerifyResult(
            "certified",
            0,
            "Authentic and certified",
            f"valid: certified for {described}",
            _facts(payload),
            checks,
        )
    return VerifyResult(
        "not_certified",
        1,
        "Authentic, but not certified",
        f"not certified: authentic, but the verdict is {payload['verdict']} for {described}",
        _facts(payload),
        checks,
    )


def _invalid(reason: str, message: str) -> VerifyResult:
    return VerifyResult("invalid", 4, "Invalid certificate", f"invalid ({reason}): {message}")


def _facts(payload: Mapping[str, Any]) -> list[Fact]:
    target = payload.get("target") or {}
    suite = payload.get("suite") or {}
    head = [
        Fact("Verdict", str(payload.get("verdict"))),
        Fact("Target", f"{target.get('name')} ({target.get('id')})"),
        Fact("Model", str(payload.get("model")), True),
        Fact("Region", str(payload.get("region") or "default endpoint")),
        Fact("Suite", str(suite.get("ref")), True),
        Fact("Covers", ", ".join(payload.get("covers") or []) or "–"),
        Fact("Certification", str(payload.get("certification_id")), True),
    ]
    return head + facts_from_payload(payload)
