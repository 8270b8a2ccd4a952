"""Versioned suite files: YAML plus the datasets they name, hashed together."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SUITES_DIR = Path(__file__).parent
DATASETS_DIR = SUITES_DIR / "datasets"


class SuiteError(Exception):
    """A suite file that cannot be used."""


class CheckEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    required: bool = True
    threshold: float = Field(0.8, ge=0.0, le=1.0)
    params: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None

    @property
    def key(self) -> str:
        """The name a result is stored under (a suite may run one check twice with ids)."""
        return self.id or self.name


class SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: str
    description: str = ""
    max_error_rate: float = Field(0.2, ge=0.0, le=1.0)
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


def _datasets_named(definition: SuiteFile) -> list[str]:
    names = set()
    for check in definition.checks:
        for key in ("dataset", "harmful_dataset", "benign_dataset"):
            value = check.params.get(key)
            if isinstance(value, str):
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
