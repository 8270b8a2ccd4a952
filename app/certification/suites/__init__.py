"""Versioned suite files: YAML plus the datasets they name, hashed together."""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SUITES_DIR = Path(__file__).parent
DATASETS_DIR = SUITES_DIR / "datasets"


class SuiteError(Exception):
    """A suite file that cannot be used."""


DEFAULT_THRESHOLD = 0.8


class CheckEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    required: bool = True
    # The pass-rate threshold of a check graded per sample (DEFAULT_THRESHOLD when not given);
    # checks that decide by their own rule (latency, load) take their limits from params.
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    params: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None

    @property
    def rate_threshold(self) -> float:
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold

    @property
    def key(self) -> str:
        """The name a result is stored under (a suite may run one check twice with ids)."""
        return self.id or self.name


class RunSpec(BaseModel):
    """How a suite's checks are run. Part of the suite (and so of its hash and of every
    certificate), never a flag of whoever runs it: the same suite gives the same outcomes in
    the worker and in the CLI. A check with a `concurrency` parameter of its own (latency,
    load) uses that; every concurrency is capped by the target's declared maximum."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    concurrency: int = Field(default=4, ge=1, le=512)
    request_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    sample_retries: int = Field(default=2, ge=0, le=5)


class SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: str
    description: str = ""
    max_error_rate: float = Field(0.2, ge=0.0, le=1.0)
    # "benchmark": measures the job machinery (bench/), certifies nothing a user should rely
    # on; offered only where a deployment enables MODELCERT_BENCHMARK_SUITES.
    purpose: Literal["certification", "benchmark"] = "certification"
    run: RunSpec = RunSpec()
    checks: list[CheckEntry] = Field(min_length=1)


@dataclass(frozen=True)
class Suite:
    definition: SuiteFile
    content_hash: str
    datasets: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def version(self) -> str:
        return self.definition.version

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def covers(self) -> tuple[str, ...]:
        """What a certificate of this suite vouches for: the checks it requires, sorted.
        Suite A is at least as strong as B when A's covers include all of B's."""
        return tuple(sorted({c.name for c in self.definition.checks if c.required}))

    def at_least_as_strong_as(self, other: Suite) -> bool:
        return set(self.covers) >= set(other.covers)


def _datasets_named(definition: SuiteFile) -> list[str]:
    """Every dataset a suite's checks read: parameters named `dataset` or `*_dataset`, as
    given or as the check's default (a default is part of what the suite runs, and hashed)."""
    from app.certification.checks.catalog import REGISTRY

    names = set()
    for check in definition.checks:
        defaults = {
            name: param.default
            for name, param in inspect.signature(REGISTRY[check.name].factory).parameters.items()
            if param.default is not inspect.Parameter.empty
        }
        for key, value in (defaults | check.params).items():
            if (key == "dataset" or key.endswith("_dataset")) and isinstance(value, str):
                names.add(value)
    return sorted(names)


def dataset_path(name: str) -> Path:
    path = (DATASETS_DIR / name).resolve()
    if path.parent != DATASETS_DIR.resolve() or not path.is_file():
        raise SuiteError(f"unknown dataset {name!r}")
    return path


def load_suite_file(path: Path) -> Suite:
    from app.certification.checks.catalog import REGISTRY

    raw = path.read_bytes()
    try:
        definition = SuiteFile.model_validate(yaml.safe_load(raw))
    except (yaml.YAMLError, ValidationError) as exc:
        raise SuiteError(f"{path.name}: {exc}") from None
    keys = [c.key for c in definition.checks]
    if len(set(keys)) != len(keys):
        raise SuiteError(f"{path.name}: a check appears twice without distinct ids")
    for check in definition.checks:
        if check.name not in REGISTRY:
            raise SuiteError(f"{path.name}: unknown check {check.name!r}")
        try:
            inspect.signature(REGISTRY[check.name].factory).bind(**check.params)
        except TypeError as exc:
            raise SuiteError(f"{path.name}: check {check.key!r}: {exc}") from None
    digest = hashlib.sha256()
    digest.update(b"suite\0" + raw)
    datasets = _datasets_named(definition)
    for name in datasets:
        digest.update(b"\0dataset\0" + name.encode() + b"\0" + dataset_path(name).read_bytes())
    return Suite(definition, "sha256:" + digest.hexdigest(), tuple(datasets))


@lru_cache(maxsize=1)
def available_suites() -> dict[str, Suite]:
    suites = {}
    for path in sorted(SUITES_DIR.glob("*.yaml")):
        suite = load_suite_file(path)
        suites[suite.name] = suite
    return suites


def get_suite(name: str) -> Suite:
    try:
        return available_suites()[name]
    except KeyError:
        raise SuiteError(f"unknown suite {name!r}") from None
