"""The OpenAPI document says what the API answers: every error is `application/problem+json`
with the Problem schema (flask-openapi3 files every model response under application/json,
and adds a 422 of its own validation model), and every /v1 operation lists the errors any
request may meet (401 without a token, 429 over a limit, 503 without the database,
400/413/415 for a body)."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import OpenAPI

PROBLEM = "application/problem+json"
PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
}
# Errors any /v1 request may meet, whatever the operation.
COMMON = {
    "429": "Too many requests: the token's limit, or failed authentications from "
    "the address (Retry-After)",
    "503": "The database is unreachable (Retry-After)",
}
SECURED = {"401": "Missing, unknown or revoked API token"}
WITH_BODY = {
    "400": "The body is not JSON, or nests too deeply",
    "413": "The body is over API_MAX_BODY_BYTES",
    "415": "The body is not application/json",
}


def declare_problems(spec: dict[str, Any]) -> None:
    """Rewrite `spec` (the generated document) in place."""
    for path, item in spec.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if path.startswith("/v1/"):
                extra = dict(COMMON)
                if operation.get("security"):
                    extra |= SECURED
                if "requestBody" in operation:
                    extra |= WITH_BODY
                for status, description in extra.items():
                    responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if str(status).isdigit() and int(status) >= 400:
                    response["content"] = {PROBLEM: {"schema": PROBLEM_SCHEMA}}
                    if str(status) in ("429", "503"):
                        response.setdefault("headers", {}).update(RETRY_AFTER)


class ProblemDocumentedOpenAPI(OpenAPI):
    """flask-openapi3's app, whose document declares problem+json errors."""

    def generate_spec_json(self) -> None:
        super().generate_spec_json()  # type: ignore[no-untyped-call]
        declare_problems(self.spec_json)
