"""A team's own suites through the API and a real worker: the worker loads the job's suite
from the database by its content hash and the documented examples get their verdicts."""

from __future__ import annotations

import pytest

from tests.support.api import certify, create_target, upload, wait_terminal


@pytest.fixture(scope="module")
def runs(app, factory, reference_url, worker):  # type: ignore[no-untyped-def]
    from tests.support.rows import make_token

    client = app.test_client()
    auth = {"Authorization": f"Bearer {make_token(factory, 'org-tenant-suites')}"}
    suites = {s: upload(client, auth, s) for s in ("knowledge.yaml", "extraction.yaml")}
    queued = {}
    for mode in ("good", "wrong"):
        target = create_target(
            client, auth, f"{reference_url}/m/{mode}/v1", capabilities={"json_schema": True}
        )
        for file, suite in suites.items():
            queued[mode, file] = certify(client, auth, target, suite=suite["ref"])
    done = {key: wait_terminal(client, auth, job, timeout=120) for key, job in queued.items()}
    return client, auth, suites, done


@pytest.mark.parametrize(
    ("mode", "file", "verdict"),
    [
        ("good", "knowledge.yaml", "certified"),
        ("wrong", "knowledge.yaml", "not_certified"),
        ("good", "extraction.yaml", "certified"),
        ("wrong", "extraction.yaml", "not_certified"),
    ],
)
def test_examples_get_their_verdicts(runs, mode: str, file: str, verdict: str) -> None:  # type: ignore[no-untyped-def]
    _, _, suites, done = runs
    job = done[mode, file]
    assert (job["status"], job["verdict"]) == ("succeeded", verdict), job
    assert job["suite"]["content_hash"] == suites[file]["content_hash"]


def test_the_certificate_signs_the_suite_and_the_sampling(runs) -> None:  # type: ignore[no-untyped-def]
    client, auth, suites, done = runs
    job = done["good", "knowledge.yaml"]
    cert = client.get(f"/v1/certifications/{job['id']}/certificate", headers=auth).get_json()
    payload = cert["payload"]
    assert payload["suite"]["content_hash"] == suites["knowledge.yaml"]["content_hash"]
    (check,) = payload["checks"]
    assert check["sampling"]["method"] == "beta-binomial-mixture-cs"
    assert check["sampling"]["n"] == check["total"] < 24
    results = client.get(f"/v1/certifications/{job['id']}/results", headers=auth).get_json()
    assert results["checks"][0]["details"]["sampling"]["stopped"] == "decided"
