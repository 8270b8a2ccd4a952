"""The report pages in a real browser: Debian's Chromium, driven by Playwright, against the
API served on 127.0.0.1 (real Postgres, Redis and a standard certification run against the
reference endpoint). Skipped with a reason when Chromium or Playwright is absent
(`make tools` installs Chromium). Screenshots and a PDF are written to
.modelcert/test-artifacts/report-pages/ (REPORT_ARTIFACTS overrides)."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from app.db.models import ReportShare, SampleRow
from app.db.session import transaction
from tests.support import ROOT
from tests.support.jobs import queue, run_inline
from tests.support.rows import make_token

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(
        "Chromium is not installed (make tools: Debian's chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

ARTIFACTS = Path(
    os.environ.get("REPORT_ARTIFACTS", ROOT / ".modelcert" / "test-artifacts" / "report-pages")
)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = (
    '<script>window.__pwned=1</script><svg onload="window.__pwned=2"><circle r="9"/></svg>'
    "<img src=x onerror=window.__pwned=3>"
)


@pytest.fixture(scope="module")
def server(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser(runs) -> Iterator[object]:  # type: ignore[no-untyped-def]
    # After `runs`: Playwright's sync API keeps an event loop running in this thread, and a
    # certification run in process needs its own (asyncio.run).
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def org(factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    token = make_token(factory, f"org-{uuid.uuid4().hex[:8]}")
    return {"token": token, "Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def runs(app, factory, settings, reference_url, org) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Two standard certifications of one target (the second is the report shown; the first
    its previous one), one chat reply turned into markup and graded failed."""
    client = app.test_client()
    auth = {"Authorization": org["Authorization"]}
    r = client.post(
        "/v1/targets",
        json={
            "name": f"browser-{uuid.uuid4().hex[:6]}",
            "model": "reference-model",
            "base_url": f"{reference_url}/v1",
            "capabilities": {
                "streaming": True,
                "tools": True,
                "json_schema": True,
                "embeddings": True,
                "context_length": 8192,
            },
        },
        headers=auth,
    )
    assert r.status_code == 201, r.get_json()
    target = r.get_json()["id"]
    ids = []
    for _ in range(2):
        cert_id = queue(factory, settings, auth, target, suite="standard")
        assert run_inline(factory, settings, cert_id) == "succeeded"
        ids.append(cert_id)
    with transaction(factory) as session:
        session.execute(
            update(SampleRow)
            .where(
                SampleRow.certification_id == uuid.UUID(ids[1]),
                SampleRow.check_name == "chat",
                SampleRow.sample_index == 0,
            )
            .values(response_excerpt=XSS, grade="fail", error_cause="echoed_prompt")
        )
    return {"target": target, "previous": ids[0], "cert": ids[1]}


class Page:
    """A fresh browser context (no cookies) that records every request it makes."""

    def __init__(self, browser, server: str, **options: object) -> None:  # type: ignore[no-untyped-def]
        self.context = browser.new_context(**options)
        self.page = self.context.new_page()
        self.server = server
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))

    def goto(self, path: str):  # type: ignore[no-untyped-def]
        return self.page.goto(self.server + path)

    def external(self) -> list[str]:
        return [
            url
            for url in self.requests
            if not url.startswith((self.server + "/", "data:", "about:"))
        ]

    def shot(self, name: str, full_page: bool = False) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self) -> None:
        self.context.close()


def login(page: Page, token: str, next_path: str) -> None:
    response = page.goto(next_path)
    assert response.ok and "/login" in page.page.url  # redirected to the login form
    page.page.fill("#token", token)
    page.page.click("button[type=submit]")
    page.page.wait_for_load_state()


def test_the_report_in_a_browser(browser, server, runs, org) -> None:  # type: ignore[no-untyped-def]
    page = Page(browser, server, viewport={"width": 1280, "height": 900})
    try:
        login(page, org["token"], f"/reports/{runs['cert']}")
        p = page.page
        assert p.url == f"{server}/reports/{runs['cert']}"
        cookies = {c["name"]: c for c in page.context.cookies()}
        session = cookies["modelcert_session"]
        assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
        # The verdict first, with its reasons (one chat reply was graded failed, still passing).
        verdict = p.locator("#verdict-heading .verdict")
        assert verdict.is_visible() and verdict.inner_text() == "certified"
        assert p.locator("#reasons").is_visible()
        # Every chart is a non-empty SVG with its marks.
        intervals = p.locator("svg.chart.interval")
        assert intervals.count() >= 10
        for i in range(intervals.count()):
            chart = intervals.nth(i)
            assert chart.locator("rect.ci").count() == 1 and chart.locator("line.threshold").count()
            box = chart.bounding_box()
            assert box and box["width"] > 100 and box["height"] > 20
        dists = p.locator("#latency svg.chart.dist")
        assert dists.count() == 2
        for i in range(2):
            assert dists.nth(i).locator("rect.bar").count() > 0
            assert dists.nth(i).locator("line.slo").count() == 1
            assert dists.nth(i).locator("rect.q-ci").count() >= 1
        throughput = p.locator("#throughput svg.chart.throughput")
        assert throughput.locator("rect.bar").count() == 2
        assert p.locator("#changes table tbody tr").count() >= 10
        page.shot("report")
        # Model output stays text: no script ran, the markup shows as characters.
        assert p.evaluate("window.__pwned") is None
        failed = p.locator(".sample.g-fail").first
        assert "<script>window.__pwned=1</script>" in failed.locator("pre.reply").inner_text()
        assert failed.locator("pre.reply svg, pre.reply img, pre.reply script").count() == 0
        # Filters: by check, then by outcome.
        total = p.locator(".sample").count()
        p.click("label[for=fc-1]")  # the second check: chat
        shown = p.locator(".sample:visible")
        assert 0 < shown.count() < total
        assert {shown.nth(i).get_attribute("data-check") for i in range(shown.count())} == {"chat"}
        p.click("label[for=fg-fail]")
        shown = p.locator(".sample:visible")
        assert shown.count() == 1 and shown.first.get_attribute("data-grade") == "fail"
        p.click("label[for=fg-pass]")
        assert p.locator(".sample:visible").count() == 9
        p.click("label[for=fc-all]")
        p.click("label[for=fg-all]")
        assert p.locator(".sample:visible").count() == total
        p.locator("#evidence").scroll_into_view_if_needed()
        page.shot("report-evidence")
        # In print, as PDF; dark; on a phone.
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pdf = p.pdf(path=str(ARTIFACTS / "report.pdf"))
        assert pdf[:5] == b"%PDF-"
        assert page.external() == []
    finally:
        page.close()
    phone = Page(
        browser,
        server,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        color_scheme="dark",
        extra_http_headers={"Authorization": org["Authorization"]},
    )
    try:
        assert phone.goto(f"/reports/{runs['cert']}").ok
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390 + 1  # nothing wider than the phone
        background = phone.page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(13, 17, 23)"  # prefers-color-scheme: dark
        phone.shot("report-phone-dark")
        assert phone.external() == []
    finally:
        phone.close()


