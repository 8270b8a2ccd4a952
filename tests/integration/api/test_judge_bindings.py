"""POST /v1/certifications with a suite graded by a judge model: the judge must be bound to
another target of the same organization; a missing, unknown or foreign binding is a 422
with its path, checked before anything is stored."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db.models import Certification
from tests.support.rows import make_token

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "suites"


def upload_support_bot(client, auth) -> str:  # type: ignore[no-untyped-def]
    data = {
        "suite": (io.BytesIO((EXAMPLES / "support-bot.yaml").read_bytes()), "support-bot.yaml"),
        "support-bot.jsonl": (
            io.BytesIO((EXAMPLES / "support-bot.jsonl").read_bytes()),
            "support-bot.jsonl",
        ),
    }
    r = client.post("/v1/suites", data=data, headers=auth, content_type="multipart/form-data")
    assert r.status_code in (200, 201), r.get_json()
    return str(r.get_json()["ref"])


def target(client, auth, name: str) -> str:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/targets",
        json={
            "name": f"{name}-{uuid.uuid4().hex[:6]}",
            "model": "reference-model",
            "base_url": "https://judge.example.com/v1",
        },
        headers=auth,
    )
    assert r.status_code == 201, r.get_json()
    return str(r.get_json()["id"])


@pytest.fixture()
def setup(client, factory):  # type: ignore[no-untyped-def]
    auth = {"Authorization": f"Bearer {make_token(factory, f'org-judges-{uuid.uuid4().hex[:6]}')}"}
    suite = upload_support_bot(client, auth)
    return auth, suite, target(client, auth, "bot"), target(client, auth, "judge")


def jobs_of(factory, target_id: str) -> int:  # type: ignore[no-untyped-def]
    with factory() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Certification)
                .where(Certification.target_id == uuid.UUID(target_id))
            )
            or 0
        )


def test_the_judge_binding_is_stored_with_the_job(client, factory, setup) -> None:  # type: ignore[no-untyped-def]
    auth, suite, bot, judge = setup
    body = {"target_id": bot, "suite": suite, "judges": {"grader": judge}}
    r = client.post("/v1/certifications", json=body, headers=auth)
    assert r.status_code == 202, r.get_json()
    with factory() as session:
        row = session.get(Certification, uuid.UUID(r.get_json()["id"]))
        assert row is not None and row.judges == {"grader": judge}


@pytest.mark.parametrize(
    ("judges", "loc", "message"),
    [
        ({}, ["body", "judges"], "is graded by judge 'grader'"),
        ({"grader": "UNKNOWN"}, ["body", "judges", "grader"], "no such target"),
        ({"grader": "JUDGE", "other": "JUDGE"}, ["body", "judges", "other"], "names no judge"),
        ({"grader": "FOREIGN"}, ["body", "judges", "grader"], "no such target"),
    ],
)
def test_a_bad_judge_binding_is_422_with_its_path_and_stores_nothing(  # type: ignore[no-untyped-def]
    client, factory, setup, judges, loc, message
) -> None:
    auth, suite, bot, judge = setup
    other = {"Authorization": f"Bearer {make_token(factory, f'org-other-{uuid.uuid4().hex[:6]}')}"}
    ids = {"UNKNOWN": str(uuid.uuid4()), "JUDGE": judge, "FOREIGN": target(client, other, "x")}
    body = {
        "target_id": bot,
        "suite": suite,
        "judges": {name: ids[value] for name, value in judges.items()},
    }
    r = client.post("/v1/certifications", json=body, headers=auth)
    assert r.status_code == 422, r.get_json()
    problem = r.get_json()
    assert r.content_type == "application/problem+json"
    assert any(e["loc"] == loc and message in e["msg"] for e in problem["errors"]), problem
    assert jobs_of(factory, bot) == 0


def test_a_judge_for_a_suite_without_one_is_422(client, factory, setup) -> None:  # type: ignore[no-untyped-def]
    auth, _, bot, judge = setup
    body = {"target_id": bot, "suite": "smoke", "judges": {"grader": judge}}
    r = client.post("/v1/certifications", json=body, headers=auth)
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["loc"] == ["body", "judges", "grader"]
    assert jobs_of(factory, bot) == 0


def test_a_judge_name_that_is_no_name_is_422(client, setup) -> None:  # type: ignore[no-untyped-def]
    auth, suite, bot, judge = setup
    body = {"target_id": bot, "suite": suite, "judges": {"no spaces": judge}}
    r = client.post("/v1/certifications", json=body, headers=auth)
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["loc"][:2] == ["body", "judges"]
