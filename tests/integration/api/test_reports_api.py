"""The report pages over the Flask test client (real Postgres and Redis): who can see them,
share links, badges, the verify page, escaping. tests/e2e/test_report_pages.py opens the
same pages in Chromium."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from app.db.models import ReportShare, SampleRow
from app.db.session import transaction
from tests.support.api import assert_problem, create_target
from tests.support.jobs import queue, run_inline
from tests.support.rows import make_token

XSS = (
    '<script>window.__pwned=1</script><svg onload="window.__pwned=2"></svg>'
    "<img src=x onerror=alert(1)>"
)


@pytest.fixture()
def certified(client, auth, factory, settings, reference_url):  # type: ignore[no-untyped-def]
    target = create_target(client, auth, f"{reference_url}/v1")
    cert_id = queue(factory, settings, auth, target)
    assert run_inline(factory, settings, cert_id) == "succeeded"
    return target, cert_id


def test_the_report_shows_the_verdict_charts_and_evidence(client, auth, certified) -> None:  # type: ignore[no-untyped-def]
    _, cert_id = certified
    r = client.get(f"/reports/{cert_id}", headers=auth)
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert 'data-verdict="certified"' in page
    assert page.count('<svg class="chart interval"') == 2  # connectivity and chat
    assert "modelcert verify certificate.json --keys keys.json" in page
    assert page.count('class="sample ') == 15
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["Cache-Control"] == "no-store"
    assert "<script" not in page  # no script at all
    cert = client.get(f"/reports/{cert_id}/certificate.json", headers=auth)
    assert (
        cert.status_code == 200 and json.loads(cert.data)["payload"]["certification_id"] == cert_id
    )
    evidence = client.get(f"/reports/{cert_id}/evidence.jsonl", headers=auth)
    assert len(evidence.get_data(as_text=True).splitlines()) == 15


def test_another_organization_gets_404_and_no_token_goes_to_login(
    client, auth, factory, certified
) -> None:  # type: ignore[no-untyped-def]
    _, cert_id = certified
    other = {"Authorization": f"Bearer {make_token(factory, f'org-{uuid.uuid4().hex[:8]}')}"}
    for path in (f"/reports/{cert_id}", f"/reports/{cert_id}/certificate.json"):
        assert client.get(path, headers=other).status_code == 404
    assert client.get(f"/reports/{uuid.uuid4()}", headers=auth).status_code == 404
    assert client.get("/reports/not-a-uuid", headers=auth).status_code == 404
    anonymous = client.get(f"/reports/{cert_id}")
    assert anonymous.status_code == 303 and anonymous.location.startswith("/login?next=")
    assert (
        client.get(f"/reports/{cert_id}", headers={"Authorization": "Bearer mc_nope"}).status_code
        == 401
    )


def _csrf(client) -> str:  # type: ignore[no-untyped-def]
    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def test_login_sets_a_strict_cookie_and_logout_ends_the_session(client, auth, certified) -> None:  # type: ignore[no-untyped-def]
    _, cert_id = certified
    token = auth["Authorization"].split(" ", 1)[1]
    csrf = _csrf(client)
    # Without the CSRF token, or from another site: refused.
    assert client.post("/login", data={"token": token}).status_code == 403
    assert (
        client.post(
            "/login",
            data={"token": token, "csrf": csrf},
            headers={"Origin": "https://evil.example"},
        ).status_code
        == 403
    )
    bad = client.post("/login", data={"token": "mc_wrong", "csrf": csrf})
    assert bad.status_code == 401 and "unknown or revoked" in bad.get_data(as_text=True)
    r = client.post("/login", data={"token": token, "csrf": csrf, "next": f"/reports/{cert_id}"})
    assert r.status_code == 303 and r.location == f"/reports/{cert_id}"
    cookie = next(c for c in r.headers.getlist("Set-Cookie") if c.startswith("modelcert_session="))
    assert {"Secure", "HttpOnly", "SameSite=Strict"} <= {p.strip() for p in cookie.split(";")}
    assert token not in cookie
    assert client.get(f"/reports/{cert_id}").status_code == 200
    # An open redirect is not offered.
    r = client.post("/login", data={"token": token, "csrf": csrf, "next": "//evil.example/"})
    assert r.location == "/reports"
    stolen = client.get_cookie("modelcert_session").value
    assert client.post("/logout", data={"csrf": csrf}).status_code == 303
    assert client.get(f"/reports/{cert_id}").status_code == 303
    client.set_cookie("modelcert_session", stolen)  # a copy kept from before the logout
    assert client.get(f"/reports/{cert_id}").status_code == 303


def test_share_links_work_without_a_token_until_revoked_or_expired(
    client, auth, factory, certified
) -> None:  # type: ignore[no-untyped-def]
    _, cert_id = certified
    r = client.post(f"/v1/certifications/{cert_id}/share", headers=auth)
    assert r.status_code == 201, r.get_data(as_text=True)
    share = r.get_json()
    assert share["status"] == "active" and share["url"].startswith("http://localhost/shared/")
    assert make_token.__name__ and "mc_" not in share["url"]
    path = share["url"].removeprefix("http://localhost")
    page = client.get(path)
    assert page.status_code == 200 and 'data-verdict="certified"' in page.get_data(as_text=True)
    assert client.get(f"{path}/certificate.json").status_code == 200
    # A forged or altered link is unknown.
    assert client.get(path[:-3] + "abc").status_code == 404
    listed = client.get(f"/v1/certifications/{cert_id}/shares", headers=auth).get_json()
    assert [s["id"] for s in listed["items"]] == [share["id"]]
    other = {"Authorization": f"Bearer {make_token(factory, f'org-{uuid.uuid4().hex[:8]}')}"}
    assert_problem(client.post(f"/v1/certifications/{cert_id}/share", headers=other), 404)
    assert_problem(
        client.delete(f"/v1/certifications/{cert_id}/shares/{share['id']}", headers=other), 404
    )
    revoked = client.delete(f"/v1/certifications/{cert_id}/shares/{share['id']}", headers=auth)
    assert revoked.status_code == 204
    assert client.get(path).status_code == 410
    assert client.get(f"{path}/certificate.json").status_code == 410
    # Expiry: a link whose time has passed stops working too.
    second = client.post(
        f"/v1/certifications/{cert_id}/share", headers=auth, json={"expires_in_hours": 1}
    ).get_json()
    with transaction(factory) as session:
        session.execute(
            update(ReportShare)
            .where(ReportShare.id == uuid.UUID(second["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert client.get(second["url"].removeprefix("http://localhost")).status_code == 410
    assert_problem(
        client.post(
            f"/v1/certifications/{cert_id}/share", headers=auth, json={"expires_in_hours": 0}
        ),
        422,
    )


def test_badges_are_private_until_made_public(client, auth, factory, certified) -> None:  # type: ignore[no-untyped-def]
    target, _ = certified
    assert client.get(f"/badges/{target}.svg").status_code == 404
    view = client.get(f"/v1/targets/{target}/badge", headers=auth).get_json()
    assert view["public"] is False
    other = {"Authorization": f"Bearer {make_token(factory, f'org-{uuid.uuid4().hex[:8]}')}"}
    assert_problem(
        client.put(f"/v1/targets/{target}/badge", headers=other, json={"public": True}), 404
    )
    r = client.put(f"/v1/targets/{target}/badge", headers=auth, json={"public": True})
    assert r.status_code == 200 and r.get_json()["public"] is True
    badge = client.get(f"/badges/{target}.svg?suite=smoke")
    assert badge.status_code == 200 and badge.mimetype == "image/svg+xml"
    svg = badge.get_data(as_text=True)
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert texts[0] == "modelcert smoke" and re.fullmatch(
        r"certified · until \d{4}-\d\d-\d\d", texts[1]
    )
    assert len(texts) == 2 and "reference-model" not in svg  # no tenant data
    assert "max-age=300" in badge.headers["Cache-Control"] and badge.headers["ETag"]
    again = client.get(
        f"/badges/{target}.svg?suite=smoke", headers={"If-None-Match": badge.headers["ETag"]}
    )
    assert again.status_code == 304
    page = client.get(f"/badges/{target}?suite=smoke")
    assert page.status_code == 200 and 'data-outcome="certified"' in page.get_data(as_text=True)
    client.put(f"/v1/targets/{target}/badge", headers=auth, json={"public": False})
    assert client.get(f"/badges/{target}.svg").status_code == 404
    assert client.get(f"/badges/{target}").status_code == 404


def test_the_verify_page_gives_the_three_outcomes(
    client, auth, factory, settings, certified, reference_url
) -> None:  # type: ignore[no-untyped-def]
    _, cert_id = certified
    document = client.get(f"/v1/certifications/{cert_id}/certificate", headers=auth).get_json()
    cert = {"payload": document["payload"], "signature": document["signature"]}
    assert client.get("/verify").status_code == 200
    ok = client.post("/verify", data={"certificate": json.dumps(cert)})
    assert ok.status_code == 200 and 'data-outcome="certified"' in ok.get_data(as_text=True)
    tampered = json.loads(json.dumps(cert))
    tampered["payload"]["model"] = "something-else"
    bad = client.post("/verify", data={"certificate": json.dumps(tampered)}).get_data(as_text=True)
    assert 'data-outcome="invalid"' in bad and "bad_signature" in bad
    assert 'data-outcome="invalid"' in client.post("/verify", data={"certificate": "{"}).get_data(
        as_text=True
    )
    # Authentic but not certified: a run against the wrong-answers mode.
    target = create_target(client, auth, f"{reference_url}/m/wrong/v1")
    wrong = queue(factory, settings, auth, target)
    assert run_inline(factory, settings, wrong) == "succeeded"
    document = client.get(f"/v1/certifications/{wrong}/certificate", headers=auth).get_json()
    from io import BytesIO

    upload = BytesIO(
        json.dumps({"payload": document["payload"], "signature": document["signature"]}).encode()
    )
    page = client.post(
        "/verify", data={"file": (upload, "certificate.json")}, content_type="multipart/form-data"
    ).get_data(as_text=True)
    assert 'data-outcome="not_certified"' in page


def test_a_reply_with_markup_stays_text(client, auth, factory, certified) -> None:  # type: ignore[no-untyped-def]
    _, cert_id = certified
    with transaction(factory) as session:
        session.execute(
            update(SampleRow)
            .where(SampleRow.certification_id == uuid.UUID(cert_id), SampleRow.check_name == "chat")
            .values(response_excerpt=XSS, grade="fail", error_cause="<b>cause</b>")
        )
    page = client.get(f"/reports/{cert_id}", headers=auth).get_data(as_text=True)
    assert "<script>window.__pwned" not in page and "<svg onload" not in page
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page
    assert "&lt;b&gt;cause&lt;/b&gt;" in page
