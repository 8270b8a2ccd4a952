"""The Flask app factory: OpenAPI from the pydantic models, problem+json errors, token auth."""

from __future__ import annotations

import json
import time
import uuid

import redis
from flask import Response, current_app, g, request
from flask_openapi3 import Info, OpenAPI
from prometheus_client import Counter, Histogram
from sqlalchemy import text

from app.api.bodies import BodyLimit, nul_in, read_json_body
from app.api.browser import install_page_limits
from app.api.deps import (
    FORM_ENDPOINTS,
    PREFETCH_TARGET,
    RAW_BODY,
    SHARED_AUTH_TRANSACTION,
    Deps,
    deps,
)
from app.api.errors import register_error_handlers, validation_problem
from app.api.openapi_doc import ProblemDocumentedOpenAPI
from app.api.ratelimit import auth_failures, client_address, install_limiter
from app.config import Settings, settings_for_process
from app.db.session import autocommit_engine, make_engine, make_session_factory
from app.probes import CONTENT_TYPE_LATEST, broker_reachable, metrics_exposition
from app.queue.publisher import Publisher
from app.services.auth import authenticate, plausible
from app.services.dispatch import DispatchMarks
from app.services.errors import Unauthenticated
from app.services.targets import authenticate_with_target

API_REQUESTS = Counter(
    "modelcert_api_requests_total", "API requests.", ["route", "method", "status"]
)
API_LATENCY = Histogram(
    "modelcert_api_request_duration_seconds",
    "API request latency.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OPEN_PATHS = ("/live", "/ready", "/metrics", "/openapi.json")
# Public keys for offline verification; the suite document's JSON Schema (issue #23).
PUBLIC_V1_PATHS = ("/v1/signing-keys", "/v1/suites/schema")


def build_app(settings: Settings | None = None) -> OpenAPI:
    settings = settings or settings_for_process()
    app = ProblemDocumentedOpenAPI(
        "modelcert",
        info=Info(
            title="modelcert",
            version="0.1.0",
            description="Certifies AI model endpoints with statistical verdicts, "
            "per-sample evidence and signed certificates.",
        ),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        validation_error_status=422,
        validation_error_callback=validation_problem,
        doc_prefix="/docs",
        doc_url="/openapi.json",
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.api_max_body_bytes
    # Flask's documented way to add WSGI middleware, which mypy takes for replacing a method.
    app.wsgi_app = BodyLimit(app.wsgi_app, settings.api_max_body_bytes)  # type: ignore[method-assign]
    # A connection for each request thread and one for the dispatch-marks batch: a thread
    # never waits on the pool for a connection another thread of this process holds.
    engine = make_engine(
        str(settings.database_url),
        pool_size=settings.api_threads + 1,
        application_name="modelcert-api",
    )
    factory = make_session_factory(engine)
    app.extensions["modelcert"] = Deps(
        settings=settings,
        engine=engine,
        factory=factory,
        dispatch=DispatchMarks(factory),
        publisher=Publisher(settings),
        redis=redis.Redis.from_url(
            str(settings.redis_url), socket_connect_timeout=1, socket_timeout=1
        ),
    )
    register_error_handlers(app)
    _register_hooks(app)
    install_limiter(app, settings)
    _register_probes(app)
    from app.api import (
        certificates,
        certifications,
        dead_letters,
        reports,
        results,
        secrets,
        sharing,
        suites,
        targets,
        webhooks,
    )

    app.register_api(targets.bp)
    app.register_api(certifications.bp)
    app.register_api(secrets.bp)
    app.register_api(results.bp)
    app.register_api(certificates.bp)
    app.register_api(certificates.keys_bp)
    app.register_api(suites.bp)
    app.register_api(dead_letters.bp)
    app.register_api(webhooks.bp)
    app.register_api(sharing.bp)  # issue 24: the report pages and their /v1 endpoints
    app.register_blueprint(reports.bp)
    install_page_limits(app)
    return app


def _register_hooks(app: OpenAPI) -> None:
    @app.before_request
    def start_request() -> None:
        g.request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        g.started = time.perf_counter()
        if request.method in ("POST", "PUT", "PATCH") and request.endpoint not in FORM_ENDPOINTS:
            _check_json_body()
        if request.args:
            _check_query()
        if (request.path.startswith("/v1/") or request.path == "/v1") and request.path.rstrip(
            "/"
        ) not in PUBLIC_V1_PATHS:
            _authenticate()

    @app.teardown_request
    def close_auth_session(_: BaseException | None) -> None:
        conn = g.pop("auth_session", None)
        if conn is not None:
            conn.close()  # rolls back what the view did not commit

    @app.after_request
    def finish_request(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        rule = request.url_rule.rule if request.url_rule else "unmatched"
        API_REQUESTS.labels(rule, request.method, str(response.status_code)).inc()
        API_LATENCY.labels(rule, request.method).observe(
            time.perf_counter() - g.get("started", time.perf_counter())
        )
        return response


def _check_json_body() -> None:
    if request.endpoint in RAW_BODY:  # reads its own body, within the limit (issue #23)
        return
    g.json_body = read_json_body(deps().settings.api_max_body_bytes)


def _check_query() -> None:
    """A NUL in a query parameter would reach the database as text (see app/api/bodies.py)."""
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            raise nul_in(["query", name.replace("\x00", "")])


def _authenticate() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send an API token as 'Authorization: Bearer <token>'")
    # A bare Connection, not an ORM Session: every request runs this, and the Session's own
    # bookkeeping (begin, connection, commit, close) cost a tenth of a POST's CPU. Unless the
    # view continues its transaction, in autocommit: a read (and at most once a minute a
    # one-row UPDATE) needs no BEGIN and COMMIT, each a round trip of its own.
    failures = auth_failures(current_app)
    if plausible(token.strip()):  # a lookup follows: not for an address over its limit
        failures.refuse_if_blocked(client_address())
    shared = request.endpoint in SHARED_AUTH_TRANSACTION
    engine = deps().engine
    conn = (engine if shared else autocommit_engine(engine)).connect()
    handed_over = False
    try:
        target_id = _prefetched_target_id()
        if target_id is not None:
            who, g.job_target = authenticate_with_target(conn, token.strip(), target_id)
        else:
            who = authenticate(conn, token.strip())
        if who is not None and shared:
            g.auth_session, handed_over = conn, True  # the view commits it
    finally:
        if not handed_over:
            conn.close()
    if who is None:
        if plausible(token.strip()):
            failures.failed(client_address())  # 429 once over the limit
        raise Unauthenticated("the API token is unknown or revoked")
    g.principal = who


def _prefetched_target_id() -> uuid.UUID | None:
    """The body's target_id, for an endpoint in PREFETCH_TARGET (else None, as for a body
    without a valid one: the view's validation says what is wrong with it)."""
    if request.endpoint not in PREFETCH_TARGET:
        return None
    body = g.get("json_body")
    value = body.get("target_id") if isinstance(body, dict) else None
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _register_probes(app: OpenAPI) -> None:
    @app.get("/live", doc_ui=False)
    def live() -> Response:
        return Response('{"status": "alive"}', mimetype="application/json")

    @app.get("/ready", doc_ui=False)
    def ready() -> Response:
        d = deps()
        checks = {"database": False, "broker": False}
        try:
            with d.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = True
        except Exception:  # noqa: BLE001
            pass
        checks["broker"] = broker_reachable(d.redis)
        # The API accepts jobs while the broker is down (the outbox); only the database gates.
        status = 200 if checks["database"] else 503
        return Response(
            json.dumps({"status": "ready" if status == 200 else "unavailable", "checks": checks}),
            status=status,
            mimetype="application/json",
        )

    @app.get("/metrics", doc_ui=False)
    def metrics() -> Response:
        return Response(metrics_exposition(), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", doc_ui=False)
    def openapi_json() -> Response:
        return Response(json.dumps(app.api_doc), mimetype="application/json")
