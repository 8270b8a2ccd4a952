"""Shared per-endpoint limits in Redis: a token bucket (rps) and a leased semaphore
(max concurrency), shared by every worker process and machine.

Each endpoint (host + region) has one bucket; a 429 halves its rate for a while and each
success adds a little back (AIMD). Concurrency slots are members of a sorted set scored by
their expiry, so the slots of a killed worker lapse on their own. Redis trouble fails open:
the endpoint's own 429s and the sample retries still protect it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

log = logging.getLogger(__name__)
KEY_PREFIX = "modelcert:endpoint"
SLOT_LEASE_SECONDS = 120
PENALTY_SECONDS = 30

# Reservation bucket: always take a token, answer how long to wait for it (never negative).
TAKE_TOKEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local factor = tonumber(redis.call('GET', KEYS[2]) or '1')
local rate = tonumber(ARGV[1]) * factor
local burst = math.max(1, tonumber(ARGV[2]) * factor)
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or burst)
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or now)
tokens = math.min(burst, tokens + (now - ts) * rate) - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], 120)
if tokens >= 0 then return '0' end
return tostring(-tokens / rate)
"""

ACQUIRE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return 1
end
return 0
"""

# AIMD on the rate factor: ARGV[1] = 'down' (a 429) or 'up' (a success).
ADJUST = """
local factor = tonumber(redis.call('GET', KEYS[1]) or '1')
if ARGV[1] == 'down' then
  factor = math.max(0.05, factor * 0.5)
  redis.call('SET', KEYS[1], tostring(factor), 'EX', tonumber(ARGV[2]))
elseif factor < 1 then
  factor = factor + 0.02
  if factor >= 1 then redis.call('DEL', KEYS[1])
  else redis.call('SET', KEYS[1], tostring(factor), 'KEEPTTL') end
end
return tostring(factor)
"""


def endpoint_key(base_url: str, region: str | None) -> str:
    parts = urlsplit(base_url)
    return f"{KEY_PREFIX}:{parts.hostname}:{parts.port or ''}:{region or '-'}"


@dataclass
class Slot:
    limiter: EndpointLimiter
    member: str

    async def release(self) -> None:
        client = await self.limiter.client()
        if client is not None:
            await self.limiter._call(client.zrem(self.limiter.key + ":slots", self.member))


class EndpointLimiter:
    """The gate awaited before every request; returns a Slot to release when one is held.

    Talks to Redis with redis.asyncio on the job's own event loop (no thread hop per request);
    the client is created on first use inside the loop and closed by `aclose` at the job's end.
    """

    def __init__(self, redis_url: str, key: str, rps: float | None,
                 max_concurrency: int | None, lease_seconds: int = SLOT_LEASE_SECONDS) -> None:
        self.redis_url = redis_url
        self.key = key
        self.rps = rps
        self.max_concurrency = max_concurrency
        self.lease_seconds = lease_seconds
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self.throttled = False  # set after a 429 until the next success (avoids Redis calls)
        self._pending: set[asyncio.Task[object]] = set()

    async def client(self) -> aioredis.Redis | None:
        if self._client is None:
            try:
                self._client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=1,
                                                       socket_timeout=2)
            except (redis.RedisError, ValueError) as exc:
                log.warning("rate_limit_unavailable", extra={"error": type(exc).__name__})
                return None
            self._scripts = {name: self._client.register_script(text) for name, text in
                             (("take", TAKE_TOKEN), ("acquire", ACQUIRE_SLOT),
                              ("adjust", ADJUST))}
        return self._client

    async def _call(self, awaitable: Awaitable[object]) -> object:
        try:
            return await awaitable
        except redis.RedisError as exc:
            log.warning("rate_limit_unavailable", extra={"error": type(exc).__name__})
            return None

    async def __call__(self) -> Slot | None:
        if await self.client() is None:
            return None
        slot = None
        if self.max_concurrency:
            member = uuid.uuid4().hex
            while True:
                got = await self._call(self._scripts["acquire"](
                    keys=[self.key + ":slots"],
                    args=[self.max_concurrency, member, self.lease_seconds]))
                if got is None or int(got) == 1:  # type: ignore[call-overload]
                    slot = Slot(self, member) if got is not None else None
                    break
                await asyncio.sleep(0.05 + random.random() * 0.1)
        if self.rps:
            rate = self.rps
            wait = await self._call(self._scripts["take"](
                keys=[self.key + ":bucket", self.key + ":aimd"], args=[rate, max(1.0, rate)]))
            if wait is not None and float(wait) > 0:  # type: ignore[arg-type]
                await asyncio.sleep(min(60.0, float(wait)))  # type: ignore[arg-type]
        return slot

    def observe(self, outcome: str) -> None:
        """Fed from the response hook (in the event loop thread): AIMD on 429s, in the
        background so a request never waits for it."""
        if outcome == "rate_limited":
            self.throttled = True
            self._adjust_soon("down")
        elif outcome == "ok" and self.throttled:
            self._adjust_soon("up")

    def _adjust_soon(self, direction: str) -> None:
        if self._client is None or "adjust" not in self._scripts:
            return

        async def adjust() -> None:
            value = await self._call(self._scripts["adjust"](
                keys=[self.key + ":aimd"], args=[direction, PENALTY_SECONDS]))
            text = value.decode() if isinstance(value, bytes) else str(value)
            if direction == "up" and text in ("None", "1"):
                self.throttled = False

        task = asyncio.get_running_loop().create_task(adjust())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def aclose(self) -> None:
        """End of the job: let pending adjustments finish, close the connection pool."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def gate_for(redis_url: str, base_url: str, region: str | None, rps: float | None,
             max_concurrency: int | None) -> EndpointLimiter | None:
    if not rps and not max_concurrency:
        return None
    return EndpointLimiter(redis_url, endpoint_key(base_url, region), rps, max_concurrency)


Gate = Callable[[], Awaitable[Slot | None]]
