"""Per-token rate limits (Flask-Limiter on Redis): 429 problem+json with Retry-After.

Keyed by the API token's id (the remote address when there is none). Probes, /metrics and
the OpenAPI document are exempt. When Redis is unreachable the limiter fails open: the
request goes through and the error is logged, never a 500.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, g, has_app_context, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem
from limits.storage import RedisStorage, Storage
from limits.strategies import STRATEGIES, FixedWindowRateLimiter
from limits.util import WindowStats

from app.config import Settings

KEY_PREFIX = "modelcert-ratelimit"
STRATEGY = "fixed-window-one-trip"
log = logging.getLogger(__name__)


class OneTripFixedWindow(FixedWindowRateLimiter):
    """limits' fixed window, whose hit on Redis also returns the window's state.

    After each hit Flask-Limiter reads the window again for the X-RateLimit-* headers (the
    count, then the TTL: two more round trips, a tenth of a POST's CPU in the API's profile).
    Here one script increments, sets the expiry on the window's first hit (as limits' own
    script does) and returns the count with the TTL; the same request's read of that window
    is answered from it. Any other read, or another storage, goes to limits' own code.
    """

    _SCRIPT = """
local current = redis.call("incrby", KEYS[1], tonumber(ARGV[2]))
if tonumber(current) == tonumber(ARGV[2]) then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("pttl", KEYS[1])}
"""

    def __init__(self, storage: Storage) -> None:
        super().__init__(storage)
        self._script = (storage.get_connection().register_script(self._SCRIPT)
                        if isinstance(storage, RedisStorage) else None)

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        if self._script is None or not has_app_context():
            return super().hit(item, *identifiers, cost=cost)
        assert isinstance(self.storage, RedisStorage)
        key = item.key_for(*identifiers)
        count, ttl_ms = self._script([self.storage.prefixed_key(key)],
                                     [item.get_expiry(), cost])
        g.rate_window = (key, WindowStats(time.time() + max(int(ttl_ms), 0) / 1000,
                                          max(0, item.amount - int(count))))
        return int(count) <= item.amount

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        seen = g.pop("rate_window", None) if has_app_context() else None
        if seen is not None and seen[0] == item.key_for(*identifiers):
            return seen[1]  # type: ignore[no-any-return]
        return super().get_window_stats(item, *identifiers)


STRATEGIES[STRATEGY] = OneTripFixedWindow  # type: ignore[assignment]


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
        storage_uri=str(settings.redis_url), key_prefix=KEY_PREFIX, strategy=STRATEGY,
        storage_options={"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        swallow_errors=True,
    )
