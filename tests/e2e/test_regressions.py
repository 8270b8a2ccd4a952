"""Regressions through the API and a real worker: one endpoint certified as the good model,
then the same endpoint serving a worse one (the reference endpoint restarted in mode
degraded: 40 % of the prompts answered wrong). The drop is `regressed` in the results, the
webhook and the certificate; a suite that forbids it is not certified. And an endpoint that
became slower regresses its latency quantiles, by their separated intervals."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.certification.regressions import QUANTILE_METHOD
from app.devtools.harness import BIN, Proc, free_port, wait_http
from tests.support.api import certify, create_target, wait_terminal
from tests.support.rows import make_token
from tests.support.webhooks import Receiver


class Endpoint:
    """A reference endpoint of this module's own, on one port, whose model can be swapped."""

    def __init__(self, log: Path) -> None:
        self.port, self.log = free_port(), log
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def serve(self, mode: str, *options: str) -> None:
        self.stop()
        argv = [str(BIN / "modelcert"), "reference-endpoint", "--port", str(self.port)]
        self.proc = Proc([*argv, "--mode", mode, *options], dict(os.environ), self.log).start()
        wait_http(f"http://127.0.0.1:{self.port}/_health", 30, proc=self.proc.popen)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


def suite(name: str, policy: str | None) -> dict:  # type: ignore[type-arg]
    check = {"name": "chat", "threshold": 0.3, "params": {"prompts": 60}}
    if policy is not None:
        check["regression"] = policy
    return {"name": name, "version": "1.0.0", "checks": [check]}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    served = Endpoint(tmp_path_factory.mktemp("regress-ref") / "ref.log")
    served.serve("good")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def runs(app, factory, endpoint, worker):  # type: ignore[no-untyped-def]
    client = app.test_client()
    auth = {"Authorization": f"Bearer {make_token(factory, f'org-regress-{uuid.uuid4().hex[:6]}')}"}
    refs = {}
    for policy in ("report", "forbid"):
        r = client.post("/v1/suites", json=suite(f"regress-{policy}", policy), headers=auth)
        assert r.status_code == 201, r.get_json()
        refs[policy] = r.get_json()["ref"]
    target = create_target(client, auth, endpoint.url)
    receiver = Receiver(200)
    hook = client.post(
        "/v1/webhooks",
        json={"url": receiver.url, "target_id": target, "events": ["certification.succeeded"]},
        headers=auth,
    )
    assert hook.status_code == 201, hook.get_json()

    def certify_both() -> dict[str, dict]:  # type: ignore[type-arg]
        queued = {p: certify(client, auth, target, suite=ref) for p, ref in refs.items()}
        return {p: wait_terminal(client, auth, job, timeout=120) for p, job in queued.items()}

    before = certify_both()
    endpoint.serve("degraded")  # the same endpoint now serves a worse model
    after = certify_both()
    receiver.wait(4)
    events = {}
    for _, body in receiver.requests:
        event = json.loads(body)
        events[event["data"]["certification_id"]] = event
    receiver.close()
    return client, auth, before, after, events


def results(client, auth, job: dict) -> dict:  # type: ignore[no-untyped-def,type-arg]
    r = client.get(f"/v1/certifications/{job['id']}/results", headers=auth)
    assert r.status_code == 200
    return r.get_json()  # type: ignore[no-any-return]


def certificate(client, auth, job: dict) -> dict:  # type: ignore[no-untyped-def,type-arg]
    r = client.get(f"/v1/certifications/{job['id']}/certificate", headers=auth)
    assert r.status_code == 200
    return r.get_json()["payload"]  # type: ignore[no-any-return]


def test_a_first_certification_has_no_baseline(runs) -> None:  # type: ignore[no-untyped-def]
    client, auth, before, _, events = runs
    for job in before.values():
        assert (job["status"], job["verdict"]) == ("succeeded", "certified"), job
        view = results(client, auth, job)
        assert view["baseline"] is None and view["regressed"] == []
        (chat,) = view["checks"]
        assert chat["regression"]["baseline"] is None and not chat["regression"]["regressed"]
        assert "nothing to compare" in chat["regression"]["reason"]
        payload = certificate(client, auth, job)
        assert payload["format"] == "modelcert-certificate/3" and payload["baseline"] is None
        assert events[job["id"]]["data"]["regressions"] == {"baseline": None, "regressed": []}


