"""Reports, the verify page and the login page as HTML: Jinja2 with autoescape on, one inline
stylesheet named by its hash in the Content-Security-Policy, no script at all.

The same page is served by the API and written by the CLI as one file: everything it needs
(styles, charts) is inside it, so it opens on a machine without network access. The evidence
filters are radio buttons and CSS `:has()` rules, so they work in that file too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from app.reports import charts
from app.reports.model import CheckReport, Fact, Report, SampleReport

GRADES = ("fail", "error", "pass")


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("app.reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@lru_cache(maxsize=1)
def base_css() -> str:
    return resources.files("app.reports").joinpath("templates/report.css").read_text("utf-8")


def style_hash(css: str) -> str:
    return (
        "'sha256-" + base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode() + "'"
    )


def content_security_policy(css: str, *, document: bool = False) -> str:
    """Nothing but this page's own stylesheet, images from the server itself or inline data,
    and forms posted back to it. `document`: the policy a <meta> can carry (a file opened
    from disk: no frame-ancestors, which only a header can say)."""
    policy = [
        "default-src 'none'",
        f"style-src {style_hash(css)}",
        "img-src 'self' data:",
        "form-action 'self'",
        "base-uri 'none'",
    ]
    if not document:
        policy.append("frame-ancestors 'none'")
    return "; ".join(policy)


@dataclass(frozen=True)
class Page:
    html: str
    csp: str  # the Content-Security-Policy header to send with it


def _page(template: str, css: str, **context: Any) -> Page:
    context.setdefault("nav", None)
    html = (
        environment()
        .get_template(template)
        .render(css=Markup(css), csp=content_security_policy(css, document=True), **context)
    )
    return Page(html, content_security_policy(css))


# The report -------------------------------------------------------------------------------


def filter_css(checks: Sequence[str]) -> str:
    """The evidence filters: a checked radio hides the samples of other checks or grades.
    Selectors name checks by position, never by name (a name is not CSS)."""
    rules = [
        f"main:has(#fc-{i}:checked) .sample:not(.c{i}) {{ display: none; }}"
        for i in range(len(checks))
    ]
    for grade in GRADES:
        rules.append(f"main:has(#fg-{grade}:checked) .sample:not(.g-{grade}) {{ display: none; }}")
    rules.append("main:has(#fg-bad:checked) .sample.g-pass { display: none; }")
    return "\n".join(rules)


def _quantile_label(metric: str) -> str:
    match = re.search(r"_(p\d+)", metric)
    return match.group(1) if match else metric


def _ms(value: Any) -> str:
    return "–" if value is None else f"{float(value):g} ms"


def latency_blocks(
    checks: Sequence[CheckReport], samples: Sequence[SampleReport]
) -> list[dict[str, Any]]:
    """Per latency check: the total time's and the TTFT's distributions with their quantiles
    (details.quantiles) and SLO lines, and the table of every quantile it tested."""
    blocks: list[dict[str, Any]] = []
    for check in checks:
        if check.check != "latency":
            continue
        quantiles = [q for q in check.details.get("quantiles") or [] if isinstance(q, dict)]
        answered = [s for s in samples if s.check == check.name and s.grade != "error"]
        for prefix, title, attribute in (
            ("latency_", "Total time per request", "latency_ms"),
            ("ttft_", "Time to first token", "ttft_ms"),
        ):
            values = [getattr(s, attribute) for s in answered if getattr(s, attribute)]
            chosen = [q for q in quantiles if str(q.get("metric", "")).startswith(prefix)]
            if not values and not chosen:
                continue
            marks = [
                charts.QuantileMark(
                    label=_quantile_label(str(q["metric"])),
                    estimate=float(q["estimate"]),
                    lower=q.get("lower"),
                    upper=q.get("upper"),
                    slo=q.get("slo"),
                    outcome=q.get("outcome"),
                )
                for q in chosen
                if q.get("estimate") is not None
            ]
            blocks.append(
                {
                    "title": f"{title} ({check.name})",
                    "chart": charts.distribution_chart(values, marks, f"{title}, {check.name}"),
                    "rows": [],
                }
            )
        if blocks:
            blocks[-1]["rows"] = [
                {
                    "label": str(q.get("metric")),
                    "estimate": _ms(q.get("estimate"))
                    if str(q.get("metric", "")).endswith("_ms")
                    else f"{q.get('estimate')}",
                    "interval": f"{q.get('lower')} – {q.get('upper')}"
                    if q.get("lower") is not None or q.get("upper") is not None
                    else "–",
                    "slo": "–"
                    if q.get("slo") is None
                    else ("≤ " if q.get("slo_is") == "at_most" else "≥ ") + f"{q['slo']}",
                    "outcome": q.get("outcome"),
                    "n": q.get("n"),
                }
                for q in quantiles
            ]
    return blocks


def throughput_block(checks: Sequence[CheckReport]) -> dict[str, Any] | None:
    """The load check's throughput at each concurrency it measured (details.throughput_at_N)."""
    for check in checks:
        if check.check != "load":
            continue
        levels = []
        for key, value in check.details.items():
            match = re.fullmatch(r"throughput_at_(\d+)", key)
            if match and isinstance(value, int | float):
                levels.append((int(match.group(1)), float(value)))
        if not levels:
            continue
        minimum = check.details.get("min_speedup")
        return {
            "chart": charts.throughput_chart(
                levels,
                float(minimum) if isinstance(minimum, int | float) else None,
                f"Throughput, {check.name}",
            ),
            "caption": check.explanation,
        }
    return None


