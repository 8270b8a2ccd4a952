"""A job whose suite is graded by a judge model, run by the real run service in process: the
worker loads the judge target and its secret with the job, redacts the judge's key like the
target's, fails the job when the judge target is gone, and a re-certification keeps the
binding."""

from __future__ import annotations

import io
import json
import uuid

from sqlalchemy import func, select, text, update

from app.db.models import Certificate, Certification, SampleRow, Target
from app.db.session import transaction
from app.schemas.resources import CertificationCreate
from app.services import certifications
from app.services.recertify import recertify
from tests.support import ROOT
from tests.support.jobs import principal, run_inline

EXAMPLES = ROOT / "docs" / "suites"
# The judge's key, chosen to be a phrase the certified model's answers hold: were the judge's
# key not redacted like the target's, it would be in the evidence (reply and judge prompt).
JUDGE_KEY = "within 30 days of delivery"


def upload(client, auth) -> str:  # type: ignore[no-untyped-def]
    data = {
        name: (io.BytesIO((EXAMPLES / file).read_bytes()), file)
        for name, file in (
            ("suite", "support-bot.yaml"),
            ("support-bot.jsonl", "support-bot.jsonl"),
        )
    }
    r = client.post("/v1/suites", data=data, headers=auth, content_type="multipart/form-data")
    assert r.status_code in (200, 201), r.get_json()
    return str(r.get_json()["ref"])


def target(client, auth, base_url: str, **extra) -> str:  # type: ignore[no-untyped-def]
    body = {"name": f"t-{uuid.uuid4().hex[:8]}", "model": "reference-model", "base_url": base_url}
    r = client.post("/v1/targets", json=body | extra, headers=auth)
    assert r.status_code == 201, r.get_json()
    return str(r.get_json()["id"])


def judged_job(client, auth, factory, settings, reference_url, **judge_extra):  # type: ignore[no-untyped-def]
    suite = upload(client, auth)
    bot = target(client, auth, f"{reference_url}/m/good/v1")
    judge = target(client, auth, f"{reference_url}/m/judge/v1", **judge_extra)
    view, _ = certifications.create_certification(
        factory,
        settings,
        lambda *_: False,
        principal(factory, auth),
        CertificationCreate(
            target_id=uuid.UUID(bot), suite=suite, judges={"grader": uuid.UUID(judge)}
        ),
        None,
    )
    return str(view.id), bot, judge


def test_the_worker_runs_the_judge_with_its_secret_redacted(  # type: ignore[no-untyped-def]
    client, auth, factory, settings, reference_url
) -> None:
    secret = client.post(
        "/v1/secrets",
        json={"name": f"judge-{uuid.uuid4().hex[:6]}", "value": JUDGE_KEY},
        headers=auth,
    ).get_json()["id"]
    job, _, _ = judged_job(client, auth, factory, settings, reference_url, secret_id=secret)
    assert run_inline(factory, settings, job) == "succeeded"
    body = client.get(f"/v1/certifications/{job}", headers=auth).get_json()
    assert body["verdict"] == "certified", body
    with factory() as session:
        samples = session.scalars(
            select(SampleRow).where(SampleRow.certification_id == uuid.UUID(job))
        ).all()
    assert len(samples) == 12
    stored = json.dumps([(s.response_excerpt, s.detail) for s in samples])
    assert JUDGE_KEY not in stored and "[REDACTED]" in stored
    results = client.get(f"/v1/certifications/{job}/results", headers=auth).get_data(True)
    assert JUDGE_KEY not in results


def test_a_deleted_judge_target_fails_the_job(
    client, auth, factory, settings, reference_url
) -> None:  # type: ignore[no-untyped-def]
    job, _, judge = judged_job(client, auth, factory, settings, reference_url)
    assert client.delete(f"/v1/targets/{judge}", headers=auth).status_code == 204
    assert run_inline(factory, settings, job) == "failed"
    body = client.get(f"/v1/certifications/{job}", headers=auth).get_json()
    assert body["error"] == {
        "cause": "invalid_target",
        "message": "the target of judge 'grader' was deleted",
    }


def test_a_recertification_keeps_the_judge(client, auth, factory, settings, reference_url) -> None:  # type: ignore[no-untyped-def]
    job, bot, judge = judged_job(client, auth, factory, settings, reference_url)
    assert run_inline(factory, settings, job) == "succeeded"
    with transaction(factory) as session:
        session.execute(
            update(Certificate)
            .where(Certificate.certification_id == uuid.UUID(job))
            .values(valid_until=func.now() + text("interval '2 days'"))
        )
    recertify(factory, settings, lambda *_: True)
    with factory() as session:
        again = session.scalars(
            select(Certification).where(
                Certification.target_id == uuid.UUID(bot),
                Certification.reason == "recertification",
            )
        ).one()
    assert again.judges == {"grader": judge}
    assert run_inline(factory, settings, str(again.id)) == "succeeded"


def test_judge_calls_go_through_the_ssrf_guard(
    client, auth, factory, settings, reference_url
) -> None:  # type: ignore[no-untyped-def]
    """A judge target that now points at the cloud metadata address (as after a change the
    API would have refused, or DNS rebinding) is never connected to: the guard refuses the
    address, the judge cannot grade its calibration, and the check errors."""
    job, _, judge = judged_job(client, auth, factory, settings, reference_url)
    with transaction(factory) as session:
        session.execute(
            update(Target)
            .where(Target.id == uuid.UUID(judge))
            .values(base_url="http://169.254.169.254/v1")
        )
    assert run_inline(factory, settings, job) == "succeeded"
    body = client.get(f"/v1/certifications/{job}", headers=auth).get_json()
    assert body["verdict"] == "inconclusive"
    results = client.get(f"/v1/certifications/{job}/results", headers=auth).get_json()
    details = results["checks"][0]["details"]
    assert details["cause"] == "judge_uncalibrated"
    errors = [item["error"] for item in details["judge"]["calibration"]["results"]]
    assert len(errors) == 4 and all("blocked_address" in e for e in errors), errors
