"""Per-token rate limits (the `limits` library on Redis): 429 problem+json with Retry-After.

Keyed by the API token's id (the remote address when there is none). Only /v1/ is limited:
probes, /metrics and the OpenAPI document are not. Every /v1/ answer carries the
X-RateLimit-Limit, -Remaining and -Reset of the token's tightest window. When Redis is
unreachable the limiter fails open: the request goes through and the error is logged,
never a 500.

Flask-Limiter did this before, and its own per-request work (resolving which of its
decorator, blueprint, default and application limits apply, every request, for the one
application limit this API has) was a tenth of a POST's instructions (5.31 M -> 4.72 M,
bench/README.md, tenth pass); here a request costs one Redis script call per configured
limit and a few lookups.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from flask import Flask, Response, g, request
from limits import RateLimitItem, parse_many
from limits.storage import RedisStorage

from app.config import Settings
from app.errors import ProblemError

KEY_PREFIX = "modelcert-ratelimit"
SCOPE = "global"  # the key layout Flask-Limiter gave application limits: windows carry over
log = logging.getLogger(__name__)

# limits' fixed window, whose hit also returns the window's state: one round trip gives the
# count and the TTL the X-RateLimit-* headers need. It increments and sets the expiry on the
# window's first hit, as limits' own script does.
_HIT = """
local current = redis.call("incrby", KEYS[1], tonumber(ARGV[2]))
if tonumber(current) == tonumber(ARGV[2]) then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("pttl", KEYS[1])}
"""


@dataclass(frozen=True, slots=True)
class Window:
    """A limit's fixed window after this request's hit."""

    item: RateLimitItem
    remaining: int
    reset_at: float  # epoch seconds
    breached: bool


class TokenLimits:
    """The API_RATE_LIMIT limits ('600/minute', '20/second;600/minute') on one Redis, under
    limits' own keys (`LIMITS:LIMITER/modelcert-ratelimit/<who>/global/<amount>/<n>/<unit>`):
    limits' FixedWindowRateLimiter reads the same windows."""

    def __init__(self, settings: Settings) -> None:
        self.items = sorted(dict.fromkeys(parse_many(settings.api_rate_limit)))  # no twice
        self.storage = RedisStorage(str(settings.redis_url), socket_connect_timeout=0.5,
                                    socket_timeout=0.5)
        self._hit = self.storage.get_connection().register_script(_HIT)

    def hit(self, who: str) -> Window:
        """Count one request of `who` in each window, the narrowest first, up to the first
        one it breaches; the breached window, else the one with the fewest left."""
        tightest: Window | None = None
        for item in self.items:
            key = self.storage.prefixed_key(item.key_for(KEY_PREFIX, who, SCOPE))
            count, ttl_ms = self._hit([key], [item.get_expiry(), 1])
            window = Window(item, max(0, item.amount - int(count)),
                            time.time() + max(int(ttl_ms), 0) / 1000, int(count) > item.amount)
            if window.breached:
                return window
            if tightest is None or window.remaining < tightest.remaining:
                tightest = window
        assert tightest is not None  # parse_many refuses an empty limit string
        return tightest


def rate_key() -> str:
    who = g.get("principal")
    if who is not None:
        return f"token:{who.token_id}"
    return f"addr:{request.remote_addr or '127.0.0.1'}"


def install_limiter(app: Flask, settings: Settings) -> TokenLimits:
    """Install after the auth hook, so the key is the authenticated token."""
    limits = TokenLimits(settings)

    @app.before_request
    def check_rate_limit() -> None:
        if not request.path.startswith("/v1/"):
            return
        try:
            window = limits.hit(rate_key())
        except Exception as exc:  # noqa: BLE001 - fail open: a Redis outage never refuses a request
            log.error("rate limit storage unreachable, request let through: %s",
                      type(exc).__name__)
            return
        g.rate_window = window
        if window.breached:
            retry_after = max(1, math.ceil(window.reset_at - time.time()))
            raise ProblemError(429, "too-many-requests", "Too Many Requests",
                               f"more than {window.item} for this API token; retry in "
                               f"{retry_after} s", headers={"Retry-After": str(retry_after)})

    @app.after_request
    def rate_headers(response: Response) -> Response:
        window: Window | None = g.get("rate_window")
        if window is not None:
            response.headers["X-RateLimit-Limit"] = str(window.item.amount)
            response.headers["X-RateLimit-Remaining"] = str(window.remaining)
            response.headers["X-RateLimit-Reset"] = str(int(window.reset_at))
        return response

    return limits
