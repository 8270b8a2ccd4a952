"""The OpenAPI document says what the API answers, so a client generated from it works:

- every error is `application/problem+json` with the Problem schema (flask-openapi3 files
  every model response under application/json);
- every /v1 operation lists the errors any request may meet (401 without a token, 429 over a
  limit, 503 without the database, 500 for a bug, 400/413/415 for a body, 422 for a query or
  a body), and no 422 where there is nothing to validate (flask-openapi3 adds one to every
  operation; an id in the path is a string, and a bad one is a 404);
- the headers the API reads (Idempotency-Key, X-Request-ID) are parameters, and the headers it
  sets (Location, Idempotent-Replayed, Retry-After, WWW-Authenticate, X-Request-ID,
  X-RateLimit-*, Content-Disposition) are declared on the responses that carry them.

Every operation names itself (`operation_id=` in the blueprints): the names generated clients
call, so they are stable (tests/integration/api/test_openapi_contract.py pins them).
"""

from __future__ import annotations

from typing import Any

from flask_openapi3 import OpenAPI
from pydantic import BaseModel

from app.schemas.reports import BadgeUpdate, ShareCreate

PROBLEM = "application/problem+json"
PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


HEADERS = {
    "RetryAfter": _header("Seconds to wait before retrying.", {"type": "integer"}),
    "RequestId": _header("The request's id (the caller's X-Request-ID, else a new one)."),
    "RateLimitLimit": _header(
        "Requests allowed in the token's tightest window (absent when the limiter's store "
        "is unreachable).",
        {"type": "integer"},
    ),
    "RateLimitRemaining": _header("Requests left in that window.", {"type": "integer"}),
    "RateLimitReset": _header("When that window resets (Unix seconds).", {"type": "integer"}),
    "Location": _header("The URL of the resource created or queued."),
    "IdempotentReplayed": _header(
        "`true` when this answers a retried POST with the same Idempotency-Key: the job "
        "is the one the first POST created.",
        {"type": "string", "enum": ["true"]},
    ),
    "WWWAuthenticate": _header("`Bearer`: how to authenticate."),
    "ContentDisposition": _header('`inline; filename="<id>.jsonl"`.'),
}
PARAMETERS = {
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Makes a retried POST return the job the first one created (202 with "
        "Idempotent-Replayed: true) instead of queueing another; per organization.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
    "RequestId": {
        "name": "X-Request-ID",
        "in": "header",
        "required": False,
        "description": "Your id for this request (its first 64 characters): logged, and "
        "returned in the X-Request-ID response header and as a problem's request_id.",
        "schema": {"type": "string"},
    },
}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


# Errors any /v1 request may meet, whatever the operation.
COMMON = {
    "429": "Too many requests: the token's limit, or failed authentications from "
    "the address (Retry-After)",
    "500": "A bug: report the problem's request_id",
    "503": "The database is unreachable (Retry-After)",
}
SECURED = {"401": "Missing, unknown or revoked API token"}
WITH_BODY = {
    "400": "The body is not JSON, or nests too deeply",
    "413": "The body is over API_MAX_BODY_BYTES",
    "415": "The body is not application/json",
}


# Bodies the views read themselves (an optional body; ownership checked before the body; a
# suite in JSON, YAML or multipart), so flask-openapi3 does not see them: declared here, by
# operationId, as (schema models to publish, the requestBody).
def _json_body(model: type[BaseModel], required: bool) -> dict[str, Any]:
    return {
        "required": required,
        "content": {"application/json": {"schema": _ref("schemas", model.__name__)}},
    }


SUITE_DOCUMENT = {
    "type": "object",
    "additionalProperties": True,
    "description": "A suite document; its JSON Schema is GET /v1/suites/schema (getSuiteSchema).",
}
REQUEST_BODIES: dict[str, tuple[list[type[BaseModel]], dict[str, Any]]] = {
    "createShare": ([ShareCreate], _json_body(ShareCreate, False)),
    "setBadge": ([BadgeUpdate], _json_body(BadgeUpdate, True)),
    "createSuite": (
        [],
        {
            "required": True,
            "content": {
                "application/json": {"schema": SUITE_DOCUMENT},
                "application/yaml": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "The suite document in YAML (also application/x-yaml, "
                        "text/yaml).",
                    }
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "suite": {
                                "type": "string",
                                "format": "binary",
                                "description": "The suite document (YAML, or JSON: a "
                                "file name ending in .json).",
                            }
                        },
                        "required": ["suite"],
                        "additionalProperties": {
                            "type": "string",
                            "format": "binary",
                            "description": "A dataset file, as the part's file name.",
                        },
                    }
                },
            },
        },
    ),
}
# Request headers beyond Authorization, by operationId.
REQUEST_HEADERS = {"createCertification": ["IdempotencyKey"]}
# Response headers beyond the common ones, by (operationId, status).
RESPONSE_HEADERS = {
    ("createTarget", "201"): ["Location"],
    ("createSecret", "201"): ["Location"],
    ("createWebhook", "201"): ["Location"],
    ("createCertification", "202"): ["Location", "IdempotentReplayed"],
    ("retryCertification", "202"): ["Location"],
    ("replayDeadLetter", "202"): ["Location"],
    ("createSuite", "200"): ["Location"],
    ("createSuite", "201"): ["Location"],
    ("createShare", "201"): ["Location"],
    ("getEvidence", "200"): ["ContentDisposition"],
}
STATUS_HEADERS = {"401": ["WWWAuthenticate"], "429": ["RetryAfter"], "503": ["RetryAfter"]}
V1_HEADERS = ["RequestId", "RateLimitLimit", "RateLimitRemaining", "RateLimitReset"]


