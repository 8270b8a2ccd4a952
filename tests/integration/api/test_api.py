"""The REST API on real Postgres and Redis: status codes and problem+json bodies."""

from __future__ import annotations

import uuid

import pytest

PROBLEM = "application/problem+json"


def target_body(reference_base: str = "http://127.0.0.1:8100/v1", **over: object) -> dict:
    return {
        "name": f"t-{uuid.uuid4().hex[:8]}",
        "model": "reference-model",
        "base_url": reference_base,
        **over,
    }


@pytest.fixture()
def target_id(client, auth) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/v1/targets", json=target_body(), headers=auth)
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def assert_problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status and body["type"] and body["title"] and "detail" in body
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_probes_and_openapi_need_no_token(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/live").status_code == 200
    assert client.get("/ready").status_code == 200
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/v1/certifications" in spec["paths"]
    assert client.get("/docs/swagger").status_code == 200
    assert b"modelcert_api_requests_total" in client.get("/metrics").data


def test_v1_needs_a_token(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/certifications")
    body = assert_problem(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "token" in body["detail"]
    assert_problem(
        client.get("/v1/certifications", headers={"Authorization": "Bearer mc_nope"}), 401
    )


def test_create_and_read_target(client, auth) -> None:  # type: ignore[no-untyped-def]
    body = target_body(
        capabilities={"tools": True, "context_length": 8192},
        rate_limit={"rps": 5, "max_concurrency": 4},
    )
    r = client.post("/v1/targets", json=body, headers=auth)
    assert r.status_code == 201
    created = r.get_json()
    assert r.headers["Location"] == f"/v1/targets/{created['id']}"
    got = client.get(f"/v1/targets/{created['id']}", headers=auth).get_json()
    assert got["capabilities"]["tools"] is True and got["rate_limit"]["max_concurrency"] == 4
    assert_problem(client.post("/v1/targets", json=body, headers=auth), 409)


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "m", "base_url": "http://x/v1"},  # name missing
        {"name": "a", "model": "m"},  # no endpoint
        {"name": "a", "model": "m", "base_url": "ftp://x/v1"},
        {"name": "a", "model": "m", "base_url": "http://user:pw@x/v1"},
        {"name": "a", "model": "m", "base_url": "http://x:99999/v1"},
        {"name": "a", "model": "m", "base_url": "http:///v1"},
        {"name": "a", "model": "m", "base_url": "http://x/v1", "provider": "other"},
        {"name": "a", "model": "m", "base_url": "http://x/v1", "unknown": 1},
        {"name": "a", "model": "m", "base_url": "http://x/v1", "rate_limit": {"rps": -1}},
        {"name": "", "model": "m", "base_url": "http://x/v1"},
        ["not", "an", "object"],
        "string",
        None,
    ],
)
def test_target_schema_violations_are_422(client, auth, bad) -> None:  # type: ignore[no-untyped-def]
    body = assert_problem(client.post("/v1/targets", json=bad, headers=auth), 422)
    assert body["errors"] and all("loc" in e and "msg" in e for e in body["errors"])


