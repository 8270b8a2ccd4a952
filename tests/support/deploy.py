"""Shared facts and parsers for the static deployment tests (no Docker engine, no network)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")

# A floor: test_commands.py introspects the click group in app/cli/main.py and checks these too.
MODELCERT_SUBCOMMANDS: dict[str, set[str]] = {
    "api": set(),
    "worker": {"--queues"},
    "beat": set(),
    "flower": set(),
    "reference-endpoint": {"--host", "--port", "--mode"},
    "migrate": set(),
    "tokens": set(),
}

# Kept equal to what a live worker's and the API's /metrics expose by
# tests/e2e/test_dashboard_metrics_live.py, which scrapes them after a real certification.
MODELCERT_METRICS: dict[str, str] = {
    "modelcert_certifications_total": "counter",
    "modelcert_certification_duration_seconds": "histogram",
    "modelcert_active_certifications": "gauge",
    "modelcert_retries_total": "counter",
    "modelcert_queue_depth": "gauge",
    "modelcert_oldest_queued_job_age_seconds": "gauge",
    "modelcert_endpoint_requests_total": "counter",
    "modelcert_endpoint_latency_seconds": "histogram",
    "modelcert_dead_letters_total": "counter",
    "modelcert_malformed_messages_total": "counter",
    "modelcert_worker_ready": "gauge",
    "modelcert_worker_queue_ready": "gauge",
    "modelcert_worker_rss_bytes": "gauge",
    "modelcert_worker_memory_limit_bytes": "gauge",
    "modelcert_worker_restarts_total": "counter",
    "modelcert_webhook_deliveries_total": "counter",
    "modelcert_api_requests_total": "counter",
    "modelcert_api_request_duration_seconds": "histogram",
}
# Exported only in some environments, so a live scrape here may lack them.
CONDITIONAL_METRICS = {
    "modelcert_worker_memory_limit_bytes": "only when the worker's cgroup has a memory limit",
}
# Series Prometheus makes itself for every target; not exported by modelcert.
PROMETHEUS_SYNTHETIC = {"up"}

_PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
}
_LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def metric_names_in_promql(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    # Label lists after by/without/on/ignoring/group_left/group_right: `by (le, queue)`.
    text = re.sub(r"\b(" + "|".join(_LABEL_LIST_KEYWORDS) + r")\s*\([^)]*\)", " ", text, flags=re.I)
    names = set()
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _PROMQL_KEYWORDS:
            continue
        if re.fullmatch(r"\d", name[0]):
            continue
        names.add(name)
    # Duration literals like 5m are digits first and never match; drop bare numbers in e.g. 1e9.
    return {n for n in names if not re.fullmatch(r"e\d+", n)}


def unknown_metrics(expr: str) -> set[str]:
    """Names in `expr` that are no modelcert metric (histogram suffixes allowed) nor synthetic."""
    unknown = set()
    for name in metric_names_in_promql(expr):
        if name in MODELCERT_METRICS or name in PROMETHEUS_SYNTHETIC:
            continue
        base, _, suffix = name.rpartition("_")
        if suffix in {"bucket", "sum", "count"} and MODELCERT_METRICS.get(base) == "histogram":
            continue
        unknown.add(name)
    return unknown


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@cache
def compose() -> dict[str, Any]:
    return load_yaml(ROOT / "compose.yaml")


def modelcert_services() -> dict[str, dict[str, Any]]:
    """Compose services that run one of our images."""
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if "modelcert-" in str(svc.get("image", ""))
    }


def kubectl() -> str | None:
    return shutil.which("kubectl")


def needs_tool(name: str, package: str) -> pytest.MarkDecorator:
    """Skip, with the reason, when command `name` is missing; but not in CI (CI set), where
    `make test` installs it first (scripts/install-test-tools): there its absence fails."""
    return pytest.mark.skipif(
        shutil.which(name) is None and not os.environ.get("CI"),
        reason=f"{name} is not installed (Debian's {package} package; `make tools` installs it)",
    )


def alert_tests() -> dict[str, Any]:
    return load_yaml(ROOT / "deploy" / "prometheus" / "alerts.test.yml")  # type: ignore[no-any-return]


def compose_scrape_jobs() -> set[str]:
    config = load_yaml(ROOT / "deploy" / "prometheus" / "prometheus.yml")
    return {job["job_name"] for job in config["scrape_configs"]}


@cache
def render_overlay(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [kubectl() or "kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def find(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"{kind}/{name} not rendered")


def config_map(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    maps = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("modelcert-config")
    ]
    assert len(maps) == 1, "exactly one modelcert-config ConfigMap"
    return maps[0]["data"]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def go_duration(text: str) -> float:
    """Seconds, parsed as Go's time.ParseDuration does (compose checks durations with it and
    decodes them with a copy of it): a sequence of number+unit parts, summed, in any order, so
    "1m120s" is 180 s. Raises ValueError where Go returns an error."""
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    parts = re.findall(r"(\d*\.?\d*)([^\d.]+)", body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    for number, unit in parts:
        if number in {"", "."} or unit not in _GO_UNITS:
            raise ValueError(f"invalid duration {text!r}")
        total += float(number) * _GO_UNITS[unit]
    return -total if text.startswith("-") else total


def interpolate(text: str, env: dict[str, str]) -> str:
    """compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err},
    ${VAR?err}, $VAR and $$ (a literal $)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        value = env.get(name)
        unset_or_empty = not value
        if op in {":-", "-"}:
            return arg if (unset_or_empty if op == ":-" else value is None) else value  # type: ignore[return-value]
        if op in {":?", "?"}:
            if unset_or_empty if op == ":?" else value is None:
                raise KeyError(f"{name}: {arg}")
            return value  # type: ignore[return-value]
        return value or ""

    return re.sub(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)", one, text)


def settings_fields() -> dict[str, Any]:
    from app.config import Settings

    return dict(Settings.model_fields)


def settings_default(name: str) -> Any:
    return settings_fields()[name.lower()].default


def dashboard() -> dict[str, Any]:
    return json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "modelcert.json").read_text())


def dashboard_exprs() -> list[str]:
    exprs = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    exprs.append(target["expr"])
            walk(panel.get("panels", []))

    walk(dashboard()["panels"])
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    doc = load_yaml(ROOT / "deploy" / "prometheus" / "alerts.yml")
    return [rule for group in doc["groups"] for rule in group["rules"]]
