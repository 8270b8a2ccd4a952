"""Bad input is a 4xx problem+json, never a 500, and no log line quotes it: deeply nested
JSON (before and after authentication), a NUL in any string field or query parameter, a value
the database cannot store; statement parameters never appear in a database error."""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import String, bindparam, literal_column, select, text
from sqlalchemy.exc import DBAPIError

from app.config import Settings

MARKER = f"probe-{uuid.uuid4().hex}"


def nested(depth: int, kind: str = "array") -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def assert_problem(response, *statuses: int) -> dict:  # type: ignore[no-untyped-def, type-arg]
    assert response.status_code in statuses, (response.status_code, response.get_data()[:300])
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == response.status_code and body["type"].startswith("https://")
    return body  # type: ignore[no-any-return]


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("depth", [2000, 100_000])
def test_deep_nesting_is_400_before_authentication(client, caplog, kind: str, depth: int) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    r = client.post("/v1/targets", data=nested(depth, kind), content_type="application/json")
    body = assert_problem(r, 400)
    assert "nests deeper" in body["detail"]
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


def test_deep_nesting_is_400_with_a_token(client, auth) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/certifications",
        data=nested(2000, "object"),
        content_type="application/json",
        headers=auth,
    )
    assert_problem(r, 400)


def test_nesting_under_the_parser_limit_but_over_ours_is_400(client, auth) -> None:  # type: ignore[no-untyped-def]
    inner = nested(200, "object")
    r = client.post(
        "/v1/targets",
        data=f'{{"name": "x", "model": "m", "capabilities": {inner}}}',
        content_type="application/json",
        headers=auth,
    )
    assert_problem(r, 400)


def test_ordinary_nesting_still_passes(client, auth) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/targets",
        json={
            "name": f"t-{uuid.uuid4().hex[:8]}",
            "model": "m",
            "endpoints": {"eu": "http://127.0.0.1:9/v1"},
            "capabilities": {"streaming": False},
            "rate_limit": {"rps": 2},
        },
        headers=auth,
    )
    assert r.status_code == 201, r.get_json()


NUL = f"{MARKER}\x00tail"
TARGET = {"name": "nul-target", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
BODIES = [
    ("/v1/targets", TARGET | {"name": NUL}, ["body", "name"]),
    ("/v1/targets", TARGET | {"model": NUL}, ["body", "model"]),
    ("/v1/targets", TARGET | {"base_url": f"http://127.0.0.1:9/{NUL}"}, ["body", "base_url"]),
    (
        "/v1/targets",
        TARGET | {"endpoints": {"eu": f"http://127.0.0.1:9/{NUL}"}},
        ["body", "endpoints", "eu"],
    ),
    ("/v1/targets", TARGET | {"endpoints": {NUL: "http://127.0.0.1:9/v1"}}, ["body", "endpoints"]),
    (
        "/v1/targets",
        TARGET | {"capabilities": {"embedding_model": NUL}},
        ["body", "capabilities", "embedding_model"],
    ),
    ("/v1/targets", TARGET | {"region_queues": {"eu": NUL}}, ["body", "region_queues", "eu"]),
    ("/v1/secrets", {"name": "nul-secret", "value": NUL}, ["body", "value"]),
    ("/v1/secrets", {"name": NUL, "value": "v"}, ["body", "name"]),
    ("/v1/certifications", {"target_id": str(uuid.uuid4()), "suite": NUL}, ["body", "suite"]),
    ("/v1/certifications", {"target_id": NUL}, ["body", "target_id"]),
    (
        "/v1/webhooks",
        {"url": f"http://127.0.0.1:9/{NUL}", "events": ["certification.failed"]},
        ["body", "url"],
    ),
    ("/v1/webhooks", {"url": "http://127.0.0.1:9/h", "events": [NUL]}, ["body", "events", 0]),
]


@pytest.mark.parametrize(("path", "body", "loc"), BODIES)
def test_nul_in_a_string_field_is_422_naming_it(
    client,
    auth,
    caplog,
    path: str,
    body: dict,  # type: ignore[no-untyped-def, type-arg]
    loc: list,
) -> None:  # type: ignore[type-arg]
    caplog.set_level(logging.DEBUG)
    r = client.post(path, json=body, headers=auth)
    problem = assert_problem(r, 422)
    assert problem["errors"][0]["loc"] == loc
    assert MARKER not in log_text(caplog)


def test_nul_in_a_query_parameter_is_422(client, auth, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    for path in (f"/v1/certifications?cursor={MARKER}%00", f"/v1/targets?limit=1%00{MARKER}"):
        problem = assert_problem(client.get(path, headers=auth), 422)
        assert problem["errors"][0]["loc"][0] == "query"
    assert MARKER not in log_text(caplog)


@pytest.fixture(scope="module")
def probe_app(settings: Settings):  # type: ignore[no-untyped-def]
    """The app with one extra route that sends a request value to the database as is."""
    from flask import request

    from app import create_app
    from app.api.deps import deps

    app = create_app(settings)

    def store() -> str:
        with deps().engine.connect() as conn:
            conn.execute(text("SELECT CAST(:value AS integer)"), {"value": request.args["v"]})
        return "stored"

    app.add_url_rule("/_probe/store", "probe_store", store)
    return app


def test_a_value_the_database_refuses_is_400_and_not_logged(probe_app, caplog) -> None:  # type: ignore[no-untyped-def]
    """The safety net behind validation: SQLSTATE class 22 is the request's fault."""
    caplog.set_level(logging.DEBUG)
    r = probe_app.test_client().get(f"/_probe/store?v={MARKER}")
    assert_problem(r, 400)
    assert MARKER not in log_text(caplog)
    assert any(
        rec.getMessage() == "unstorable_value" and rec.sqlstate == "22P02"  # type: ignore[attr-defined]
        for rec in caplog.records
    )


def test_database_errors_never_carry_statement_parameters(settings: Settings) -> None:
    """Both ways statements run (SQLAlchemy, and direct.Hot on the DBAPI cursor): a failed
    statement's error (what a log line or traceback would show) omits its parameters."""
    from app.db.direct import Hot
    from app.db.session import autocommit_engine, make_engine

    engine = make_engine(str(settings.database_url), pool_size=1)
    try:
        with pytest.raises(DBAPIError) as raised, engine.connect() as conn:
            conn.execute(text("SELECT 1 / 0, CAST(:value AS text)"), {"value": MARKER})
        assert MARKER not in str(raised.value) and "parameters hidden" in str(raised.value)

        hot = Hot(
            select(
                literal_column("1 / 0").label("quotient"),
                bindparam("value", type_=String).label("value"),
            )
        )
        with pytest.raises(DBAPIError) as raised:
            hot.first(autocommit_engine(engine), {"value": MARKER})
        assert MARKER not in str(raised.value) and "parameters hidden" in str(raised.value)
    finally:
        engine.dispose()
