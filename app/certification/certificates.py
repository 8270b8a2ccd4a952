"""Signed certificates: canonical JSON, Ed25519, offline verification against published keys.

Canonical JSON (what is signed and hashed): `json.dumps(value, sort_keys=True,
separators=(",", ":"), ensure_ascii=False, allow_nan=False)` encoded as UTF-8 — keys sorted
by code point, no whitespace, non-ASCII characters written as themselves. Payloads hold only
strings, integers, booleans, null, lists and objects: no floats, so every language
reproduces the same bytes (results_digest writes its ratios as fixed 4-decimal strings).

A certificate is `{"payload": {...}, "signature": "<base64 Ed25519 signature of
canonical(payload)>"}`; the payload names its `key_id` (first 16 hex digits of the SHA-256
of the raw 32-byte public key), so verification needs only the published keys.

Format 2 (`modelcert-certificate/2`) adds what the verdict was reached under: the run
conditions (concurrency, timeouts, retries), the capabilities the target declared, what the
suite covers, each check's outcome with its counts and bounds, the required checks that
were skipped, the engine version and the client kind (worker or cli).

Format 3 (`modelcert-certificate/3`) adds regressions against the target's last certified
result of the same suite: `baseline` (that certificate's certification id, suite and issue
time, or null when there was none: a format-3 certificate always says which), and in each
check's summary its `regression` (compared or not, regressed or not, the method and the
figures) and, for a check decided by quantiles, its `quantiles` with their bounds, so that
a certificate is enough of a baseline for the next run (`modelcert certify --baseline`).
Format 1 and 2 certificates keep verifying.

What a valid signature means is only that the payload is authentic: `accepts` says whether
its verdict is one a pipeline may ship on (`certified`, and with `allow_warnings`
`certified_with_warnings`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.certification.results import CheckResult

FORMAT_V1 = "modelcert-certificate/1"
FORMAT_V2 = "modelcert-certificate/2"
FORMAT = "modelcert-certificate/3"
ALGORITHM = "Ed25519"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
PAYLOAD_FIELDS = (
    "format",
    "certification_id",
    "target",
    "model",
    "region",
    "endpoint_fingerprint",
    "suite",
    "results_digest",
    "verdict",
    "issued_at",
    "valid_until",
    "key_id",
)
V2_FIELDS = (
    "run_conditions",
    "capabilities",
    "covers",
    "checks",
    "skipped_required",
    "engine_version",
    "client",
)
V3_FIELDS = (*V2_FIELDS, "baseline")
FIELDS = {FORMAT_V1: PAYLOAD_FIELDS, FORMAT_V2: PAYLOAD_FIELDS + V2_FIELDS}
FIELDS[FORMAT] = PAYLOAD_FIELDS + V3_FIELDS
SHIPPABLE = ("certified",)
SHIPPABLE_WITH_WARNINGS = ("certified", "certified_with_warnings")


class CertificateInvalid(Exception):
    """A certificate that must not be trusted; `reason` is a stable code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def canonical_json(value: Any) -> bytes:
    """The bytes that are signed and hashed (see the module docstring)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _ratio(value: float | None) -> str | None:
    return None if value is None else f"{value:.4f}"


def check_summary(result: CheckResult) -> dict[str, Any]:
    """What a certificate vouches for about one check (no samples, no timings)."""
    summary = {
        "name": result.name,
        "outcome": str(result.outcome),
        "required": result.required,
        "passed": result.passed,
        "failed": result.failed,
        "errored": result.errored,
        "total": result.total,
        "statistic": _ratio(result.statistic),
        "threshold": _ratio(result.threshold),
        "lower": _ratio(result.lower),
        "upper": _ratio(result.upper),
    }
    cause = result.details.get("cause")
    if isinstance(cause, str):
        summary["cause"] = cause
    sampling = result.details.get("sampling")
    if isinstance(sampling, dict):  # sequential: the method and the samples it used
        summary["sampling"] = plain(sampling)
    judge = judge_summary(result.details)
    if judge is not None:
        summary["judge"] = plain(judge)
    quantiles = result.details.get("quantiles")
    if isinstance(quantiles, list):  # what a later run's regressions are judged against
        summary["quantiles"] = [
            plain({k: q.get(k) for k in QUANTILE_FIELDS}) for q in quantiles if isinstance(q, dict)
        ]
    regression = result.details.get("regression")
    if isinstance(regression, dict):
        summary["regression"] = plain(regression)
    return summary


QUANTILE_FIELDS = ("metric", "n", "estimate", "lower", "upper", "slo_is")


def judge_summary(details: dict[str, Any]) -> dict[str, Any] | None:
    """Which judge model graded a check and how it graded its calibration set (agreed,
    misgraded, could not grade), without each answer's evidence; None when no judge did."""
    judge = details.get("judge")
    if not isinstance(judge, dict):
        return None
    calibration = judge.get("calibration")
    return {k: v for k, v in judge.items() if k in ("name", "provider", "model")} | (
        {"calibration": {k: v for k, v in calibration.items() if k != "results"}}
        if isinstance(calibration, dict)
        else {}
    )


