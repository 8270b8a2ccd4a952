"""PATCH and DELETE /v1/targets/{id}: rename, merge capabilities (superseding the target's
certificates) and limits; soft delete (404 after, certifications kept for audit, no new
certification of any kind, a queued job fails with a clear cause). Another organization's
target is a 404; bad bodies are 422 problem+json."""

from __future__ import annotations

import uuid

import pytest

from tests.support.jobs import run_inline
from tests.support.rows import job_row, new_org, queued_job


def problem(response, status: int) -> dict:  # type: ignore[no-untyped-def, type-arg]
    assert response.status_code == status, (response.status_code, response.get_json())
    assert response.mimetype == "application/problem+json"
    return response.get_json()  # type: ignore[no-any-return]


@pytest.fixture()
def org(factory):  # type: ignore[no-untyped-def]
    token, who = new_org(factory)
    return {"Authorization": f"Bearer {token}"}, who


def create(client, headers, base_url: str = "http://127.0.0.1:9/v1", **fields) -> dict:  # type: ignore[no-untyped-def, type-arg]
    body = {
        "name": f"t-{uuid.uuid4().hex[:8]}",
        "model": "reference-model",
        "base_url": base_url,
        "capabilities": {"context_length": 4096, "tools": False},
        "rate_limit": {"rps": 5, "max_concurrency": 4},
    } | fields
    r = client.post("/v1/targets", json=body, headers=headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()  # type: ignore[no-any-return]


def test_rename_and_merge(client, org) -> None:  # type: ignore[no-untyped-def]
    headers, _ = org
    target = create(client, headers)
    path = f"/v1/targets/{target['id']}"
    r = client.patch(
        path,
        json={
            "name": "renamed",
            "capabilities": {"tools": True},
            "rate_limit": {"rps": 2},
            "recertify_before_days": 3,
        },
        headers=headers,
    )
    assert r.status_code == 200, r.get_json()
    view = r.get_json()
    assert view["name"] == "renamed" and view["recertify_before_days"] == 3
    assert view["capabilities"] | {"tools": True} == view["capabilities"]
    assert view["capabilities"]["context_length"] == 4096  # merged, not replaced
    assert view["rate_limit"] == {"rps": 2.0, "max_concurrency": 4}
    assert client.get(path, headers=headers).get_json() == view
    lifted = client.patch(path, json={"rate_limit": {"rps": None}}, headers=headers)
    assert lifted.get_json()["rate_limit"] == {"rps": None, "max_concurrency": 4}
    assert client.patch(path, json={}, headers=headers).get_json()["name"] == "renamed"


def test_bad_patches_are_422_and_clashes_409(client, org) -> None:  # type: ignore[no-untyped-def]
    headers, _ = org
    first, second = create(client, headers), create(client, headers)
    path = f"/v1/targets/{second['id']}"
    for body, loc in (
        ({"base_url": "http://127.0.0.1:10/v1"}, ["body", "base_url"]),
        ({"model": "other"}, ["body", "model"]),
        ({"name": ""}, ["body", "name"]),
        ({"capabilities": {"context_length": 1}}, ["body", "capabilities", "context_length"]),
        ({"rate_limit": {"rps": -1}}, ["body", "rate_limit", "rps"]),
        ({"name": None}, ["body"]),
    ):
        body_problem = problem(client.patch(path, json=body, headers=headers), 422)
        assert body_problem["errors"][0]["loc"] == loc, (body, body_problem)
    problem(client.patch(path, json={"name": first["name"]}, headers=headers), 409)
    problem(client.patch(path, data="{", content_type="application/json", headers=headers), 400)
    assert client.get(path, headers=headers).get_json()["name"] == second["name"]


def test_another_organizations_target_is_404(client, org, factory) -> None:  # type: ignore[no-untyped-def]
    headers, _ = org
    target = create(client, headers)
    path = f"/v1/targets/{target['id']}"
    token, _ = new_org(factory)
    other = {"Authorization": f"Bearer {token}"}
    problem(client.patch(path, json={"name": "mine-now"}, headers=other), 404)
    problem(client.delete(path, headers=other), 404)
    for unknown in (f"/v1/targets/{uuid.uuid4()}", "/v1/targets/not-an-id"):
        problem(client.patch(unknown, json={"name": "x"}, headers=headers), 404)
        problem(client.delete(unknown, headers=headers), 404)
    assert client.get(path, headers=headers).get_json()["name"] == target["name"]


def certified(client, headers, factory, settings, who, target_id: str) -> str:  # type: ignore[no-untyped-def]
    cert = queued_job(factory, settings, who, uuid.UUID(target_id))
    assert run_inline(factory, settings, cert, "target-changes") == "succeeded"
    assert (
        client.get(f"/v1/certifications/{cert}", headers=headers).get_json()["verdict"]
        == "certified"
    )
    return cert


def test_a_capabilities_change_supersedes_the_certificates(
    client,
    org,
    factory,
    settings,  # type: ignore[no-untyped-def]
    reference_url,
) -> None:
    headers, who = org
    target = create(client, headers, f"{reference_url}/v1")
    path = f"/v1/targets/{target['id']}"
    cert = certified(client, headers, factory, settings, who, target["id"])
    assert client.get(f"{path}/certificate", headers=headers).status_code == 200
    # A rename, a new limit, capabilities as they are: the claims still hold.
    for body in (
        {"name": "still-certified"},
        {"rate_limit": {"rps": 1}},
        {"capabilities": {"tools": False, "context_length": 4096}},
    ):
        assert client.patch(path, json=body, headers=headers).status_code == 200
        assert client.get(f"{path}/certificate", headers=headers).status_code == 200, body
    assert (
        client.patch(path, json={"capabilities": {"tools": True}}, headers=headers).status_code
        == 200
    )
    problem(client.get(f"{path}/certificate", headers=headers), 404)
    own = client.get(f"/v1/certifications/{cert}/certificate", headers=headers)
    assert own.status_code == 200 and own.get_json()["status"] == "superseded", own.get_json()


def test_delete_is_soft_and_final(client, org, factory, settings, reference_url) -> None:  # type: ignore[no-untyped-def]
    headers, who = org
    target = create(client, headers, f"{reference_url}/v1")
    path = f"/v1/targets/{target['id']}"
    done = certified(client, headers, factory, settings, who, target["id"])
    waiting = queued_job(factory, settings, who, uuid.UUID(target["id"]))
    cancelled = queued_job(factory, settings, who, uuid.UUID(target["id"]))
    assert client.post(f"/v1/certifications/{cancelled}/cancel", headers=headers).status_code == 200

    r = client.delete(path, headers=headers)
    assert r.status_code == 204 and r.get_data() == b""
    problem(client.get(path, headers=headers), 404)
    problem(client.delete(path, headers=headers), 404)
    problem(client.patch(path, json={"name": "back"}, headers=headers), 404)
    problem(client.get(f"{path}/certificate", headers=headers), 404)
    assert target["id"] not in {
        t["id"] for t in client.get("/v1/targets", headers=headers).get_json()["items"]
    }
    # No new certification of any kind.
    problem(
        client.post("/v1/certifications", json={"target_id": target["id"]}, headers=headers), 404
    )
    problem(client.post(f"/v1/certifications/{cancelled}/retry", headers=headers), 409)
    # What it did stays readable, for audit.
    assert client.get(f"/v1/certifications/{done}", headers=headers).status_code == 200
    assert client.get(f"/v1/certifications/{done}/certificate", headers=headers).status_code == 200
    assert client.get(f"/v1/certifications/{done}/results", headers=headers).status_code == 200
    # A job queued before the delete fails when a worker claims it, saying why.
    assert run_inline(factory, settings, waiting, "target-changes") == "failed"
    row = job_row(factory, waiting)
    assert row.error_cause == "invalid_target" and row.error_message == "the target was deleted"
    # Its name is free again.
    create(client, headers, name=target["name"])
