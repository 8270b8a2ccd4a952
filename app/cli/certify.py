"""`modelcert certify` and `modelcert verify`: the engine in process, no server needed.

Exit codes of certify: 0 certified (also with warnings), 1 not certified, 3 inconclusive,
2 usage or configuration errors (bad URL, unknown suite, unwritable --out, unreachable
endpoint). A certificate is written whatever the verdict: it is a signed statement of the
verdict. `--json` prints the results as one JSON document on stdout (app/cli/output.py);
progress always goes to stderr.

Exit codes of verify: 0 authentic, in force and certified (with --allow-warnings also
certified_with_warnings); 1 authentic and in force but not certified; 2 usage errors (no
keys, unreadable keys); 4 invalid: tampered, forged, expired, unknown key or malformed.
`modelcert verify cert.json && deploy` ships only a certified model.

Run conditions (concurrency, timeouts, retries, sample counts) come from the suite, as in
the worker, so both give the same outcomes on the same endpoint; the target's declared
maximum concurrency caps them, as a registered target's rate_limit.max_concurrency does.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.certification import certificates as certs
from app.certification.checks import TargetSpec
from app.certification.engine import EngineHooks, JobFailure, planned_samples, run_record
from app.certification.evidence import check_record, sample_record
from app.certification.regressions import Baseline
from app.certification.results import CheckResult, Verdict
from app.certification.runner import JudgeEndpoint, execute
from app.certification.scoring import decide_verdict
from app.certification.suites import Suite, SuiteError, get_suite
from app.certification.suites.documents import load_path
from app.cli.baseline import BaselineError, load_baseline
from app.cli.judges import judge_endpoints
from app.cli.output import check_out_dir, results_document, stdout_console
from app.private_files import keep_private
from app.redaction import redact, redact_obj

EXIT_CODES = {
    Verdict.CERTIFIED: 0,
    Verdict.CERTIFIED_WITH_WARNINGS: 0,
    Verdict.NOT_CERTIFIED: 1,
    Verdict.INCONCLUSIVE: 3,
}
USAGE = 2
VERIFY_NOT_CERTIFIED = 1
VERIFY_INVALID = 4
DEFAULT_HOME = Path.home() / ".modelcert"


def fail(message: str, code: int = USAGE) -> click.exceptions.Exit:
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(code)


def parse_capability(text: str) -> tuple[str, Any]:
    """`k=v` → (k, v) with v as int, bool, None or string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"{text!r} is not key=value", param_hint="--capability")
    value: Any = raw.strip()
    if value.lower() in ("true", "yes", "on"):
        value = True
    elif value.lower() in ("false", "no", "off"):
        value = False
    elif value.lower() in ("none", "null", ""):
        value = None
    elif value.isdigit():
        value = int(value)
    return key.strip(), value


def load_or_create_key(path: Path) -> str:
    """The local dev signing seed; created (mode 0600) on first use."""
    return keep_private(path, certs.generate_seed)


def write_keys(path: Path, public_b64: str) -> None:
    """Add the key to a keys file, keeping earlier keys so older certificates still verify."""
    known: dict[str, str] = {}
    if path.exists():
        try:
            known = certs.parse_keys_document(json.loads(path.read_text()))
        except ValueError:
            known = {}
    path.write_text(json.dumps(certs.keys_document([*known.values(), public_b64]), indent=2) + "\n")


def write_evidence(path: Path, results: list[CheckResult], secrets: tuple[str, ...] = ()) -> None:
    """The API's evidence lines (evidence.sample_record), each check's line before its own,
    the API key redacted as the worker does."""
    with path.open("w", encoding="utf-8") as handle:
        for result in results:
            record = redact_obj({"type": "check", **check_record(result)}, secrets)
            handle.write(json.dumps(record, default=str) + "\n")
            for sample in result.samples:
                record = redact_obj(
                    {"type": "sample", **sample_record(result.name, sample)}, secrets
                )
                handle.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")


def _figure(value: float | None, unit: str | None) -> str:
    if value is None:
        return "-"
    return (
        f"{value:g} ms"
        if unit == "ms"
        else (f"{value:.2f}×" if unit == "speedup" else f"{value:.2f}")
    )


