"""Per-token rate limits (Flask-Limiter on Redis): 429 problem+json with Retry-After.

Keyed by the API token's id (the remote address when there is none). Probes, /metrics and
the OpenAPI document are exempt. When Redis is unreachable the limiter fails open: the
request goes through and the error is logged, never a 500.
"""

from __future__ import annotations

import logging

from flask import Flask, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from app.config import Settings

KEY_PREFIX = "modelcert-ratelimit"
log = logging.getLogger(__name__)


def rate_key() -> str:
    who = g.get("principal")
    return f"token:{who.token_id}" if who is not None else f"addr:{get_remote_address()}"


def exempt() -> bool:
    return not request.path.startswith("/v1/")


def install_limiter(app: Flask, settings: Settings) -> Limiter:
    """Install after the auth hook, so the key is the authenticated token."""
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)
    return Limiter(
        rate_key, app=app, application_limits=[settings.api_rate_limit],
        application_limits_exempt_when=exempt, headers_enabled=True,
        storage_uri=str(settings.redis_url), key_prefix=KEY_PREFIX, strategy="fixed-window",
        storage_options={"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        swallow_errors=True,
    )
