"""A contract clients can be generated from (issue #27, item 9): every operation has a short,
stable operationId (pinned here: renaming one breaks every generated client), the headers the
API reads and sets are declared, a 422 only where there is input to validate, and the answers
carry what the document says. The samples list is the evidence as JSON pages."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.api import assert_problem, create_target
from tests.support.jobs import queue, run_inline
from tests.support.rows import make_token

OPERATION_IDS = {
    ("post", "/v1/targets"): "createTarget",
    ("get", "/v1/targets"): "listTargets",
    ("get", "/v1/targets/{target_id}"): "getTarget",
    ("patch", "/v1/targets/{target_id}"): "updateTarget",
    ("delete", "/v1/targets/{target_id}"): "deleteTarget",
    ("get", "/v1/targets/{target_id}/certificate"): "getTargetCertificate",
    ("post", "/v1/certifications"): "createCertification",
    ("get", "/v1/certifications"): "listCertifications",
    ("get", "/v1/certifications/{certification_id}"): "getCertification",
    ("post", "/v1/certifications/{certification_id}/cancel"): "cancelCertification",
    ("post", "/v1/certifications/{certification_id}/retry"): "retryCertification",
    ("get", "/v1/certifications/{certification_id}/results"): "getResults",
    ("get", "/v1/certifications/{certification_id}/evidence"): "getEvidence",
    ("get", "/v1/certifications/{certification_id}/samples"): "listSamples",
    ("get", "/v1/certifications/{certification_id}/certificate"): "getCertificationCertificate",
    ("get", "/v1/signing-keys"): "listSigningKeys",
    ("get", "/v1/suites"): "listSuites",
    ("get", "/v1/suites/{name}"): "getSuite",
    ("post", "/v1/suites"): "createSuite",
    ("get", "/v1/suites/schema"): "getSuiteSchema",
    ("get", "/v1/dead-letters"): "listDeadLetters",
    ("post", "/v1/dead-letters/{dead_letter_id}/replay"): "replayDeadLetter",
    ("post", "/v1/secrets"): "createSecret",
    ("get", "/v1/secrets"): "listSecrets",
    ("get", "/v1/secrets/{secret_id}"): "getSecret",
    ("delete", "/v1/secrets/{secret_id}"): "deleteSecret",
    ("post", "/v1/webhooks"): "createWebhook",
    ("get", "/v1/webhooks"): "listWebhooks",
    ("delete", "/v1/webhooks/{webhook_id}"): "deleteWebhook",
    ("get", "/v1/webhooks/{webhook_id}/deliveries"): "listWebhookDeliveries",
    ("post", "/v1/certifications/{certification_id}/share"): "createShare",
    ("get", "/v1/certifications/{certification_id}/shares"): "listShares",
    ("delete", "/v1/certifications/{certification_id}/shares/{share_id}"): "revokeShare",
    ("get", "/v1/targets/{target_id}/badge"): "getBadge",
    ("put", "/v1/targets/{target_id}/badge"): "setBadge",
}


@pytest.fixture(scope="module")
def spec(app):  # type: ignore[no-untyped-def]
    return app.test_client().get("/openapi.json").get_json()


def operations(spec):  # type: ignore[no-untyped-def]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def resolve(spec, node):  # type: ignore[no-untyped-def]
    if "$ref" in node:
        kind, name = node["$ref"].split("/")[-2:]
        return spec["components"][kind][name]
    return node


def parameters(spec, operation) -> dict[str, dict]:  # type: ignore[no-untyped-def, type-arg]
    return {
        (p := resolve(spec, ref))["name"]: p
        for ref in operation.get("parameters", [])  # type: ignore[union-attr]
    }


def test_every_operation_has_its_pinned_short_id(spec) -> None:  # type: ignore[no-untyped-def]
    found = {(m, p): op.get("operationId") for m, p, op in operations(spec)}
    assert found == OPERATION_IDS


def test_idempotency_key_and_request_id_are_parameters(spec) -> None:  # type: ignore[no-untyped-def]
    for method, path, operation in operations(spec):
        names = parameters(spec, operation)
        assert "X-Request-ID" in names, (method, path)
        assert ("Idempotency-Key" in names) == (operation["operationId"] == "createCertification")
    create = spec["paths"]["/v1/certifications"]["post"]
    key = parameters(spec, create)["Idempotency-Key"]
    assert key["in"] == "header" and not key["required"]
    assert key["schema"] == {"type": "string", "minLength": 1, "maxLength": 255}


def test_response_headers_are_declared(spec) -> None:  # type: ignore[no-untyped-def]
    def headers(method: str, path: str, status: str) -> set[str]:
        return set(spec["paths"][path][method]["responses"][status].get("headers", {}))

    assert {"Location", "Idempotent-Replayed"} <= headers("post", "/v1/certifications", "202")
    assert "Location" in headers("post", "/v1/targets", "201")
    assert "WWW-Authenticate" in headers("get", "/v1/targets", "401")
    for method, path, operation in operations(spec):
        for status in ("429", "503"):
            assert "Retry-After" in headers(method, path, status), (method, path, status)
        for status in operation["responses"]:
            assert {"X-Request-ID", "X-RateLimit-Limit"} <= headers(method, path, status)
    for name, header in spec["components"]["headers"].items():
        assert header["description"] and header["schema"]["type"], name


def test_422_only_where_there_is_input_and_500_everywhere(spec) -> None:  # type: ignore[no-untyped-def]
    for method, path, operation in operations(spec):
        has_input = "requestBody" in operation or any(
            p["in"] == "query" for p in parameters(spec, operation).values()
        )
        assert ("422" in operation["responses"]) == has_input, (method, path)
        assert "500" in operation["responses"], (method, path)
    create = spec["paths"]["/v1/certifications"]["post"]["responses"]
    assert {"202", "404", "409", "422"} <= set(create)


def test_bodies_the_views_validate_themselves_are_declared(spec) -> None:  # type: ignore[no-untyped-def]
    share = spec["paths"]["/v1/certifications/{certification_id}/share"]["post"]
    assert share["requestBody"]["required"] is False
    badge = spec["paths"]["/v1/targets/{target_id}/badge"]["put"]
    assert badge["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BadgeUpdate"
    }
    assert badge["requestBody"]["required"] is True
    assert {"400", "413", "415", "422"} <= set(badge["responses"])
    assert spec["components"]["schemas"]["BadgeUpdate"]["required"] == ["public"]
    suite = spec["paths"]["/v1/suites"]["post"]["requestBody"]
    assert set(suite["content"]) == {"application/json", "application/yaml", "multipart/form-data"}
    assert suite["content"]["multipart/form-data"]["schema"]["required"] == ["suite"]


def test_evidence_is_declared_as_the_stream_it_is(spec) -> None:  # type: ignore[no-untyped-def]
    evidence = spec["paths"]["/v1/certifications/{certification_id}/evidence"]["get"]
    content = evidence["responses"]["200"]["content"]
    assert list(content) == ["application/x-ndjson"]
    assert content["application/x-ndjson"]["x-item-schema"] == {
        "$ref": "#/components/schemas/EvidenceLine"
    }
    samples = spec["paths"]["/v1/certifications/{certification_id}/samples"]["get"]
    page = samples["responses"]["200"]["content"]["application/json"]["schema"]
    assert page == {"$ref": "#/components/schemas/SampleList"}


def test_the_answers_carry_the_declared_headers(client, auth, reference_url) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/targets",
        json={"name": f"h-{uuid.uuid4().hex[:8]}", "model": "m", "base_url": f"{reference_url}/v1"},
        headers={**auth, "X-Request-ID": "contract-test"},
    )
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v1/targets/{r.get_json()['id']}"
    assert r.headers["X-Request-ID"] == "contract-test"
    assert int(r.headers["X-RateLimit-Remaining"]) >= 0
    unauthenticated = client.get("/v1/targets")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["WWW-Authenticate"].startswith("Bearer")


def test_samples_are_the_evidence_in_pages(client, auth, factory, settings, reference_url) -> None:  # type: ignore[no-untyped-def]
    target = create_target(client, auth, f"{reference_url}/v1")
    cert_id = queue(factory, settings, auth, target)
    assert run_inline(factory, settings, cert_id) == "succeeded"
    url = f"/v1/certifications/{cert_id}"
    stream = client.get(f"{url}/evidence", headers=auth).get_data(as_text=True)
    lines = [json.loads(line) for line in stream.splitlines()]
    pages, cursor = [], None
    while True:
        query = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        r = client.get(f"{url}/samples", headers=auth, query_string=query)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        assert len(body["items"]) <= 4
        pages += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == lines  # the same lines, in the same order
    chat = client.get(f"{url}/samples", headers=auth, query_string={"check": "chat"}).get_json()
    assert [s["check"] for s in chat["items"]] == ["chat"] * 10 and chat["next_cursor"] is None
    bad = client.get(f"{url}/samples", headers=auth, query_string={"cursor": "bm9wZQ"})
    assert_problem(bad, 422)
    assert_problem(client.get(f"{url}/samples", headers=auth, query_string={"limit": 0}), 422)
    other = {"Authorization": f"Bearer {make_token(factory, f'o-{uuid.uuid4().hex[:8]}')}"}
    assert_problem(client.get(f"{url}/samples", headers=other), 404)
    assert_problem(client.get("/v1/certifications/nope/samples", headers=auth), 404)
