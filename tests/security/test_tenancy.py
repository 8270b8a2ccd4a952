"""Every /v1 route, found in the app's URL map (so routes added later are covered): no token
-> 401 problem+json with WWW-Authenticate; another organization's token -> 404 for every
object route and no foreign item in any list; probes and /openapi.json need no token."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.support.rows import make_token

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def v1_routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1"):
            continue
        routes += [(rule.rule, m) for m in sorted(rule.methods or ()) if m in METHODS]
    return routes


@pytest.fixture(scope="module")
def owner(app, factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Organization A with one object of each kind."""
    from tests.support.api import certify

    client = app.test_client()
    headers = {"Authorization": f"Bearer {make_token(factory, f'a-{uuid.uuid4().hex[:8]}')}"}
    secret = client.post(
        "/v1/secrets", json={"name": "a-key", "value": "a-credential"}, headers=headers
    ).get_json()["id"]
    target = client.post(
        "/v1/targets",
        json={
            "name": "a-target",
            "model": "m",
            "base_url": "http://127.0.0.1:9/v1",
            "secret_id": secret,
        },
        headers=headers,
    ).get_json()["id"]
    cert = certify(client, headers, target)
    return {
        "headers": json.dumps(headers),
        "secret_id": secret,
        "target_id": target,
        "certification_id": cert,
    }


def fill(rule: str, ids: dict[str, str]) -> str:
    """Put A's object ids into the path; an unknown kind of id gets a fresh UUID (still 404)."""
    return PARAM.sub(lambda m: ids.get(m.group(1), str(uuid.uuid4())), rule)


def test_routes_are_found(app) -> None:  # type: ignore[no-untyped-def]
    found = {(r, m) for r, m in v1_routes(app)}
    assert ("/v1/targets", "POST") in found and ("/v1/secrets/<secret_id>", "DELETE") in found
    assert len(found) >= 10


def test_every_v1_route_needs_a_token(app, owner) -> None:  # type: ignore[no-untyped-def]
    from app.api.factory import PUBLIC_V1_PATHS

    client = app.test_client()
    for rule, method in v1_routes(app):
        if rule in PUBLIC_V1_PATHS:  # public keys for offline verification: no token, no data
            continue
        path = fill(rule, owner)
        for headers in (
            {},
            {"Authorization": "Bearer mc_not-a-token"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": "Bearer "},
        ):
            r = client.open(
                path, method=method, json={} if method != "GET" else None, headers=headers
            )
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.mimetype == "application/problem+json"
            assert r.headers["WWW-Authenticate"].startswith("Bearer"), (method, path)


def test_probes_and_openapi_need_no_token(client) -> None:  # type: ignore[no-untyped-def]
    for path in ("/live", "/ready", "/metrics", "/openapi.json", "/v1/signing-keys"):
        assert client.get(path).status_code == 200, path


def test_another_organization_sees_nothing(app, factory, owner) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    other = {"Authorization": f"Bearer {make_token(factory, f'b-{uuid.uuid4().hex[:8]}')}"}
    foreign = {owner[k] for k in ("secret_id", "target_id", "certification_id")}
    checked_objects = checked_lists = 0
    for rule, method in v1_routes(app):
        path = fill(rule, owner)
        if PARAM.search(rule):
            r = client.open(
                path, method=method, json={} if method != "GET" else None, headers=other
            )
            assert r.status_code == 404, (method, rule, r.status_code, r.get_data()[:300])
            checked_objects += 1
        elif method == "GET":
            r = client.get(path, headers=other)
            assert r.status_code == 200, (rule, r.status_code)
            text = r.get_data(as_text=True)
            assert not any(object_id in text for object_id in foreign), rule
            for filtered in (f"{path}?target_id={owner['target_id']}",):
                r = client.get(filtered, headers=other)
                assert not any(object_id in r.get_data(as_text=True) for object_id in foreign)
            checked_lists += 1
        else:
            # A create that names A's objects must not reach them.
            body = {
                "target_id": owner["target_id"],
                "secret_id": owner["secret_id"],
                "name": f"b-{uuid.uuid4().hex[:6]}",
                "model": "m",
                "base_url": "http://127.0.0.1:9/v1",
                "value": "x",
            }
            r = client.post(path, json=body, headers=other)
            assert r.status_code in (404, 422), (rule, r.status_code, r.get_data()[:300])
            assert not any(object_id in r.get_data(as_text=True) for object_id in foreign)
    assert checked_objects >= 4 and checked_lists >= 3
    # Nothing B did changed A's objects.
    mine = json.loads(owner["headers"])
    for kind, base in (
        ("secret_id", "/v1/secrets"),
        ("target_id", "/v1/targets"),
        ("certification_id", "/v1/certifications"),
    ):
        assert client.get(f"{base}/{owner[kind]}", headers=mine).status_code == 200, kind