def declare_problems(spec: dict[str, Any]) -> None:
    """Rewrite `spec` (the generated document) in place."""
    components = spec.setdefault("components", {})
    components.setdefault("headers", {}).update(HEADERS)
    components.setdefault("parameters", {}).update(PARAMETERS)
    for path, item in spec.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            _declare(spec, path, operation)


def _declare_body(spec: dict[str, Any], operation: dict[str, Any], op_id: str) -> None:
    if op_id not in REQUEST_BODIES or "requestBody" in operation:
        return
    models, body = REQUEST_BODIES[op_id]
    for model in models:
        spec["components"].setdefault("schemas", {})[model.__name__] = model.model_json_schema()
    operation["requestBody"] = body


def _declare(spec: dict[str, Any], path: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    op_id = operation.get("operationId", "")
    _declare_body(spec, operation, op_id)
    parameters = operation.setdefault("parameters", [])
    takes_input = "requestBody" in operation or any(
        p.get("in") == "query" for p in parameters if isinstance(p, dict)
    )
    if not takes_input:
        responses.pop("422", None)
    v1 = path.startswith("/v1/")
    if v1:
        extra = dict(COMMON)
        if operation.get("security"):
            extra |= SECURED
        if "requestBody" in operation:
            extra |= WITH_BODY
        for status, description in extra.items():
            responses.setdefault(status, {"description": description})
        for name in [*REQUEST_HEADERS.get(op_id, []), "RequestId"]:
            if _ref("parameters", name) not in parameters:
                parameters.append(_ref("parameters", name))
    for status, response in responses.items():
        status = str(status)
        if status.isdigit() and int(status) >= 400:
            response["content"] = {PROBLEM: {"schema": PROBLEM_SCHEMA}}
        names = [*RESPONSE_HEADERS.get((op_id, status), []), *STATUS_HEADERS.get(status, [])]
        if v1:
            names += V1_HEADERS
        if names:
            headers = response.setdefault("headers", {})
            for name in names:
                headers[_header_name(name)] = _ref("headers", name)


def _header_name(component: str) -> str:
    return {
        "RetryAfter": "Retry-After",
        "RequestId": "X-Request-ID",
        "RateLimitLimit": "X-RateLimit-Limit",
        "RateLimitRemaining": "X-RateLimit-Remaining",
        "RateLimitReset": "X-RateLimit-Reset",
        "Location": "Location",
        "IdempotentReplayed": "Idempotent-Replayed",
        "WWWAuthenticate": "WWW-Authenticate",
        "ContentDisposition": "Content-Disposition",
    }[component]


class ProblemDocumentedOpenAPI(OpenAPI):
    """flask-openapi3's app, whose document declares problem+json errors and headers."""

    def generate_spec_json(self) -> None:
        super().generate_spec_json()  # type: ignore[no-untyped-call]  # unannotated upstream
        declare_problems(self.spec_json)