@pytest.mark.parametrize("raw", [b"{bad json", b'{"a": ', b"\xff\xfe", b"[1,2"])
def test_malformed_json_is_400(client, auth, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    for path in ("/v1/targets", "/v1/certifications"):
        assert_problem(
            client.post(path, data=raw, headers={**auth, "Content-Type": "application/json"}), 400
        )


def test_wrong_content_type_is_415(client, auth) -> None:  # type: ignore[no-untyped-def]
    assert_problem(
        client.post(
            "/v1/targets",
            data="name=x",
            headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
    )


def test_body_over_1_mib_is_413(client, auth) -> None:  # type: ignore[no-untyped-def]
    big = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    assert_problem(
        client.post(
            "/v1/certifications", data=big, headers={**auth, "Content-Type": "application/json"}
        ),
        413,
    )


@pytest.mark.parametrize(
    "ident", [str(uuid.uuid4()), "not-a-uuid", "1", "%20", "00000000-0000-0000-0000-000000000000"]
)
def test_unknown_ids_are_404(client, auth, ident: str) -> None:  # type: ignore[no-untyped-def]
    assert_problem(client.get(f"/v1/certifications/{ident}", headers=auth), 404)
    assert_problem(client.get(f"/v1/targets/{ident}", headers=auth), 404)


def test_wrong_method_is_405_with_allow(client, auth) -> None:  # type: ignore[no-untyped-def]
    r = client.delete("/v1/certifications", headers=auth)
    assert_problem(r, 405)
    assert "GET" in r.headers["Allow"] and "POST" in r.headers["Allow"]


def test_unknown_route_is_404(client, auth) -> None:  # type: ignore[no-untyped-def]
    assert_problem(client.get("/v1/nothing-here", headers=auth), 404)


def test_create_certification_is_202_with_location(client, auth, target_id) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/certifications", json={"target_id": target_id}, headers=auth)
    assert r.status_code == 202
    body = r.get_json()
    assert body["status"] == "queued" and body["suite"]["name"] == "smoke"
    assert body["suite"]["content_hash"].startswith("sha256:")
    assert r.headers["Location"] == f"/v1/certifications/{body['id']}"
    assert body["timings"]["dispatched_at"] is not None  # published after commit
    got = client.get(r.headers["Location"], headers=auth).get_json()
    assert got["id"] == body["id"]


@pytest.mark.parametrize(
    "bad",
    [
        {"target_id": "nope"},
        {},
        {"target_id": str(uuid.uuid4()), "priority": "urgent"},
        {"target_id": str(uuid.uuid4()), "suite": "Bad Suite!"},
        {"target_id": str(uuid.uuid4()), "extra": True},
    ],
)
def test_certification_schema_violations_are_422(client, auth, bad) -> None:  # type: ignore[no-untyped-def]
    assert_problem(client.post("/v1/certifications", json=bad, headers=auth), 422)


def test_unknown_target_or_suite(client, auth, target_id) -> None:  # type: ignore[no-untyped-def]
    assert_problem(
        client.post("/v1/certifications", json={"target_id": str(uuid.uuid4())}, headers=auth), 404
    )
    body = assert_problem(
        client.post(
            "/v1/certifications",
            json={"target_id": target_id, "suite": "nosuchsuite"},
            headers=auth,
        ),
        422,
    )
    assert body["errors"][0]["loc"] == ["body", "suite"]


def test_idempotency_key(client, auth, target_id) -> None:  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = client.post(
        "/v1/certifications", json={"target_id": target_id}, headers={**auth, **key}
    )
    again = client.post(
        "/v1/certifications", json={"target_id": target_id}, headers={**auth, **key}
    )
    assert first.status_code == again.status_code == 202
    assert first.get_json()["id"] == again.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post(
        "/v1/certifications",
        json={"target_id": target_id, "priority": "high"},
        headers={**auth, **key},
    )
    assert_problem(other, 422)


def test_list_filters_and_cursor_pagination(client, auth, target_id) -> None:  # type: ignore[no-untyped-def]
    ids = {
        client.post("/v1/certifications", json={"target_id": target_id}, headers=auth).get_json()[
            "id"
        ]
        for _ in range(5)
    }
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": 2, "target_id": target_id} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/certifications", query_string=query, headers=auth).get_json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(seen) == ids and len(seen) == len(ids)
    queued = client.get(
        "/v1/certifications",
        query_string={"status": "succeeded", "target_id": target_id},
        headers=auth,
    ).get_json()
    assert queued["items"] == []
    assert_problem(
        client.get("/v1/certifications", query_string={"status": "bogus"}, headers=auth), 422
    )
    assert_problem(
        client.get("/v1/certifications", query_string={"cursor": "!!!"}, headers=auth), 422
    )
    assert_problem(client.get("/v1/certifications", query_string={"limit": 0}, headers=auth), 422)


def test_other_organization_sees_nothing(client, auth, factory, target_id) -> None:  # type: ignore[no-untyped-def]
    from tests.support.rows import make_token

    cert = client.post("/v1/certifications", json={"target_id": target_id}, headers=auth).get_json()
    other = {"Authorization": f"Bearer {make_token(factory, 'other-' + uuid.uuid4().hex[:6])}"}
    assert_problem(client.get(f"/v1/targets/{target_id}", headers=other), 404)
    assert_problem(client.get(f"/v1/certifications/{cert['id']}", headers=other), 404)
    assert client.get("/v1/certifications", headers=other).get_json()["items"] == []
    assert client.get("/v1/targets", headers=other).get_json()["items"] == []
    assert_problem(
        client.post("/v1/certifications", json={"target_id": target_id}, headers=other), 404
    )
