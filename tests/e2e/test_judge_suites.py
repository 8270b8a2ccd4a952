"""The support-bot example (a `judge` grader) through the API and a real worker: the judge
is another registered target (the reference endpoint's judge mode). A good endpoint is
certified, a parrot is not, and a judge that passes everything fails its calibration."""

from __future__ import annotations

import json

import pytest

from tests.support.api import certify, create_target, upload, wait_terminal


@pytest.fixture(scope="module")
def runs(app, factory, reference_url, worker):  # type: ignore[no-untyped-def]
    from tests.support.rows import make_token

    client = app.test_client()
    auth = {"Authorization": f"Bearer {make_token(factory, 'org-judge-suites')}"}
    suite = upload(client, auth, "support-bot.yaml")["ref"]
    judges = {
        mode: create_target(client, auth, f"{reference_url}/m/{mode}/v1")
        for mode in ("judge", "judge-lenient", "broken")
    }
    cases = {
        "good": ("good", "judge"),
        "parrot": ("parrot", "judge"),
        "wrong": ("wrong", "judge"),
        "lenient-judge": ("good", "judge-lenient"),
        "broken-judge": ("good", "broken"),
    }
    queued = {}
    for case, (mode, judge) in cases.items():
        target = create_target(client, auth, f"{reference_url}/m/{mode}/v1")
        queued[case] = certify(client, auth, target, suite=suite, judges={"grader": judges[judge]})
    done = {case: wait_terminal(client, auth, job, timeout=120) for case, job in queued.items()}
    return client, auth, done


@pytest.mark.parametrize(
    ("case", "verdict", "outcome"),
    [
        ("good", "certified", "passed"),
        ("parrot", "not_certified", "failed"),
        ("wrong", "not_certified", "failed"),
        ("lenient-judge", "inconclusive", "errored"),
        ("broken-judge", "inconclusive", "errored"),
    ],
)
def test_the_support_bot_suite_gets_its_verdicts(
    runs, case: str, verdict: str, outcome: str
) -> None:  # type: ignore[no-untyped-def]
    _, _, done = runs
    job = done[case]
    assert (job["status"], job["verdict"]) == ("succeeded", verdict), job
    (check,) = job["checks"]
    assert check["outcome"] == outcome, check


def test_an_uncalibrated_judge_errors_the_check_and_says_which_items(runs) -> None:  # type: ignore[no-untyped-def]
    client, auth, done = runs
    job = done["lenient-judge"]
    (check,) = job["checks"]
    assert check["total"] == 0  # no candidate sample is sent for a judge that cannot count
    assert "judge 'grader' is not calibrated: it misgraded 2 of 4" in check["explanation"]
    assert "bad-wrong-deadline (expected fail, judged pass)" in check["explanation"]
    results = client.get(f"/v1/certifications/{job['id']}/results", headers=auth).get_json()
    details = results["checks"][0]["details"]
    assert details["cause"] == "judge_uncalibrated"
    assert details["judge"]["calibration"]["misgraded"] == ["bad-wrong-deadline", "bad-evasive"]
    cert = client.get(f"/v1/certifications/{job['id']}/certificate", headers=auth).get_json()
    (signed,) = cert["payload"]["checks"]
    assert signed["cause"] == "judge_uncalibrated"
    assert signed["judge"]["calibration"]["passed"] is False
    broken = client.get(f"/v1/certifications/{done['broken-judge']['id']}", headers=auth)
    assert "could not grade 4 of 4" in broken.get_json()["checks"][0]["explanation"]


def test_each_judgement_is_evidence_and_the_calibration_is_signed(runs) -> None:  # type: ignore[no-untyped-def]
    client, auth, done = runs
    job = done["good"]
    cert = client.get(f"/v1/certifications/{job['id']}/certificate", headers=auth).get_json()
    (signed,) = cert["payload"]["checks"]
    assert signed["judge"] == {
        "name": "grader",
        "provider": "openai_compatible",
        "model": "reference-model",
        "calibration": {
            "passed": True,
            "items": 4,
            "agreed": 4,
            "misgraded": [],
            "errored": [],
        },
    }
    lines = client.get(f"/v1/certifications/{job['id']}/evidence", headers=auth).data
    samples = [json.loads(line) for line in lines.decode().splitlines()]  # a line a sample
    assert len(samples) == 12
    judged = samples[0]["detail"]["judge"]
    assert judged["grade"] == "pass" and judged["name"] == "grader"
    assert "<reference>" in judged["prompt"] and "<answer>" in judged["prompt"]
    assert json.loads(judged["verdict"])["grade"] == "pass"
    assert judged["reason"]
    results = client.get(f"/v1/certifications/{job['id']}/results", headers=auth).get_json()
    calibration = results["checks"][0]["details"]["judge"]["calibration"]
    assert [(r["id"], r["expected"], r["grade"]) for r in calibration["results"]] == [
        ("good-returns", "pass", "pass"),
        ("good-shipping", "pass", "pass"),
        ("bad-wrong-deadline", "fail", "fail"),
        ("bad-evasive", "fail", "fail"),
    ]


def test_a_parrot_fails_by_the_echo_rule_or_the_judge(runs) -> None:  # type: ignore[no-untyped-def]
    client, auth, done = runs
    job = done["parrot"]
    lines = client.get(f"/v1/certifications/{job['id']}/evidence", headers=auth).data
    samples = [json.loads(line) for line in lines.decode().splitlines()]
    assert {s["grade"] for s in samples} == {"fail"}
    reasons = {s["detail"]["reason"] for s in samples}
    assert reasons <= {"echoed_prompt", "judged_fail"}
    echoed = [s for s in samples if s["detail"]["reason"] == "echoed_prompt"]
    assert all(s["detail"]["judge"]["asked"] is False for s in echoed)