def results_table(results: list[CheckResult]) -> Table:
    table = Table(title="Checks")
    for column in (
        "check",
        "required",
        "outcome",
        "pass/fail/error",
        "statistic",
        "95% CI",
        "threshold",
        "why",
    ):
        table.add_column(column, overflow="fold")
    for r in results:
        unit = r.details.get("unit")
        interval = (
            "-"
            if r.lower is None and r.upper is None
            else f"{_figure(r.lower, unit)} – {_figure(r.upper, unit)}".replace("-", "…", 0)
        )
        regressed = (r.details.get("regression") or {}).get("regressed")
        table.add_row(
            r.name,
            "yes" if r.required else "no",
            f"{r.outcome}, regressed" if regressed else str(r.outcome),
            f"{r.passed}/{r.failed}/{r.errored}",
            _figure(r.statistic, unit),
            interval,
            _figure(r.threshold, unit),
            r.explanation,
        )
    return table


def run_with_progress(
    suite: Suite,
    target: TargetSpec,
    api_key: str | None,
    console: Console,
    judges: dict[str, JudgeEndpoint] | None = None,
    baseline: Baseline | None = None,
) -> list[CheckResult]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(
            f"{suite.name}@{suite.version}", total=planned_samples(suite, target)
        )
        hooks = EngineHooks(
            on_sample=lambda: progress.advance(task),
            on_check_finished=lambda r: progress.console.print(f"  {r.name}: {r.outcome}"),
        )
        return asyncio.run(execute(suite, target, api_key, hooks, judges=judges, baseline=baseline))


CERTIFY_EPILOG = """\b
Exit codes:
  0  certified (also certified_with_warnings)
  1  not certified
  3  inconclusive (a required check errored or could not decide)
  2  usage or configuration error: bad option, unknown suite, unset --api-key-env,
     unwritable --out or signing key, endpoint unusable (unreachable, bad key);
     no certificate is written and, with --json, stdout is empty

\b
With --json, stdout holds one JSON document (verdict, checks with their outcome,
counts, bounds, explanation, regression and judge calibration, counts per outcome,
the certificate's path);
progress and errors go to stderr. Without it, a table and a verdict line; piped,
the table is not cut to the terminal's width."""


