"""What the HTML pages need that the JSON API does not: a browser session (a signed cookie,
HttpOnly, Secure, SameSite=Strict), CSRF tokens for the forms (double submit, and the
Origin checked), the pages' security headers, and the same per-token rate limit as /v1/."""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import time
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, request
from werkzeug.wrappers import Response as AnyResponse

from app.api.deps import Deps, deps
from app.api.errors import ProblemError
from app.api.ratelimit import TokenLimits, auth_failures, client_address
from app.reports.render import Page
from app.services.auth import Principal, authenticate, plausible
from app.services.errors import Unauthenticated
from app.services.shares import (
    SESSION_SECONDS,
    new_session_cookie,
    principal_of_token,
    read_session_cookie,
)

SESSION_COOKIE = "modelcert_session"
CSRF_COOKIE = "modelcert_csrf"
ENDED_PREFIX = "modelcert-session-ended:"  # Redis: sessions logged out before they expire
log = logging.getLogger(__name__)


def html(page: Page, status: int = 200, private: bool = True) -> Response:
    response = Response(page.html, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = page.csp
    secure_headers(response, private)
    return response


def secure_headers(response: AnyResponse, private: bool = True) -> AnyResponse:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # a share link never leaks onwards
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    if private:
        response.headers["Cache-Control"] = "no-store"
    return response


# Sessions ---------------------------------------------------------------------------------


def bearer_or_session() -> Principal | None:
    """The page's reader: an API token in the Authorization header (scripts), else a browser
    session whose token is still valid; None when neither."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("send an API token as 'Authorization: Bearer <token>'")
        return check_token(token)
    value = request.cookies.get(SESSION_COOKIE)
    if not value:
        return None
    session = read_session_cookie(deps().settings, value)
    if session is None or _ended(session.session_id):
        return None
    with deps().factory() as db:
        return principal_of_token(db, session.token_id)


def check_token(token: str) -> Principal:
    """An API token's principal, counting failures per address as the API's hook does."""
    failures = auth_failures(current_app)
    if plausible(token):
        failures.refuse_if_blocked(client_address())
    with deps().engine.connect() as conn:
        who = authenticate(conn, token)
        conn.commit()
    if who is None:
        if plausible(token):
            failures.failed(client_address())
        raise Unauthenticated("the API token is unknown or revoked")
    return who


def start_session(response: AnyResponse, who: Principal) -> None:
    value, _ = new_session_cookie(deps().settings, who)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_SECONDS,
        secure=True,
        httponly=True,
        samesite="Strict",
        path="/",
    )


def end_session(response: AnyResponse) -> None:
    value = request.cookies.get(SESSION_COOKIE)
    session = read_session_cookie(deps().settings, value) if value else None
    if session is not None:
        try:  # the cookie stays valid until it expires: remember that it was ended
            ttl = max(int(session.expires - time.time()), 1)
            deps().redis.set(ENDED_PREFIX + session.session_id, "1", ex=ttl)
        except Exception as exc:  # noqa: BLE001 - the cookie is deleted all the same
            log.error("session end not recorded (redis): %s", type(exc).__name__)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")


def _ended(session_id: str) -> bool:
    try:
        return bool(deps().redis.exists(ENDED_PREFIX + session_id))
    except Exception as exc:  # noqa: BLE001 - fail open, as the rate limits do
        log.error("session state unreadable (redis): %s", type(exc).__name__)
        return False


# CSRF -------------------------------------------------------------------------------------


def csrf_token() -> str:
    """This browser's CSRF token (set as a cookie on the response by `keep_csrf`)."""
    token = request.cookies.get(CSRF_COOKIE) or g.get("new_csrf")
    if not token or len(token) > 100:
        token = g.new_csrf = secrets.token_urlsafe(24)
    return token


def keep_csrf(response: AnyResponse) -> AnyResponse:
    if g.get("new_csrf"):
        response.set_cookie(
            CSRF_COOKIE, g.new_csrf, secure=True, httponly=True, samesite="Strict", path="/"
        )
    return response


def check_csrf() -> None:
    """A form post must come from our own page: the Origin (when sent) is this server, and
    the form's token equals the cookie's."""
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        ours = urlsplit(request.host_url)
        theirs = urlsplit(origin)
        if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
            raise ProblemError(403, "csrf", "Forbidden", "the form was not sent from this site")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    field = request.form.get("csrf", "")
    if not cookie or not hmac.compare_digest(cookie, field):
        raise ProblemError(
            403, "csrf", "Forbidden", "the form's CSRF token does not match: reload the page"
        )


def safe_next(value: str | None, default: str) -> str:
    """Only a path on this server (never //host or a scheme): no open redirect."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


# Rate limits ------------------------------------------------------------------------------


def install_page_limits(app: Flask) -> None:
    """The pages count against the same windows as /v1/ (API_RATE_LIMIT): a token's pages and
    its API calls share them; a reader without a token is counted by address."""
    app.extensions["modelcert.page_limits"] = TokenLimits(deps_of(app).settings)


def deps_of(app: Flask) -> Deps:
    found: Deps = app.extensions["modelcert"]
    return found


def limit(who: Principal | None) -> None:
    limits: TokenLimits = current_app.extensions["modelcert.page_limits"]
    key = f"token:{who.token_id}" if who is not None else f"addr:{client_address()}"
    try:
        window = limits.hit(key)
    except Exception as exc:  # noqa: BLE001 - fail open, as /v1/ does
        log.error("rate limit storage unreachable, page let through: %s", type(exc).__name__)
        return
    if window.breached:
        retry_after = max(1, math.ceil(window.reset_at - time.time()))
        raise ProblemError(
            429,
            "too-many-requests",
            "Too Many Requests",
            f"more than {window.item}; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