def test_another_organization_sees_404(browser, server, runs, factory) -> None:  # type: ignore[no-untyped-def]
    other = make_token(factory, f"org-{uuid.uuid4().hex[:8]}")
    page = Page(browser, server)
    try:
        response = page.goto(f"/reports/{runs['cert']}")
        assert "/login" in page.page.url and response.ok
        page.page.fill("#token", other)
        with page.page.expect_navigation() as navigation:
            page.page.click("button[type=submit]")
        assert navigation.value.status == 404
        assert page.page.locator("h1").inner_text() == "Not found"
        assert page.external() == []
    finally:
        page.close()


def test_share_link_works_without_a_token_until_revoked_or_expired(  # type: ignore[no-untyped-def]
    browser, server, runs, org, app, factory
) -> None:
    client = app.test_client()
    auth = {"Authorization": org["Authorization"]}
    share = client.post(f"/v1/certifications/{runs['cert']}/share", headers=auth).get_json()
    path = share["url"].removeprefix("http://localhost")
    page = Page(browser, server)
    try:
        response = page.goto(path)
        assert response.status == 200
        assert page.page.locator("#banner").is_visible()
        assert page.page.locator("#verdict-heading .verdict").inner_text() == "certified"
        assert page.page.locator("svg.chart").count() > 10
        assert page.context.cookies() == []  # no session, no token
        page.shot("shared")
        assert (
            client.delete(
                f"/v1/certifications/{runs['cert']}/shares/{share['id']}", headers=auth
            ).status_code
            == 204
        )
        assert page.page.reload().status == 410
        assert "no longer works" in page.page.locator("h1").inner_text()
        second = client.post(f"/v1/certifications/{runs['cert']}/share", headers=auth).get_json()
        assert page.goto(second["url"].removeprefix("http://localhost")).status == 200
        with transaction(factory) as session:
            session.execute(
                update(ReportShare)
                .where(ReportShare.id == uuid.UUID(second["id"]))
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        assert page.page.reload().status == 410
        assert page.external() == []
    finally:
        page.close()


def test_badge_and_verify_pages(browser, server, runs, org, app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    auth = {"Authorization": org["Authorization"]}
    target = runs["target"]
    page = Page(browser, server)
    try:
        assert page.goto(f"/badges/{target}.svg?suite=standard").status == 404
        client.put(f"/v1/targets/{target}/badge", headers=auth, json={"public": True})
        response = page.goto(f"/badges/{target}.svg?suite=standard")
        assert response.status == 200 and response.headers["content-type"].startswith(
            "image/svg+xml"
        )
        root = ET.fromstring(response.body())  # valid SVG
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert page.page.evaluate("document.documentElement.localName") == "svg"
        texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
        assert texts[0] == "modelcert standard" and texts[1].startswith("certified · until ")
        page.shot("badge")
        verify = page.goto(f"/badges/{target}?suite=standard")
        assert verify.status == 200
        assert page.page.locator("[data-outcome]").get_attribute("data-outcome") == "certified"
        # The verify page: paste a certificate, then a tampered one.
        document = client.get(f"/v1/certifications/{runs['cert']}/certificate", headers=auth)
        cert = {k: document.get_json()[k] for k in ("payload", "signature")}
        page.goto("/verify")
        page.page.fill("#certificate", json.dumps(cert))
        page.page.click("button[type=submit]")
        page.page.wait_for_load_state()
        assert page.page.locator("[data-outcome]").get_attribute("data-outcome") == "certified"
        assert page.page.locator("dl.facts").is_visible()
        page.shot("verify")
        cert["payload"]["verdict"] = re.sub("certified", "certifiex", cert["payload"]["verdict"])
        page.goto("/verify")
        page.page.fill("#certificate", json.dumps(cert))
        page.page.click("button[type=submit]")
        page.page.wait_for_load_state()
        assert page.page.locator("[data-outcome]").get_attribute("data-outcome") == "invalid"
        assert "bad_signature" in page.page.locator("#result-detail").inner_text()
        assert page.external() == []
    finally:
        page.close()