def plain(value: Any) -> Any:
    """A value made fit for a signed payload: floats become fixed 4-decimal strings."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


@dataclass(frozen=True)
class RunRecord:
    """What a verdict was reached under, signed into a format-2 certificate."""

    conditions: dict[str, Any]  # engine.RunConditions.as_dict()
    capabilities: dict[str, Any]  # as the target declared them
    covers: tuple[str, ...]  # the suite's required checks
    engine_version: str
    client: str  # "worker" or "cli"
    baseline: dict[str, str] | None = None  # regressions.Baseline.reference(), None: none


def run_section(run: RunRecord, results: Iterable[CheckResult]) -> dict[str, Any]:
    summaries = sorted((check_summary(r) for r in results), key=lambda s: s["name"])
    return {
        "run_conditions": plain(run.conditions),
        "capabilities": plain(run.capabilities),
        "covers": list(run.covers),
        "checks": summaries,
        "skipped_required": [
            s["name"] for s in summaries if s["required"] and s["outcome"] == "skipped"
        ],
        "engine_version": run.engine_version,
        "client": run.client,
        "baseline": run.baseline,
    }


def results_digest(results: Iterable[CheckResult]) -> str:
    """SHA-256 of the canonical JSON list of per-check summaries, sorted by check name."""
    summaries = sorted((check_summary(r) for r in results), key=lambda s: s["name"])
    return sha256_hex(canonical_json(summaries))


DEFAULT_PORTS = {"http": 80, "https": 443}
LISTING_SEPARATOR = ", "  # how the connectivity check keeps the listing in its evidence


def normalise_base_url(url: str) -> str:
    """Lower-case scheme and host, no default port, no trailing slash."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def endpoint_fingerprint(
    provider: str, base_url: str, model: str, listing: list[str] | None
) -> str:
    """Which endpoint was certified: provider, normalised base URL, declared model and the
    sorted model listing the connectivity check saw (None when it did not run), hashed.
    The server and `modelcert certify` compute it alike."""
    return sha256_hex(
        canonical_json(
            {
                "provider": provider,
                "base_url": normalise_base_url(base_url),
                "model": model,
                "models": sorted(set(listing)) if listing is not None else None,
            }
        )
    )


def listing_from(results: Iterable[CheckResult]) -> list[str] | None:
    """The models the connectivity check's successful samples listed, from its evidence."""
    models: set[str] | None = None
    for result in results:
        if result.details.get("check") != "connectivity":
            continue
        for sample in result.samples:
            if sample.status_code == 200 and sample.response_excerpt:
                models = (models or set()) | {
                    m for m in sample.response_excerpt.split(LISTING_SEPARATOR) if m
                }
    return sorted(models) if models is not None else None


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


# Keys -----------------------------------------------------------------------------------


def generate_seed() -> str:
    """A new signing key as a base64 32-byte Ed25519 seed."""
    raw = Ed25519PrivateKey.generate().private_bytes_raw()
    return base64.b64encode(raw).decode()