def check_charts(checks: Sequence[CheckReport]) -> dict[str, Markup]:
    return {
        c.name: charts.interval_chart(c.statistic, c.lower, c.upper, c.threshold, c.outcome, c.name)
        for c in checks
        if c.is_rate and (c.statistic is not None or c.threshold is not None)
    }


def render_report(
    report: Report,
    *,
    nav: Mapping[str, str] | None = None,
    banner: str | None = None,
    filter_check: str | None = None,
    filter_grade: str | None = None,
    previous_href: str = "",
) -> Page:
    names = [c.name for c in report.checks]
    css = base_css() + "\n" + filter_css(names)
    grade = filter_grade if filter_grade in (*GRADES, "bad") else None
    return _page(
        "report.html",
        css,
        r=report,
        nav=nav,
        banner=banner,
        charts=check_charts(report.checks),
        latency=latency_blocks(report.checks, report.samples),
        throughput=throughput_block(report.checks),
        check_index={name: i for i, name in enumerate(names)},
        filter_check=filter_check if filter_check in names else None,
        filter_grade=grade,
        previous_href=previous_href,
        certificate_json=json.dumps(report.certificate, indent=2, ensure_ascii=False)
        if report.certificate
        else "",
    )


# Other pages ------------------------------------------------------------------------------


def render_message(
    heading: str, message: str, link: Mapping[str, str] | None = None, **context: Any
) -> Page:
    return _page("message.html", base_css(), heading=heading, message=message, link=link, **context)


def render_login(action: str, csrf: str, next_path: str, error: str | None = None) -> Page:
    return _page("login.html", base_css(), action=action, csrf=csrf, next=next_path, error=error)


def render_list(organization: str, items: Sequence[Mapping[str, str]], **context: Any) -> Page:
    return _page("list.html", base_css(), organization=organization, items=items, **context)


def render_verify(
    action: str, keys_href: str, result: Any = None, show_form: bool = True, **context: Any
) -> Page:
    return _page(
        "verify.html",
        base_css(),
        action=action,
        keys_href=keys_href,
        result=result,
        show_form=show_form,
        **context,
    )


def facts_from_payload(payload: Mapping[str, Any], status: str | None = None) -> list[Fact]:
    """What a signed payload says beyond target, model, region and suite: the endpoint, the
    run conditions and capabilities it was reached under, its key and validity."""
    suite = payload.get("suite") or {}
    facts = [
        Fact("Endpoint fingerprint", str(payload.get("endpoint_fingerprint")), True),
        Fact("Suite content hash", str(suite.get("content_hash")), True),
    ]
    if payload.get("run_conditions"):
        facts.append(Fact("Run conditions", _pairs(payload["run_conditions"]), True))
    if payload.get("capabilities"):
        facts.append(Fact("Declared capabilities", _pairs(payload["capabilities"]), True))
    if payload.get("skipped_required"):
        facts.append(Fact("Required checks skipped", ", ".join(payload["skipped_required"])))
    if payload.get("engine_version"):
        facts.append(
            Fact("Engine", f"{payload['engine_version']} ({payload.get('client', '?')})", False)
        )
    facts += [
        Fact("Signing key", str(payload.get("key_id")), True),
        Fact("Issued", str(payload.get("issued_at")), True),
        Fact(
            "Valid until",
            str(payload.get("valid_until")) + (f" (certificate {status})" if status else ""),
            True,
        ),
    ]
    return facts


def _pairs(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_pairs(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return "[" + ", ".join(_pairs(v) for v in value) + "]"
    return "null" if value is None else str(value)
