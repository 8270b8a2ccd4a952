"""The suite document a team uploads, as a JSON Schema generated from the engine's own
pydantic models (SuiteFile, CheckEntry, DatasetParams and its graders): what
`GET /v1/suites/schema` publishes is what `POST /v1/suites` validates with."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, create_model

from app.certification.checks.catalog import REGISTRY
from app.certification.checks.dataset import DatasetParams
from app.certification.suites import CheckEntry, SuiteFile


@lru_cache(maxsize=1)
def suite_document_schema() -> dict[str, Any]:
    builtin = tuple(sorted(name for name, spec in REGISTRY.items() if spec.params_model is None))
    dataset_entry = create_model(
        "DatasetCheck",
        __base__=CheckEntry,
        name=(Literal["dataset"], ...),
        params=(DatasetParams, ...),
    )
    builtin_entry = create_model(
        "BuiltinCheck",
        __base__=CheckEntry,
        name=(Literal[builtin], ...),  # type: ignore[valid-type]
    )
    entry = Annotated[dataset_entry | builtin_entry, Field(discriminator="name")]
    document = create_model(
        "SuiteDocument",
        __base__=SuiteFile,
        purpose=(Literal["certification"], "certification"),
        checks=(list[entry], Field(min_length=1)),  # type: ignore[valid-type]
    )
    schema = document.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "modelcert suite document"
    return schema