def load_private_key(seed_b64: str) -> Ed25519PrivateKey:
    try:
        seed = base64.b64decode(seed_b64.strip(), validate=True)
    except ValueError:
        raise ValueError("signing key is not base64") from None
    if len(seed) != 32:
        raise ValueError(f"signing key must be a 32-byte seed, got {len(seed)} bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_b64(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def key_id_for(public_b64: str) -> str:
    """First 16 hex digits of SHA-256 over the raw public key."""
    return hashlib.sha256(base64.b64decode(public_b64)).hexdigest()[:16]


def keys_document(public_keys: Iterable[str]) -> dict[str, Any]:
    """The published keys file: every key that may have signed a live certificate."""
    keys = sorted(set(public_keys))
    return {
        "keys": [{"key_id": key_id_for(k), "algorithm": ALGORITHM, "public_key": k} for k in keys]
    }


def parse_keys_document(document: Any) -> dict[str, str]:
    """key_id → public key from `{"keys": [{key_id, public_key}, ...]}` or `{key_id: key}`."""
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        found = {}
        for entry in document["keys"]:
            if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
                found[key_id_for(entry["public_key"])] = entry["public_key"]
        return found
    if isinstance(document, dict) and all(isinstance(v, str) for v in document.values()):
        return {str(k): v for k, v in document.items()}
    raise ValueError('keys document must be {"keys": [...]} or {key_id: public_key}')


# Certificates ---------------------------------------------------------------------------


def build_payload(
    *,
    certification_id: str,
    target_id: str,
    target_name: str,
    model: str,
    region: str | None,
    endpoint_fingerprint: str,
    suite_name: str,
    suite_version: str,
    suite_hash: str,
    results: Iterable[CheckResult],
    verdict: str,
    key_id: str,
    issued_at: datetime,
    valid_for: timedelta = timedelta(days=30),
    run: RunRecord | None = None,
) -> dict[str, Any]:
    """The payload to sign; format 3 when `run` says what the verdict was reached under
    (the worker and the CLI both give it), format 1 otherwise."""
    results = list(results)
    payload = {
        "format": FORMAT if run is not None else FORMAT_V1,
        "certification_id": certification_id,
        "target": {"id": target_id, "name": target_name},
        "model": model,
        "region": region,
        "endpoint_fingerprint": endpoint_fingerprint,
        "suite": {
            "name": suite_name,
            "version": suite_version,
            "content_hash": suite_hash,
            "ref": f"{suite_name}@{suite_version}",
        },
        "results_digest": results_digest(results),
        "verdict": verdict,
        "issued_at": format_time(issued_at),
        "valid_until": format_time(issued_at + valid_for),
        "key_id": key_id,
    }
    if run is not None:
        payload |= run_section(run, results)
    return payload


def sign(
    payload: dict[str, Any], private_key: Ed25519PrivateKey, key_id: str | None = None
) -> dict[str, Any]:
    """The certificate: payload plus base64 signature over its canonical JSON. `key_id`: the
    key's id when the caller knows it (else derived from the key: a scalar multiplication,
    about as dear as the signature)."""
    expected = key_id or key_id_for(public_key_b64(private_key))
    if payload.get("key_id") != expected:
        raise ValueError(f"payload key_id {payload.get('key_id')!r} is not the signer's {expected}")
    signature = private_key.sign(canonical_json(payload))
    return {"payload": payload, "signature": base64.b64encode(signature).decode()}


def verify(cert: Any, public_keys: dict[str, str], now: datetime | None = None) -> None:
    """Raise CertificateInvalid unless the certificate is genuine, untampered and in force."""
    if (
        not isinstance(cert, dict)
        or not isinstance(cert.get("payload"), dict)
        or not isinstance(cert.get("signature"), str)
    ):
        raise CertificateInvalid("malformed", "not a certificate: needs payload and signature")
    payload = cert["payload"]
    fields = FIELDS.get(payload.get("format"))
    if fields is None:
        raise CertificateInvalid("malformed", f"unknown format {payload.get('format')!r}")
    missing = [f for f in fields if f not in payload]
    if missing:
        raise CertificateInvalid("malformed", f"payload lacks {', '.join(missing)}")
    key_id = payload["key_id"]
    if key_id not in public_keys:
        raise CertificateInvalid("unknown_key", f"signed by unknown key {key_id!r}")
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_keys[key_id]))
        public.verify(base64.b64decode(cert["signature"], validate=True), canonical_json(payload))
    except (InvalidSignature, ValueError, TypeError):
        raise CertificateInvalid(
            "bad_signature", "signature does not match the payload (tampered or forged)"
        ) from None
    try:
        issued, until = parse_time(payload["issued_at"]), parse_time(payload["valid_until"])
    except (TypeError, ValueError):
        raise CertificateInvalid("malformed", "issued_at/valid_until are not UTC times") from None
    moment = now or datetime.now(UTC)
    if moment >= until:
        raise CertificateInvalid("expired", f"expired at {payload['valid_until']}")
    if moment < issued - timedelta(minutes=5):
        raise CertificateInvalid("not_yet_valid", f"issued in the future ({payload['issued_at']})")


def accepts(payload: dict[str, Any], allow_warnings: bool = False) -> bool:
    """Whether an authentic certificate's verdict is one to ship on: `certified` (and
    `certified_with_warnings` when allowed). Call after `verify`."""
    return payload.get("verdict") in (SHIPPABLE_WITH_WARNINGS if allow_warnings else SHIPPABLE)