def test_a_significant_drop_is_regressed_everywhere(runs) -> None:  # type: ignore[no-untyped-def]
    client, auth, before, after, events = runs
    job, baseline = after["report"], before["report"]["id"]
    # Reported, and the verdict stands: 0.6 still clears the suite's threshold of 0.3.
    assert (job["status"], job["verdict"]) == ("succeeded", "certified"), job
    view = results(client, auth, job)
    assert view["baseline"]["certification_id"] == baseline
    assert view["baseline"]["verdict"] == "certified"
    assert view["regressed"] == ["chat"]
    (chat,) = view["checks"]
    record = chat["regression"]
    assert record["regressed"] and record["method"] == "newcombe-hybrid-score"
    assert record["before"]["rate"] == 1.0 and record["after"]["rate"] < 0.8
    assert record["upper"] < 0
    assert (
        chat["outcome"] == "passed"
        and f"regressed against certification {baseline}" in (chat["explanation"])
    )
    payload = certificate(client, auth, job)
    assert payload["baseline"]["certification_id"] == baseline
    (summary,) = payload["checks"]
    assert summary["regression"]["regressed"] is True
    assert summary["regression"]["baseline"] == baseline
    assert summary["regression"]["upper"].startswith("-")  # signed as a string, as every ratio
    # The report page compares with the same baseline, the same way.
    page = client.get(f"/reports/{job['id']}", headers=auth)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<span class="pill dir-regressed">regressed</span>' in html
    assert '<tr class="dir-regressed"><td>chat</td>' in html and baseline in html
    event = events[job["id"]]["data"]["regressions"]
    assert event["baseline"] == baseline
    assert [r["check"] for r in event["regressed"]] == ["chat"]
    assert event["regressed"][0]["before"]["passed"] == 60


def test_a_suite_that_forbids_regressions_is_not_certified(runs) -> None:  # type: ignore[no-untyped-def]
    client, auth, before, after, events = runs
    job, baseline = after["forbid"], before["forbid"]["id"]
    assert (job["status"], job["verdict"]) == ("succeeded", "not_certified"), job
    (chat,) = results(client, auth, job)["checks"]
    assert chat["outcome"] == "failed" and chat["details"]["cause"] == "regressed"
    assert chat["explanation"].startswith(f"regressed against certification {baseline}")
    assert any(baseline in reason for reason in job["verdict_reasons"])
    payload = certificate(client, auth, job)
    assert payload["verdict"] == "not_certified" and payload["checks"][0]["cause"] == "regressed"
    assert events[job["id"]]["data"]["verdict"] == "not_certified"


@pytest.fixture(scope="module")
def latency_runs(app, factory, worker, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A latency check certified against the good model, then against the same endpoint
    answering 300 ms later, within the same lenient SLO both times."""
    served = Endpoint(tmp_path_factory.mktemp("regress-latency") / "ref.log")
    served.serve("good")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {make_token(factory, f'org-latency-{uuid.uuid4().hex[:6]}')}"}
    check = {
        "name": "latency",
        "regression": "report",
        "params": {"requests": 80, "concurrency": 16, "p95_slo_ms": 20000},
    }
    r = client.post(
        "/v1/suites",
        json={"name": "regress-latency", "version": "1.0.0", "checks": [check]},
        headers=auth,
    )
    assert r.status_code == 201, r.get_json()
    ref = r.get_json()["ref"]
    target = create_target(client, auth, served.url)
    try:
        before = wait_terminal(client, auth, certify(client, auth, target, suite=ref), timeout=120)
        served.serve("slow", "--latency-ms", "300")
        after = wait_terminal(client, auth, certify(client, auth, target, suite=ref), timeout=120)
    finally:
        served.stop()
    return client, auth, before, after


def test_a_slower_endpoint_regresses_its_latency_quantiles(latency_runs) -> None:  # type: ignore[no-untyped-def]
    client, auth, before, after = latency_runs
    assert (before["status"], before["verdict"]) == ("succeeded", "certified"), before
    (first,) = results(client, auth, before)["checks"]
    assert first["regression"]["baseline"] is None and not first["regression"]["regressed"]
    # Reported, and the verdict stands: the SLO is met both times.
    assert (after["status"], after["verdict"]) == ("succeeded", "certified"), after
    view = results(client, auth, after)
    assert view["baseline"]["certification_id"] == before["id"]
    assert view["regressed"] == ["latency"]
    (latency,) = view["checks"]
    record = latency["regression"]
    assert record["regressed"] and record["compared"] and latency["outcome"] == "passed"
    assert record["method"] == QUANTILE_METHOD
    assert f"regressed against certification {before['id']}" in latency["explanation"]
    payload = certificate(client, auth, after)
    (summary,) = payload["checks"]
    assert summary["regression"]["regressed"] is True
    assert summary["regression"]["baseline"] == before["id"]
