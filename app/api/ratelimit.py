"""Per-token rate limits (the `limits` library on Redis): 429 problem+json with Retry-After.

Keyed by the API token's id (the remote address when there is none). Only /v1/ is limited:
probes, /metrics and the OpenAPI document are not. Every /v1/ answer carries the
X-RateLimit-Limit, -Remaining and -Reset of the token's tightest window. When Redis is
unreachable the limiter fails open: the request goes through and the error is logged,
never a 500.

Flask-Limiter did this before, and its own per-request work (resolving which of its
decorator, blueprint, default and application limits apply, every request, for the one
application limit this API has) was a tenth of a POST's instructions (measured with
`python -m bench --only instructions`); here a request costs one Redis script call per
configured limit and a few lookups.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from flask import Flask, Response, g, request
from limits import RateLimitItem, parse_many
from limits.storage import RedisStorage

from app.api.errors import ProblemError
from app.config import Settings

KEY_PREFIX = "modelcert-ratelimit"
SCOPE = "global"  # the key layout Flask-Limiter gave application limits: windows carry over
# Failed token lookups allowed per client address (AddressFailures). Tokens are 256-bit
# random: the limit is not against guessing one but against the database load of trying.
AUTH_FAILURE_LIMIT = "60/minute"
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

    def __init__(self, settings: Settings, limit: str | None = None) -> None:
        """`limit`: other windows than API_RATE_LIMIT's (AddressFailures)."""
        self.items = sorted(dict.fromkeys(parse_many(limit or settings.api_rate_limit)))
        self.storage = RedisStorage(
            str(settings.redis_url), socket_connect_timeout=0.5, socket_timeout=0.5
        )
        self._hit = self.storage.get_connection().register_script(_HIT.encode())

    def hit(self, who: str) -> Window:
        """Count one request of `who` in each window, the narrowest first, up to the first
        one it breaches; the breached window, else the one with the fewest left."""
        tightest: Window | None = None
        for item in self.items:
            key = self.storage.prefixed_key(item.key_for(KEY_PREFIX, who, SCOPE))
            count, ttl_ms = self._hit([key], [item.get_expiry(), 1])
            window = Window(
                item,
                max(0, item.amount - int(count)),
                time.time() + max(int(ttl_ms), 0) / 1000,
                int(count) > item.amount,
            )
            if window.breached:
                return window
            if tightest is None or window.remaining < tightest.remaining:
                tightest = window
        assert tightest is not None  # parse_many refuses an empty limit string
        return tightest


class AddressFailures:
    """Failed token lookups per client address (AUTH_FAILURE_LIMIT), so that guessing tokens
    costs the database a bounded number of lookups: over the limit, a request that carries a
    token is refused (429) before the lookup, whatever its token.

    Counted in Redis, shared by every API process, under limits' keys
    (`.../auth-failure:<address>/global/...`). The check before a lookup is local: a process
    remembers an address it saw go over the limit until its window ends, so a request with a
    valid token costs no Redis round trip of its own; an address over the limit gets at most
    one more lookup per API process per window. Redis down: failures are not counted (fail
    open, logged), as for the per-token limits."""

    MAX_REMEMBERED = 10_000

    def __init__(self, settings: Settings) -> None:
        self.windows = TokenLimits(settings, AUTH_FAILURE_LIMIT)
        self._blocked: dict[str, Window] = {}
        self._lock = threading.Lock()

    def refuse_if_blocked(self, address: str) -> None:
        window = self._blocked.get(address)
        if window is None:
            return
        if window.reset_at <= time.time():
            self._blocked.pop(address, None)
            return
        raise self._refusal(window)

    def failed(self, address: str) -> None:
        """Count a failed lookup; raise the 429 when it crossed the limit."""
        try:
            window = self.windows.hit(f"auth-failure:{address}")
        except Exception as exc:  # noqa: BLE001 - fail open, as the per-token limits do
            log.error(
                "rate limit storage unreachable, failed lookup not counted: %s", type(exc).__name__
            )
            return
        if not window.breached:
            return
        with self._lock:
            if len(self._blocked) >= self.MAX_REMEMBERED:
                now = time.time()
                self._blocked = {a: w for a, w in self._blocked.items() if w.reset_at > now}
                if len(self._blocked) >= self.MAX_REMEMBERED:
                    self._blocked.clear()  # many addresses at once: Redis still counts them
            self._blocked[address] = window
        raise self._refusal(window)

    @staticmethod
    def _refusal(window: Window) -> ProblemError:
        retry_after = max(1, math.ceil(window.reset_at - time.time()))
        return ProblemError(
            429,
            "too-many-requests",
            "Too Many Requests",
            f"more than {window.item} failed authentications from this "
            f"address; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


def client_address() -> str:
    return request.remote_addr or "127.0.0.1"


def rate_key() -> str:
    who = g.get("principal")
    if who is not None:
        return f"token:{who.token_id}"
    return f"addr:{client_address()}"


def install_limiter(app: Flask, settings: Settings) -> TokenLimits:
    """Install after the auth hook, so the key is the authenticated token. The auth hook
    reads `auth_failures(app)` before and after its lookup."""
    limits = TokenLimits(settings)
    app.extensions["modelcert.auth_failures"] = AddressFailures(settings)

    @app.before_request
    def check_rate_limit() -> None:
        if not request.path.startswith("/v1/"):
            return
        try:
            window = limits.hit(rate_key())
        except Exception as exc:  # noqa: BLE001 - fail open: a Redis outage never refuses a request
            log.error("rate limit storage unreachable, request let through: %s", type(exc).__name__)
            return
        g.rate_window = window
        if window.breached:
            retry_after = max(1, math.ceil(window.reset_at - time.time()))
            raise ProblemError(
                429,
                "too-many-requests",
                "Too Many Requests",
                f"more than {window.item} for this API token; retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )

    @app.after_request
    def rate_headers(response: Response) -> Response:
        window: Window | None = g.get("rate_window")
        if window is not None:
            response.headers["X-RateLimit-Limit"] = str(window.item.amount)
            response.headers["X-RateLimit-Remaining"] = str(window.remaining)
            response.headers["X-RateLimit-Reset"] = str(int(window.reset_at))
        return response

    return limits


def auth_failures(app: Flask) -> AddressFailures:
    failures: AddressFailures = app.extensions["modelcert.auth_failures"]
    return failures