@click.command("certify", epilog=CERTIFY_EPILOG)
@click.option("--base-url", required=True, help="Endpoint URL (OpenAI-compatible: ends in /v1).")
@click.option("--model", required=True, help="Model name, as the endpoint lists it.")
@click.option(
    "--provider",
    type=click.Choice(["openai_compatible", "anthropic"]),
    default="openai_compatible",
    show_default=True,
    help="The endpoint's API.",
)
@click.option(
    "--suite",
    "suite_name",
    default="standard",
    show_default=True,
    help="Suite of checks (smoke, standard, ...; the server's GET /v1/suites lists them).",
)
@click.option(
    "--suite-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A suite document of your own (YAML or JSON) with its datasets beside it; "
    "replaces --suite.",
)
@click.option("--api-key-env", help="Name of the environment variable holding the API key.")
@click.option(
    "--capability",
    "capabilities",
    multiple=True,
    metavar="K=V",
    help="Declared capability, e.g. streaming=true, context_length=8192.",
)
@click.option("--region", default=None, help="Region label signed into the certificate.")
@click.option("--name", "target_name", default=None, help="Target name (default: the model).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory for certificate.json, keys.json and evidence.jsonl (created; checked "
    "writable before the run).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the results as one JSON document on stdout (progress stays on stderr).",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(1, 512),
    default=None,
    help="The target's declared maximum of concurrent requests; caps the suite's "
    "concurrency and is signed into the certificate.",
)
@click.option(
    "--signing-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_HOME / "signing-key",
    show_default=True,
    help="Ed25519 seed (base64) that signs the certificate; created (mode 0600) if missing.",
)
@click.option(
    "--valid-days",
    type=click.IntRange(1, 3650),
    default=30,
    show_default=True,
    help="Days the certificate stays valid.",
)
@click.option(
    "--baseline",
    "baseline_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="A previous certified run of the same suite version (its --out directory, "
    "certificate.json or --json document): each check is compared with it and a "
    "significant drop is marked regressed (docs/methodology.md).",
)
@click.option(
    "--judge",
    "judge_urls",
    multiple=True,
    metavar="NAME=BASE_URL",
    help="Bind the judge model a suite's `judge` grader names to an endpoint (repeat per "
    "judge; docs/suites.md). Each needs --judge-model NAME=MODEL.",
)
@click.option(
    "--judge-model", "judge_models", multiple=True, metavar="NAME=MODEL", help="A judge's model."
)
@click.option(
    "--judge-provider",
    "judge_providers",
    multiple=True,
    metavar="NAME=PROVIDER",
    help="A judge's API: openai_compatible (default) or anthropic.",
)
@click.option(
    "--judge-api-key-env",
    "judge_key_envs",
    multiple=True,
    metavar="NAME=VAR",
    help="Environment variable holding a judge's API key (redacted like --api-key-env's).",
)
@click.option(
    "--judge-max-concurrency",
    "judge_concurrencies",
    multiple=True,
    metavar="NAME=N",
    help="A judge's maximum of concurrent requests (default: the suite's concurrency).",
)
@click.option(  # issue 24: the report page as one file (app/cli/report.py)
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the report as one self-contained HTML file.",
)
def certify(
    base_url: str,
    model: str,
    provider: str,
    suite_name: str,
    api_key_env: str | None,
    capabilities: tuple[str, ...],
    region: str | None,
    target_name: str | None,
    out_dir: Path,
    as_json: bool,
    max_concurrency: int | None,
    signing_key_file: Path,
    valid_days: int,
    html_path: Path | None = None,
    suite_file: Path | None = None,
    baseline_path: Path | None = None,
    judge_urls: tuple[str, ...] = (),
    judge_models: tuple[str, ...] = (),
    judge_providers: tuple[str, ...] = (),
    judge_key_envs: tuple[str, ...] = (),
    judge_concurrencies: tuple[str, ...] = (),
) -> None:
    """Certify one endpoint in process and write certificate.json, keys.json, evidence.jsonl.

    No server needed: the same engine as the worker, run conditions from the suite."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail(f"--base-url must be an http(s) URL, got {base_url!r}")
    try:
        suite = load_path(suite_file) if suite_file else get_suite(suite_name)
    except SuiteError as exc:
        raise fail(f"{suite_file or 'suite'}: {exc}") from None
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise fail(f"environment variable {api_key_env} is not set")
    judges = judge_endpoints(
        suite, judge_urls, judge_models, judge_providers, judge_key_envs, judge_concurrencies
    )
    secrets = tuple(k for k in (api_key, *(j.api_key for j in judges.values())) if k)
    caps = dict(parse_capability(c) for c in capabilities)
    try:
        private_key = certs.load_private_key(load_or_create_key(signing_key_file))
    except (OSError, ValueError) as exc:
        raise fail(f"signing key {signing_key_file}: {exc}") from None
    if problem := check_out_dir(out_dir):  # before any request: a run must not be lost
        raise fail(problem)
    baseline = None
    if baseline_path is not None:
        try:
            baseline = load_baseline(baseline_path, suite, DEFAULT_HOME)
        except BaselineError as exc:
            raise fail(f"--baseline: {exc}") from None
    target = TargetSpec(
        provider=provider,
        model=model,
        base_url=base_url,
        region=region,
        capabilities=caps,
        max_concurrency=max_concurrency,
    )
    console = Console(stderr=True)
    try:
        results = run_with_progress(suite, target, api_key, console, judges, baseline)
    except JobFailure as exc:
        raise fail(f"endpoint unusable ({exc.cause}): {redact(exc.message, secrets)}") from None
    verdict = decide_verdict((r.outcome, r.required) for r in results)
    if not as_json:
        stdout_console().print(results_table(results))

    public = certs.public_key_b64(private_key)
    fingerprint = certs.endpoint_fingerprint(provider, base_url, model, certs.listing_from(results))
    payload = certs.build_payload(
        certification_id=str(uuid.uuid4()),
        target_id="local-" + fingerprint[7:23],
        target_name=target_name or model,
        model=model,
        region=region,
        endpoint_fingerprint=fingerprint,
        suite_name=suite.name,
        suite_version=suite.version,
        suite_hash=suite.content_hash,
        results=results,
        verdict=str(verdict),
        key_id=certs.key_id_for(public),
        issued_at=datetime.now(UTC),
        valid_for=timedelta(days=valid_days),
        run=run_record(suite, target, "cli", baseline),
    )
    files = {
        "certificate": out_dir / "certificate.json",
        "keys": out_dir / "keys.json",
        "evidence": out_dir / "evidence.jsonl",
    }
    try:
        files["certificate"].write_text(
            json.dumps(certs.sign(payload, private_key), indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        write_keys(files["keys"], public)
        write_evidence(files["evidence"], results, secrets)
    except OSError as exc:  # checked before the run; a full disk can still say no
        raise fail(f"cannot write to --out {out_dir}: {exc.strerror or exc}") from None
    if html_path is not None:  # issue 24: from the files just written, as `modelcert report`
        from app.cli.report import write_report

        # stdout holds nothing but the JSON document with --json
        click.echo(f"report: {write_report(out_dir, html_path)}", err=as_json)
    code = EXIT_CODES[verdict]
    if as_json:
        document = results_document(verdict, code, results, suite, target, payload, files)
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        click.echo(f"verdict: {verdict}  (certificate: {files['certificate']})")
    raise click.exceptions.Exit(code)


def load_keys(source: str | None, cert_path: Path) -> dict[str, str]:
    """Keys from a URL, a file, keys.json beside the certificate, or ~/.modelcert/keys.json."""
    if source and source.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(source, timeout=10.0, follow_redirects=False)
            response.raise_for_status()
            return certs.parse_keys_document(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            raise fail(f"cannot load keys from {source}: {exc}") from None
    candidates = (
        [Path(source)] if source else [cert_path.parent / "keys.json", DEFAULT_HOME / "keys.json"]
    )
    for path in candidates:
        if path.is_file():
            try:
                return certs.parse_keys_document(json.loads(path.read_text()))
            except ValueError as exc:
                raise fail(f"keys file {path}: {exc}") from None
    raise fail(f"no keys file found (tried {', '.join(map(str, candidates))})")


@click.command(
    "verify",
    epilog="""\b
Exit codes:
  0  authentic, in force and certified (with --allow-warnings also
     certified_with_warnings)
  1  authentic and in force, but not certified
  2  usage errors (no keys found, unreadable keys)
  4  invalid: tampered, forged, expired, unknown key or malformed""",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--keys",
    "keys_source",
    default=None,
    help="Keys file or URL of /v1/signing-keys (default: keys.json beside FILE, then "
    "~/.modelcert/keys.json).",
)
@click.option(
    "--allow-warnings", is_flag=True, help="Also accept a certified_with_warnings verdict."
)
def verify(file: Path, keys_source: str | None, allow_warnings: bool) -> None:
    """Verify a certificate offline: signature, known key, validity period, and a verdict a
    pipeline may ship on."""
    keys = load_keys(keys_source, file)
    try:
        cert = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        cert = None
    try:
        certs.verify(cert, keys)
    except certs.CertificateInvalid as exc:
        click.echo(f"invalid ({exc.reason}): {exc.message}", err=True)
        raise click.exceptions.Exit(VERIFY_INVALID) from None
    payload = cert["payload"]
    described = (
        f"{payload['model']} ({payload['suite']['ref']}), key {payload['key_id']}, "
        f"valid until {payload['valid_until']}"
    )
    if not certs.accepts(payload, allow_warnings):
        click.echo(
            f"not certified: authentic, but the verdict is {payload['verdict']} for {described}",
            err=True,
        )
        raise click.exceptions.Exit(VERIFY_NOT_CERTIFIED)
    click.echo(f"valid: {payload['verdict']} for {described}")
