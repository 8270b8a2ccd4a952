"""The HTML pages (issue #24): a certification's report for its organization (a token or a
browser session), read-only share links, the verify page and public badges. Each view is a
few lines over app/services/reports.py and app/services/shares.py; the HTML is
app/reports/render.py's."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, redirect, request
from werkzeug.wrappers import Response as AnyResponse

from app.api import browser
from app.api.certificates import SIGNING_KEYS_PATH
from app.api.deps import FORM_ENDPOINTS, deps
from app.api.errors import ProblemError
from app.certification import certificates as certs
from app.reports import charts
from app.reports.render import (
    render_list,
    render_login,
    render_message,
    render_report,
    render_verify,
)
from app.reports.verify import MAX_CERTIFICATE_BYTES, verify_document, verify_text
from app.services import reports, results, shares
from app.services.auth import Principal
from app.services.errors import NotFound, Unauthenticated
from app.services.signing import published_keys

bp = Blueprint("report_pages", __name__)


def _page_errors(view: Callable[..., AnyResponse]) -> Callable[..., AnyResponse]:
    """A page's failures as pages: 404 (unknown or another organization's), 410 (a link that
    expired or was revoked), a redirect to the login form, or the problem's own status."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> AnyResponse:
        try:
            return view(*args, **kwargs)
        except NotFound as exc:
            return browser.html(render_message("Not found", exc.detail), 404)
        except shares.ShareGone as exc:
            return browser.html(
                render_message("This link no longer works", f"The share link was {exc.status}."),
                410,
            )
        except Unauthenticated as exc:
            if request.method == "GET" and not request.headers.get("Authorization"):
                return redirect(f"/login?next={quote(request.full_path.rstrip('?'))}", 303)
            return browser.html(render_message("Not logged in", exc.detail), 401)
        except ProblemError as exc:
            response = browser.html(render_message(exc.title, exc.detail), exc.status)
            response.headers.update(exc.headers)
            return response

    return wrapper


def _reader() -> Principal:
    who = browser.bearer_or_session()
    browser.limit(who)
    if who is None:
        raise Unauthenticated("log in to see this page")
    return who


def _cert_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("no such certification") from None


def _nav() -> dict[str, str]:
    return {
        "home": "/reports",
        "verify": "/verify",
        "logout": "/logout" if request.cookies.get(browser.SESSION_COOKIE) else "",
        "csrf": browser.csrf_token(),
    }


def _base() -> str:
    return request.host_url.rstrip("/")


# The organization's pages -----------------------------------------------------------------


@bp.get("/login")
@_page_errors
def login_form() -> AnyResponse:
    next_path = browser.safe_next(request.args.get("next"), "/reports")
    page = render_login("/login", browser.csrf_token(), next_path)
    return browser.keep_csrf(browser.html(page))


@bp.post("/login")
@_page_errors
def login() -> AnyResponse:
    browser.check_csrf()
    browser.limit(None)
    next_path = browser.safe_next(request.form.get("next"), "/reports")
    try:
        who = browser.check_token(request.form.get("token", "").strip())
    except Unauthenticated:
        page = render_login(
            "/login", browser.csrf_token(), next_path, "That token is unknown or revoked."
        )
        return browser.html(page, 401)
    response = redirect(next_path, 303)
    browser.start_session(response, who)
    return browser.secure_headers(response)


@bp.post("/logout")
@_page_errors
def logout() -> AnyResponse:
    browser.check_csrf()
    response = redirect("/login", 303)
    browser.end_session(response)
    return browser.secure_headers(response)


@bp.get("/reports")
@_page_errors
def report_list() -> AnyResponse:
    who = _reader()
    with deps().factory() as session:
        items = reports.recent(session, who.organization_id)
    for item in items:
        item["href"] = f"/reports/{item['id']}"
    return browser.keep_csrf(browser.html(render_list(who.organization, items, nav=_nav())))


def _owner_links(cert_id: uuid.UUID) -> reports.Links:
    return reports.Links(
        certificate=f"/reports/{cert_id}/certificate.json",
        evidence=f"/reports/{cert_id}/evidence.jsonl",
        keys=SIGNING_KEYS_PATH,
        verify="/verify",
        api_base=_base(),
    )


@bp.get("/reports/<cert>")
@_page_errors
def report(cert: str) -> AnyResponse:
    who = _reader()
    cert_id = _cert_id(cert)
    with deps().factory() as session:
        data = reports.build_report(session, who.organization_id, cert_id, _owner_links(cert_id))
    page = render_report(
        data,
        nav=_nav(),
        filter_check=request.args.get("check"),
        filter_grade=request.args.get("grade"),
        previous_href=f"/reports/{data.comparison.previous_id}" if data.comparison else "",
    )
    return browser.keep_csrf(browser.html(page))


@bp.get("/reports/<cert>/certificate.json")
@_page_errors
def report_certificate(cert: str) -> AnyResponse:
    who = _reader()
    with deps().factory() as session:
        document = reports.certificate_document(session, who.organization_id, _cert_id(cert))
    return _download(json.dumps(document, indent=2, ensure_ascii=False), "certificate.json")


