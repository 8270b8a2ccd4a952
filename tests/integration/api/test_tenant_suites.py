"""POST /v1/suites: a team's own suites, immutable versions, isolation, limits, schema."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import yaml

from app.certification.suites.documents import load_path
from tests.support.rows import make_token

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "suites"
YAML = {"Content-Type": "application/yaml"}


def suite_yaml(name: str = "mine", version: str = "1.0.0", answer: str = "Paris") -> bytes:
    return yaml.safe_dump(
        {
            "name": name,
            "version": version,
            "datasets": {"qa": {"rows": [{"question": "Capital of France?", "answer": answer}]}},
            "checks": [
                {
                    "name": "dataset",
                    "id": "capitals",
                    "params": {
                        "dataset": "qa",
                        "prompt": {"user": "{question}"},
                        "grader": {"type": "exact", "answer": "{answer}"},
                    },
                }
            ],
        },
        sort_keys=False,
    ).encode()


def post(client, auth, body: bytes, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return client.post("/v1/suites", data=body, headers={**auth, **(headers or YAML)})


def names(client, auth) -> set[str]:  # type: ignore[no-untyped-def]
    return {s["ref"] for s in client.get("/v1/suites", headers=auth).get_json()["items"]}


def test_a_version_is_stored_once_and_never_changes(client, auth) -> None:  # type: ignore[no-untyped-def]
    name = f"mine-{uuid.uuid4().hex[:6]}"
    first = post(client, auth, suite_yaml(name))
    assert first.status_code == 201, first.get_json()
    body = first.get_json()
    assert body["ref"] == f"{name}@1.0.0" and body["builtin"] is False
    assert first.headers["Location"] == f"/v1/suites/{name}@1.0.0"
    # The same content, in JSON this time: the same suite.
    as_json = json.dumps(yaml.safe_load(suite_yaml(name))).encode()
    again = post(client, auth, as_json, {"Content-Type": "application/json"})
    assert again.status_code == 200 and again.get_json()["content_hash"] == body["content_hash"]
    changed = post(client, auth, suite_yaml(name, answer="Lyon"))
    assert changed.status_code == 409
    assert "immutable" in changed.get_json()["detail"]
    newer = post(client, auth, suite_yaml(name, "1.1.0", answer="Lyon"))
    assert newer.status_code == 201
    assert {f"{name}@1.0.0", f"{name}@1.1.0", "standard@2.1.0"} <= names(client, auth)
    latest = client.get(f"/v1/suites/{name}", headers=auth).get_json()
    assert latest["version"] == "1.1.0"
    pinned = client.get(f"/v1/suites/{name}@1.0.0", headers=auth).get_json()
    assert pinned["content_hash"] == body["content_hash"]


def test_another_organization_never_sees_them(client, auth, factory) -> None:  # type: ignore[no-untyped-def]
    name = f"private-{uuid.uuid4().hex[:6]}"
    assert post(client, auth, suite_yaml(name)).status_code == 201
    other = {"Authorization": f"Bearer {make_token(factory, f'org-{uuid.uuid4().hex[:8]}')}"}
    assert client.get(f"/v1/suites/{name}", headers=other).status_code == 404
    assert client.get(f"/v1/suites/{name}@1.0.0", headers=other).status_code == 404
    assert not {n for n in names(client, other) if n.startswith(name)}
    # The other organization may store the same name for itself.
    assert post(client, other, suite_yaml(name, answer="Lyon")).status_code == 201


def test_bad_input_is_422_with_paths_and_nothing_is_stored(client, auth) -> None:  # type: ignore[no-untyped-def]
    name = f"bad-{uuid.uuid4().hex[:6]}"
    doc = yaml.safe_load(suite_yaml(name))
    doc["checks"][0]["params"]["prompt"]["user"] = "{question} {nope}"
    doc["checks"].append({"name": "no_such_check"})
    r = post(client, auth, yaml.safe_dump(doc, sort_keys=False).encode())
    assert r.status_code == 422
    errors = r.get_json()["errors"]
    assert errors[0]["loc"] == ["body", "checks", 0, "params", "prompt"]
    assert "has no field 'nope'" in errors[0]["msg"] and errors[0]["line"]
    assert errors[1]["loc"] == ["body", "checks", 1, "name"]
    doc = yaml.safe_load(suite_yaml(name))
    doc["queue"] = "certification:0"  # nothing operational in a tenant's suite
    r = post(client, auth, yaml.safe_dump(doc).encode())
    assert r.status_code == 422 and r.get_json()["errors"][0]["loc"] == ["body", "queue"]
    r = post(client, auth, b"name: [unclosed\n")
    assert r.status_code == 422 and r.get_json()["errors"][0]["line"] == 2
    r = post(client, auth, b'{"name": ', {"Content-Type": "application/json"})
    assert r.status_code == 422 and "not JSON" in r.get_json()["errors"][0]["msg"]
    assert post(client, auth, b"x", {"Content-Type": "text/plain"}).status_code == 415
    assert not {n for n in names(client, auth) if n.startswith(name)}
    taken = post(client, auth, suite_yaml("standard"))
    assert taken.status_code == 409


def test_datasets_uploaded_beside_the_document(client, auth) -> None:  # type: ignore[no-untyped-def]
    raw = (EXAMPLES / "knowledge.yaml").read_bytes()
    rows = (EXAMPLES / "knowledge.jsonl").read_bytes()
    r = client.post(
        "/v1/suites",
        data={
            "suite": (io.BytesIO(raw), "knowledge.yaml"),
            "knowledge.jsonl": (io.BytesIO(rows), "knowledge.jsonl"),
        },
        headers=auth,
        content_type="multipart/form-data",
    )
    assert r.status_code in (200, 201), r.get_json()
    # The server's hash is the CLI's (modelcert suites validate).
    assert r.get_json()["content_hash"] == load_path(EXAMPLES / "knowledge.yaml").content_hash
    bad = client.post(
        "/v1/suites",
        data={
            "suite": (io.BytesIO(raw.replace(b"1.0.0", b"9.9.9")), "knowledge.yaml"),
            "knowledge.jsonl": (io.BytesIO(rows + b"{not json\n"), "knowledge.jsonl"),
        },
        headers=auth,
        content_type="multipart/form-data",
    )
    assert bad.status_code == 422
    error = bad.get_json()["errors"][0]
    assert error["loc"] == ["body", "datasets", "questions"]
    assert error["msg"].startswith("line 25 is not JSON")
    assert "knowledge@9.9.9" not in names(client, auth)


def test_limits_answer_413(client, auth) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(suite_yaml(f"big-{uuid.uuid4().hex[:6]}"))
    doc["description"] = "x" * (300 * 1024)  # over the document's 256 KiB
    r = post(client, auth, yaml.safe_dump(doc).encode())
    assert r.status_code == 413 and "262144 bytes" in r.get_json()["detail"]


def test_the_schema_is_published_and_validates_the_examples(client) -> None:  # type: ignore[no-untyped-def]
    from jsonschema import Draft202012Validator

    r = client.get("/v1/suites/schema")  # public: editors fetch it
    assert r.status_code == 200 and r.mimetype == "application/schema+json"
    schema = r.get_json()
    Draft202012Validator.check_schema(schema)
    for path in EXAMPLES.glob("*.yaml"):
        assert not list(Draft202012Validator(schema).iter_errors(yaml.safe_load(path.read_text())))
    bad = yaml.safe_load(suite_yaml())
    bad["checks"][0]["params"]["grader"]["type"] = "vibes"
    assert list(Draft202012Validator(schema).iter_errors(bad))


def test_a_certification_names_a_suite_by_name_or_version(
    client, auth, factory, reference_url
) -> None:  # type: ignore[no-untyped-def]
    from tests.support.api import create_target

    name = f"pinned-{uuid.uuid4().hex[:6]}"
    stored = post(client, auth, suite_yaml(name)).get_json()
    post(client, auth, suite_yaml(name, "2.0.0", answer="Lyon"))
    target = create_target(client, auth, f"{reference_url}/m/good/v1")
    for ref, hashed in ((f"{name}@1.0.0", stored["content_hash"]), (name, None)):
        r = client.post(
            "/v1/certifications", json={"target_id": target, "suite": ref}, headers=auth
        )
        assert r.status_code == 202, r.get_json()
        suite = r.get_json()["suite"]
        assert suite["name"] == name
        assert suite["version"] == ("1.0.0" if hashed else "2.0.0")
        if hashed:
            assert suite["content_hash"] == hashed
    for ref in (f"{name}@3.0.0", "standard@1.0.0", "nobody-has-this"):
        r = client.post(
            "/v1/certifications", json={"target_id": target, "suite": ref}, headers=auth
        )
        assert r.status_code == 422 and r.get_json()["errors"][0]["loc"] == ["body", "suite"]
    other = {"Authorization": f"Bearer {make_token(factory, f'org-{uuid.uuid4().hex[:8]}')}"}
    theirs = create_target(client, other, f"{reference_url}/m/good/v1")
    r = client.post("/v1/certifications", json={"target_id": theirs, "suite": name}, headers=other)
    assert r.status_code == 422


def test_the_regression_policy_is_validated_and_published(client, auth) -> None:  # type: ignore[no-untyped-def]
    """`regression: forbid | report` per check: in the published schema, refused otherwise
    with its path and line, and nothing stored."""
    from jsonschema import Draft202012Validator

    schema = client.get("/v1/suites/schema").get_json()
    name = f"policy-{uuid.uuid4().hex[:6]}"
    doc = yaml.safe_load(suite_yaml(name))
    doc["checks"][0]["regression"] = "forbid"
    assert not list(Draft202012Validator(schema).iter_errors(doc))
    doc["checks"][0]["regression"] = "never"
    assert list(Draft202012Validator(schema).iter_errors(doc))
    r = post(client, auth, yaml.safe_dump(doc, sort_keys=False).encode())
    assert r.status_code == 422
    (error,) = r.get_json()["errors"]
    assert error["loc"] == ["body", "checks", 0, "regression"] and error["line"]
    assert "'report' or 'forbid'" in error["msg"]
    assert name not in names(client, auth)
    doc["checks"][0]["regression"] = "forbid"
    assert post(client, auth, yaml.safe_dump(doc, sort_keys=False).encode()).status_code == 201
    detail = client.get(f"/v1/suites/{name}@1.0.0", headers=auth).get_json()
    assert detail["checks"][0]["regression"] == "forbid"
