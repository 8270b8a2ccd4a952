"""/v1/suites"""

from __future__ import annotations

import json

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from app.api.bodies import refuse_unstorable, too_large
from app.api.deps import RAW_BODY, deps, principal
from app.api.errors import ProblemError
from app.api.util import json_response
from app.schemas.resources import Problem
from app.schemas.results import SuiteDetail, SuiteList, SuitePath
from app.schemas.suites import suite_document_schema
from app.services import suites

tag = Tag(name="suites", description="Versioned suites of checks: built-in and your own")
bp = APIBlueprint(
    "suites", __name__, url_prefix="/v1/suites", abp_tags=[tag], abp_security=[{"bearer": []}]
)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


class SuiteDocumentSchema(BaseModel):
    """The JSON Schema of a suite document (draft 2020-12)."""


@bp.get("", operation_id="listSuites", responses={200: SuiteList, 401: Problem})
def list_suites() -> Response:
    """The built-in suites and your organization's own."""
    d = deps()
    return json_response(suites.list_suites(d.factory, d.settings, principal()))


@bp.get("/schema", operation_id="getSuiteSchema", responses={200: SuiteDocumentSchema}, security=[])
def suite_schema() -> Response:
    """The JSON Schema a suite document is validated against (generated from the same
    pydantic models the service validates with)."""
    return Response(json.dumps(suite_document_schema()), mimetype="application/schema+json")


@bp.post(
    "",
    operation_id="createSuite",
    responses={
        200: SuiteDetail,
        201: SuiteDetail,
        401: Problem,
        409: Problem,
        413: Problem,
        415: Problem,
        422: Problem,
    },
)
def create_suite() -> Response:
    """Store a suite of your own: a JSON or YAML document (`Content-Type: application/json`
    or `application/yaml`), datasets inline, or multipart/form-data with the document as
    part `suite` and each dataset file as a part named by its file name. Versions are
    immutable: the same name@version with other content is 409. Limits: docs/suites.md."""
    d = deps()
    raw, media, files = _read_suite_upload(d.settings.api_max_body_bytes)
    view, created = suites.create_suite(d.factory, principal(), raw, media, files)
    headers = {"Location": f"/v1/suites/{view.name}@{view.version}"}
    return json_response(view, 201 if created else 200, headers)


@bp.get(
    "/<name>", operation_id="getSuite", responses={200: SuiteDetail, 401: Problem, 404: Problem}
)
def get_suite(path: SuitePath) -> Response:
    """One suite (`name`, or `name@version`): version, content hash and its checks with
    params, thresholds, required."""
    d = deps()
    return json_response(suites.describe_suite(d.factory, d.settings, principal(), path.name))


def _read_suite_upload(max_bytes: int) -> tuple[bytes, str, dict[str, bytes]]:
    """(document, "json" | "yaml", dataset files) from the request, within the body limit."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise too_large(max_bytes)
    if request.mimetype == "multipart/form-data":
        parts = {name: f.read() for name, f in request.files.items()}
        upload = request.files.get("suite")
        raw = parts.pop("suite", None)
        if raw is None and "suite" in request.form:
            raw = request.form["suite"].encode("utf-8")
        if raw is None:
            raise _missing("send the suite document as the multipart part `suite`")
        named = upload.filename if upload is not None else ""
        media = (
            "json"
            if (named or "").endswith(".json")
            or (upload is not None and upload.mimetype == "application/json")
            else "yaml"
        )
        files = {}
        for field, data in parts.items():
            filename = request.files[field].filename or field
            files[filename.rsplit("/", 1)[-1]] = data
        return raw, media, files
    raw = request.get_data(cache=True)
    if len(raw) > max_bytes:
        raise too_large(max_bytes)
    if request.mimetype == "application/json":
        document = request.get_json(silent=True)
        if document is not None:
            refuse_unstorable(document)
        return raw, "json", {}
    if request.mimetype in YAML_TYPES:
        return raw, "yaml", {}
    raise ProblemError(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        "send the suite as application/json, application/yaml or multipart/form-data",
    )


def _missing(detail: str) -> ProblemError:
    return ProblemError(
        422,
        "validation-error",
        "Request is invalid",
        detail,
        [{"loc": ["body", "suite"], "msg": detail}],
    )


RAW_BODY.add(f"{bp.name}.{create_suite.__name__}")
