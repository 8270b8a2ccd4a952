"""`modelcert certify --baseline PATH`: a previous run's certificate as the baseline of the
regressions (app/certification/regressions.py), as the worker uses the target's last
certified certification. PATH is a `--out` directory, its certificate.json, or the `--json`
document of that run (which names its certificate).

The baseline must be authentic (signed by a key in keys.json beside it, or in
~/.modelcert/keys.json; an expired one still counts: it says what the model did then),
certified (or certified with warnings), and of the very suite this run uses (name, version
and content hash): a pass rate compares only with the same items graded the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.certification import certificates as certs
from app.certification.regressions import Baseline, figures_of
from app.certification.suites import Suite

CERTIFIED = ("certified", "certified_with_warnings")


class BaselineError(Exception):
    """The baseline cannot be used; the message says why."""


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"{path} does not exist") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path} is not a readable JSON file ({exc})") from None


def certificate_at(path: Path) -> tuple[dict[str, Any], Path]:
    """(the certificate, its path) from a run directory, a certificate or a --json document."""
    if path.is_dir():
        path = path / "certificate.json"
    document = _read(path)
    named = document.get("certificate") if isinstance(document, dict) else None
    if isinstance(named, dict) and isinstance(named.get("path"), str):  # a --json document
        path = (
            (path.parent / named["path"])
            if not Path(named["path"]).is_absolute()
            else Path(named["path"])
        )
        document = _read(path)
    if not isinstance(document, dict) or not isinstance(document.get("payload"), dict):
        raise BaselineError(f"{path} is not a certificate")
    return document, path


def _keys(cert_path: Path, home: Path) -> dict[str, str]:
    for candidate in (cert_path.parent / "keys.json", home / "keys.json"):
        if candidate.is_file():
            try:
                return certs.parse_keys_document(_read(candidate))
            except ValueError as exc:
                raise BaselineError(f"keys file {candidate}: {exc}") from None
    raise BaselineError(f"no keys.json beside {cert_path} or in {home} to check it with")


def load_baseline(path: Path, suite: Suite, home: Path) -> Baseline:
    """The Baseline of a previous run (BaselineError when it cannot be one)."""
    cert, cert_path = certificate_at(path)
    payload = cert["payload"]
    try:  # authentic; in force or not (a baseline says what the model did when it was issued)
        issued = certs.parse_time(str(payload.get("issued_at")))
        certs.verify(cert, _keys(cert_path, home), now=issued)
    except ValueError:
        raise BaselineError(f"{cert_path}: issued_at is not a UTC time") from None
    except certs.CertificateInvalid as exc:
        raise BaselineError(f"{cert_path} is not authentic ({exc.reason}): {exc.message}") from None
    if payload.get("verdict") not in CERTIFIED:
        raise BaselineError(
            f"{cert_path} is {payload.get('verdict')}: a baseline is a certified run"
        )
    named = payload.get("suite") or {}
    if (named.get("name"), named.get("version"), named.get("content_hash")) != (
        suite.name,
        suite.version,
        suite.content_hash,
    ):
        raise BaselineError(
            f"{cert_path} is for {named.get('ref')} ({named.get('content_hash')}), this run "
            f"uses {suite.ref} ({suite.content_hash}): only the same suite version compares"
        )
    checks = payload.get("checks")
    if not isinstance(checks, list):
        raise BaselineError(f"{cert_path} (format 1) holds no per-check results to compare with")
    return Baseline(
        certification_id=str(payload.get("certification_id")),
        suite_ref=str(named.get("ref")),
        issued_at=str(payload.get("issued_at")),
        checks={
            str(c["name"]): figures_of(c) for c in checks if isinstance(c, dict) and "name" in c
        },
    )
