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


def _field(kind: Any, default: Any = ...) -> tuple[Any, Any]:
    """A create_model field: `kind` is a type built at run time (a Literal of the registry's
    names, a union of models made here), which a static checker cannot follow."""
    return kind, default


@lru_cache(maxsize=1)
def suite_document_schema() -> dict[str, Any]:
    builtin = tuple(sorted(name for name, spec in REGISTRY.items() if spec.params_model is None))
    dataset_entry = create_model(
        "DatasetCheck",
        __base__=CheckEntry,
        name=_field(Literal["dataset"]),
        params=_field(DatasetParams),
    )
    builtin_entry = create_model(
        "BuiltinCheck",
        __base__=CheckEntry,
        name=_field(Literal[builtin]),
    )
    entry = Annotated[dataset_entry | builtin_entry, Field(discriminator="name")]
    document = create_model(
        "SuiteDocument",
        __base__=SuiteFile,
        purpose=_field(Literal["certification"], "certification"),
        checks=_field(list[entry], Field(min_length=1)),
    )
    schema = document.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "modelcert suite document"
    return schema
