"""A model the endpoint does not list stops the certification, also across a redelivery."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from app.db.models import CheckResultRow
from tests.support.jobs import queue, run_inline


def stored(factory, cert_id: str) -> dict[str, CheckResultRow]:  # type: ignore[no-untyped-def]
    with factory() as session:
        rows = session.scalars(
            select(CheckResultRow).where(CheckResultRow.certification_id == uuid.UUID(cert_id))
        ).all()
    return {r.check_name: r for r in rows}


def test_a_redelivered_job_stays_stopped(
    client,
    auth,
    factory,
    settings,  # type: ignore[no-untyped-def]
    reference_url,
) -> None:
    r = client.post(
        "/v1/targets",
        json={
            "name": f"t-{uuid.uuid4().hex[:8]}",
            "model": "gpt-bogus",
            "base_url": f"{reference_url}/m/any-model/v1",
        },
        headers=auth,
    )
    assert r.status_code == 201, r.get_json()
    cert_id = queue(factory, settings, auth, r.get_json()["id"])
    # The first delivery stores connectivity, then its worker shuts down: the job goes back.
    first = run_inline(
        factory,
        settings,
        cert_id,
        "first",
        shutting_down=lambda: "connectivity" in stored(factory, cert_id),
    )
    assert first == "released"
    assert set(stored(factory, cert_id)) == {"connectivity"}
    # The next delivery skips what is left: no chat is sent under a name the server lacks.
    assert run_inline(factory, settings, cert_id) == "succeeded"
    checks = stored(factory, cert_id)
    assert checks["connectivity"].details["cause"] == "model_not_listed"
    assert checks["chat"].outcome.value == "skipped"
    assert "does not list model 'gpt-bogus'" in checks["chat"].details["reason"]
    job = client.get(f"/v1/certifications/{cert_id}", headers=auth).get_json()
    assert job["verdict"] == "not_certified"
