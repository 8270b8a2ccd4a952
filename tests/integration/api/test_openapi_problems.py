"""The OpenAPI document declares what errors are: application/problem+json with the Problem
schema, for every error of every operation, and the errors any /v1 request may meet (401,
429 with Retry-After, 503; 400/413/415 with a body). The answers agree with it."""

from __future__ import annotations

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def operations(spec: dict):  # type: ignore[no-untyped-def, type-arg]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_error_response_is_problem_json(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json").get_json()
    assert "Problem" in spec["components"]["schemas"]
    errors = 0
    for path, method, operation in operations(spec):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                errors += 1
                assert response["content"] == PROBLEM, (method, path, status, response)
            else:
                assert "application/problem+json" not in response.get("content", {})
    assert errors > 50


def test_every_v1_operation_lists_the_errors_any_request_may_meet(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json").get_json()
    for path, method, operation in operations(spec):
        if not path.startswith("/v1/"):
            continue
        responses = operation["responses"]
        assert {"429", "503"} <= set(responses), (method, path)
        assert "Retry-After" in responses["429"]["headers"]
        if operation.get("security"):
            assert "401" in responses, (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= set(responses), (method, path)


def test_answers_use_the_declared_media_type(client, auth) -> None:  # type: ignore[no-untyped-def]
    for response in (
        client.get("/v1/targets"),
        client.get("/v1/targets/nope", headers=auth),
        client.post("/v1/targets", json={"name": ""}, headers=auth),
        client.post("/v1/targets", data="{", content_type="application/json", headers=auth),
    ):
        assert response.status_code >= 400
        assert response.mimetype == "application/problem+json"