@bp.get("/reports/<cert>/evidence.jsonl")
@_page_errors
def report_evidence(cert: str) -> AnyResponse:
    who = _reader()
    lines = results.evidence_lines(deps().factory, who, _cert_id(cert))
    return _download(lines, "evidence.jsonl", "application/x-ndjson")


def _download(body: Any, name: str, mimetype: str = "application/json") -> AnyResponse:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return browser.secure_headers(response)


# Share links (read-only, no token) --------------------------------------------------------


@bp.get("/shared/<token>")
@_page_errors
def shared_report(token: str) -> AnyResponse:
    browser.limit(None)
    with deps().factory() as session:
        share = shares.resolve_share(session, deps().settings, token)
        links = reports.Links(
            certificate=f"/shared/{token}/certificate.json",
            evidence=f"/shared/{token}/evidence.jsonl",
            keys=SIGNING_KEYS_PATH,
            verify="/verify",
            api_base=_base(),
        )
        data = reports.build_report(session, share.organization_id, share.certification_id, links)
        expires = share.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    data.verify_commands = [
        f"curl -sS {_base()}{SIGNING_KEYS_PATH} > keys.json",
        f"curl -sS {_base()}/shared/{token}/certificate.json > certificate.json",
        "modelcert verify certificate.json --keys keys.json",
    ]
    page = render_report(
        data,
        banner=f"A read-only copy shared with you; the link works until {expires}.",
        filter_check=request.args.get("check"),
        filter_grade=request.args.get("grade"),
    )
    return browser.html(page)


@bp.get("/shared/<token>/certificate.json")
@_page_errors
def shared_certificate(token: str) -> AnyResponse:
    browser.limit(None)
    with deps().factory() as session:
        share = shares.resolve_share(session, deps().settings, token)
        document = reports.certificate_document(
            session, share.organization_id, share.certification_id
        )
    return _download(json.dumps(document, indent=2, ensure_ascii=False), "certificate.json")


@bp.get("/shared/<token>/evidence.jsonl")
@_page_errors
def shared_evidence(token: str) -> AnyResponse:
    browser.limit(None)
    with deps().factory() as session:
        share = shares.resolve_share(session, deps().settings, token)
    who = Principal(share.organization_id, "", uuid.UUID(int=0))
    lines = results.evidence_lines(deps().factory, who, share.certification_id)
    return _download(lines, "evidence.jsonl", "application/x-ndjson")


# Verify -----------------------------------------------------------------------------------


def _published_keys() -> dict[str, str]:
    with deps().factory() as session:
        return certs.parse_keys_document(
            {"keys": [{"public_key": k.public_key} for k in published_keys(session)]}
        )


@bp.get("/verify")
@_page_errors
def verify_form() -> AnyResponse:
    browser.limit(None)
    return browser.html(render_verify("/verify", SIGNING_KEYS_PATH))


@bp.post("/verify")
@_page_errors
def verify() -> AnyResponse:
    """Stateless and public: nothing is stored, so no CSRF token is needed."""
    browser.limit(None)
    upload = request.files.get("file")
    if upload is not None and upload.filename:
        text: str | bytes = upload.read(MAX_CERTIFICATE_BYTES + 1)
    else:
        text = request.form.get("certificate", "")
    result = verify_text(text, _published_keys())
    return browser.html(render_verify("/verify", SIGNING_KEYS_PATH, result))


FORM_ENDPOINTS.update({f"{bp.name}.login", f"{bp.name}.logout", f"{bp.name}.verify"})


# Public badges ----------------------------------------------------------------------------


def _target(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("no public badge for this target") from None


@bp.get("/badges/<target>.svg")
def badge(target: str) -> AnyResponse:
    """Verdict and valid-until only; 404 (as a grey badge) unless the badge is public."""
    browser.limit(None)
    suite = request.args.get("suite") or None
    label = f"modelcert {suite}" if suite else "modelcert"
    try:
        with deps().factory() as session:
            state = shares.public_badge(session, _target(target), suite)
        status, svg = 200, charts.badge(label, state.message, state.state, f"/badges/{target}")
    except NotFound:
        status, svg = 404, charts.badge(label, "not found", "none")
    response = Response(svg, status=status, mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "public, max-age=300" if status == 200 else "no-store"
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"  # embeddable anywhere
    response.add_etag()
    return response.make_conditional(request)


@bp.get("/badges/<target>")
@_page_errors
def badge_page(target: str) -> AnyResponse:
    """The badge's link: its certificate verified against this server's keys."""
    browser.limit(None)
    suite = request.args.get("suite") or None
    with deps().factory() as session:
        state = shares.public_badge(session, _target(target), suite)
    result = verify_document(state.certificate, _published_keys()) if state.certificate else None
    page = render_verify(SIGNING_KEYS_PATH, SIGNING_KEYS_PATH, result, show_form=False)
    if result is None:
        page = render_message("No current certificate", "This target has no certificate in force.")
    return browser.html(page, private=False)
