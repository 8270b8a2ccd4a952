"""Versioned suite files: YAML plus the datasets they name, hashed together."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SUITES_DIR = Path(__file__).parent
DATASETS_DIR = SUITES_DIR / "datasets"


class SuiteError(Exception):
    """A suite file that cannot be used."""


class SuiteInvalid(SuiteError):
    """A suite document that fails validation: each error names its path (and its line in
    the document, when it has one)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(describe_error(e) for e in errors[:5]))


class SuiteTooLarge(SuiteError):
    """A suite document or dataset over its documented size limit."""


def describe_error(error: Mapping[str, Any]) -> str:
    path = ".".join(str(part) for part in error.get("loc", ())) or "suite"
    line = f" (line {error['line']})" if error.get("line") else ""
    return f"{path}{line}: {error.get('msg', '')}"


DEFAULT_THRESHOLD = 0.8
NAME = r"^[a-z0-9][a-z0-9_-]*$"


class Sampling(BaseModel):
    """How many samples a check draws. `fixed` (the default): all its items. `sequential`:
    batches of `batch` until the pass rate's anytime-valid confidence sequence lies wholly
    above or below the threshold, or `max` samples (scoring.sequential_decision)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["fixed", "sequential"] = "fixed"
    max: int | None = Field(None, ge=1, le=10_000)
    batch: int = Field(10, ge=1, le=1_000)

    @model_validator(mode="after")
    def _max_for_sequential(self) -> Sampling:
        if self.mode == "sequential" and self.max is None:
            raise ValueError("sequential sampling needs max (the most samples to draw)")
        if self.max is not None and self.batch > self.max:
            raise ValueError("batch must not exceed max")
        return self

    @property
    def sequential(self) -> bool:
        return self.mode == "sequential"


class CheckEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    required: bool = True
    # The pass-rate threshold of a check graded per sample (DEFAULT_THRESHOLD when not given);
    # checks that decide by their own rule (latency, load) take their limits from params.
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    params: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(None, pattern=NAME, max_length=100)
    sampling: Sampling = Sampling()
    # Against the target's last certified result of this suite (regressions.assess):
    # `report` says whether the check regressed; `forbid` also fails it when it did.
    regression: Literal["report", "forbid"] = Field(
        "report",
        description="report: a significant drop against the target's last certified result "
        "is reported; forbid: it also fails the check.",
    )

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


class DatasetSource(BaseModel):
    """A suite's own dataset: rows inline, JSONL inline, or a JSONL file beside the suite
    (the CLI) or uploaded with it (the API), by file name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rows: list[dict[str, Any]] | None = None
    jsonl: str | None = None
    file: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetSource:
        given = [k for k in ("rows", "jsonl", "file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of rows, jsonl or file")
        return self


class SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=NAME, max_length=100)
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$", max_length=50)
    description: str = ""
    max_error_rate: float = Field(0.2, ge=0.0, le=1.0)
    # "benchmark": measures the job machinery (bench/), certifies nothing a user should rely
    # on; offered only where a deployment enables MODELCERT_BENCHMARK_SUITES.
    purpose: Literal["certification", "benchmark"] = "certification"
    run: RunSpec = RunSpec()
    datasets: dict[str, DatasetSource] = Field(default_factory=dict)
    checks: list[CheckEntry] = Field(min_length=1)


Rows = tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Suite:
    definition: SuiteFile
    content_hash: str
    datasets: tuple[str, ...] = field(default=())  # shipped datasets its checks read
    data: Mapping[str, Rows] = field(default_factory=dict, compare=False)  # its own datasets

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
        if REGISTRY[check.name].params_model is not None:
            continue  # a check of the suite's own datasets (checks.dataset)
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


def check_problems(definition: SuiteFile, data: Mapping[str, Rows]) -> list[dict[str, Any]]:
    """What is wrong with a suite's checks, each with its path: unknown checks, parameters
    the check does not take, sampling it cannot do, datasets and graders that do not fit."""
    from app.certification.checks.catalog import REGISTRY

    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, check in enumerate(definition.checks):
        loc: list[str | int] = ["checks", index]
        if check.key in seen:
            problems.append({"loc": [*loc, "id"], "msg": "a check appears twice: give ids"})
        seen.add(check.key)
        spec = REGISTRY.get(check.name)
        if spec is None:
            known = ", ".join(sorted(REGISTRY))
            problems.append({"loc": [*loc, "name"], "msg": f"unknown check; one of: {known}"})
            continue
        if check.sampling.sequential and not spec.sequential:
            problems.append(
                {
                    "loc": [*loc, "sampling"],
                    "msg": f"check {check.name!r} cannot sample sequentially (it is not "
                    "decided by a pass rate over independent samples)",
                }
            )
        problems.extend({**p, "loc": [*loc, *p["loc"]]} for p in spec.problems(check, data))
    return problems


def load_suite_file(path: Path) -> Suite:
    raw = path.read_bytes()
    try:
        definition = SuiteFile.model_validate(yaml.safe_load(raw))
    except (yaml.YAMLError, ValidationError) as exc:
        raise SuiteError(f"{path.name}: {exc}") from None
    if definition.datasets:
        raise SuiteError(f"{path.name}: a shipped suite reads shipped datasets only")
    problems = check_problems(definition, {})
    if problems:
        raise SuiteError(f"{path.name}: {SuiteInvalid(problems)}")
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
