"""Shared per-endpoint limits in Redis: a token bucket (rps) and a leased semaphore
(max concurrency), shared by every worker process and machine.

Each endpoint (host + region) has one bucket; a 429 halves its rate for a while and each
success adds a little back (AIMD). Concurrency slots are members of a sorted set scored by
their expiry, so the slots of a killed worker lapse on their own. A job leases slots in a
block (up to its share: the declared maximum divided by the jobs using the endpoint) and
hands them to its requests locally, so a request costs no Redis round trip for its slot; a
background task renews the block every second, gives back what exceeds a shrunken share, and
`aclose` returns the whole block at the job's end. Redis trouble fails open: the endpoint's
own 429s and the sample retries still protect it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

log = logging.getLogger(__name__)
T = TypeVar("T")
KEY_PREFIX = "modelcert:endpoint"
SLOT_LEASE_SECONDS = 120
HOLDER_LEASE_SECONDS = 10  # a job counts towards the share split while it renews this
RENEW_SECONDS = 1.0
MAX_SLOTS_PER_JOB = 512  # suites.RunSpec caps concurrency at 512: a job never runs more
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

# Lease up to ARGV[3] slots for holder ARGV[2] (which holds ARGV[4] already), never beyond
# the declared maximum ARGV[1] nor the holder's share of it (maximum / live holders).
# Members are named holder:index from ARGV[6]. Answers {slots granted, share}.
ACQUIRE_SLOTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[7]), ARGV[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]) * 2)
local max = tonumber(ARGV[1])
local share = math.ceil(max / redis.call('ZCARD', KEYS[2]))
local n = math.min(tonumber(ARGV[3]), max - redis.call('ZCARD', KEYS[1]),
                   share - tonumber(ARGV[4]))
local first = tonumber(ARGV[6])
for i = 0, n - 1 do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[2] .. ':' .. (first + i))
end
if n > 0 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]) * 2) end
return {math.max(n, 0), share}
"""

# Renew holder ARGV[1]'s slots (ARGV[5..]) for ARGV[2] s and its holder entry for ARGV[3] s;
# answers its current share of the declared maximum ARGV[4].
RENEW_SLOTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]) * 2)
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[i])
end
if #ARGV >= 5 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) * 2) end
return math.ceil(tonumber(ARGV[4]) / redis.call('ZCARD', KEYS[2]))
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
    """One of the job's leased slots, lent to one request; `release` lends it again."""

    limiter: EndpointLimiter

    async def release(self) -> None:
        self.limiter._lend_back()


class EndpointLimiter:
    """The gate awaited before every request; returns a Slot to release when one is held.

    Talks to Redis with redis.asyncio on the job's own event loop (no thread hop per request);
    the client is created on first use inside the loop and closed by `aclose` at the job's end.
    Concurrency slots are leased per job in a block and lent to requests locally.
    """

    def __init__(
        self,
        redis_url: str,
        key: str,
        rps: float | None,
        max_concurrency: int | None,
        lease_seconds: int = SLOT_LEASE_SECONDS,
    ) -> None:
        self.redis_url = redis_url
        self.key = key
        self.rps = rps
        self.max_concurrency = max_concurrency
        self.lease_seconds = lease_seconds
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self.throttled = False  # set after a 429 until the next success (avoids Redis calls)
        self._pending: set[asyncio.Task[object]] = set()
        self.holder = uuid.uuid4().hex
        self._members: list[str] = []  # slots leased in Redis by this job
        self._free = 0  # of those, not lent to a request right now
        self._next_index = 0
        self._share = min(max_concurrency or 0, MAX_SLOTS_PER_JOB)
        self._acquiring = False
        self._retry_at = 0.0
        self._lent_back = asyncio.Event()
        self._renewer: asyncio.Task[None] | None = None
        self._closing = False

    async def client(self) -> aioredis.Redis | None:
        if self._client is None:
            try:
                self._client = aioredis.Redis.from_url(
                    self.redis_url, socket_connect_timeout=1, socket_timeout=2
                )
            except (redis.RedisError, ValueError) as exc:
                log.warning("rate_limit_unavailable", extra={"error": type(exc).__name__})
                return None
            self._scripts = {
                name: self._client.register_script(text)
                for name, text in (
                    ("take", TAKE_TOKEN),
                    ("acquire", ACQUIRE_SLOTS),
                    ("renew", RENEW_SLOTS),
                    ("adjust", ADJUST),
                )
            }
        return self._client

    async def _call(self, awaitable: Awaitable[T]) -> T | None:
        try:
            return await awaitable
        except redis.RedisError as exc:
            log.warning("rate_limit_unavailable", extra={"error": type(exc).__name__})
            return None

    @property
    def _keys(self) -> list[str]:
        return [self.key + ":slots", self.key + ":holders"]

    @property
    def _maximum(self) -> int:
        """The declared maximum concurrency (slots are leased only when there is one)."""
        return self.max_concurrency or 0

    def _cap(self) -> int:
        return max(1, min(self._share, MAX_SLOTS_PER_JOB))

    async def _lease(self, want: int) -> int | None:
        """Lease up to `want` more slots in Redis; None when Redis is unavailable."""
        answer = await self._call(
            self._scripts["acquire"](
                keys=self._keys,
                args=[
                    self._maximum,
                    self.holder,
                    want,
                    len(self._members),
                    self.lease_seconds,
                    self._next_index,
                    HOLDER_LEASE_SECONDS,
                ],
            )
        )
        if answer is None:
            return None
        granted, share = (int(x) for x in answer)
        self._share = share
        self._members += [f"{self.holder}:{self._next_index + i}" for i in range(granted)]
        self._next_index += granted
        self._free += granted
        if granted and self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())
        return granted

    async def _take_slot(self) -> Slot | None:
        """A slot of the job's block; leases more (up to the share) when none is free.
        None when Redis is unavailable (fail open)."""
        loop = asyncio.get_running_loop()
        while True:
            if self._free > 0:
                self._free -= 1
                return Slot(self)
            short = len(self._members) < self._cap()
            if short and not self._acquiring and loop.time() >= self._retry_at:
                self._acquiring = True
                try:
                    granted = await self._lease(self._cap() - len(self._members))
                finally:
                    self._acquiring = False
                if granted is None:
                    return None
                if granted:
                    self._lent_back.set()  # others waiting may take the new slots
                    continue
                self._retry_at = loop.time() + 0.05 + random.random() * 0.1
            self._lent_back.clear()
            timeout = max(0.01, self._retry_at - loop.time()) if short else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lent_back.wait(), timeout)

    def _lend_back(self) -> None:
        """A request is done with its slot: lend it again, or give it back to Redis when the
        job holds more than its share (another job is waiting for the endpoint)."""
        if len(self._members) > self._cap() and self._client is not None:
            member = self._members.pop()
            self._background(self._client.zrem(self.key + ":slots", member))
            return
        self._free += 1
        self._lent_back.set()

    def _background(self, awaitable: Awaitable[object]) -> None:
        task = asyncio.get_running_loop().create_task(self._call(awaitable))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _renew_forever(self) -> None:
        """Keep the block's lease alive; shrink to a smaller share as free slots come back."""
        while not self._closing:
            await asyncio.sleep(RENEW_SECONDS)
            if self._closing:
                return
            share = await self._call(
                self._scripts["renew"](
                    keys=self._keys,
                    args=[
                        self.holder,
                        self.lease_seconds,
                        HOLDER_LEASE_SECONDS,
                        self._maximum,
                        *self._members,
                    ],
                )
            )
            if share is not None:
                self._share = int(share)
            surplus = min(self._free, len(self._members) - self._cap())
            if surplus > 0 and self._client is not None:
                giving, self._members = self._members[:surplus], self._members[surplus:]
                self._free -= surplus
                await self._call(self._client.zrem(self.key + ":slots", *giving))

    async def __call__(self) -> Slot | None:
        if await self.client() is None:
            return None
        slot = await self._take_slot() if self.max_concurrency else None
        if self.rps:
            rate = self.rps
            wait = await self._call(
                self._scripts["take"](
                    keys=[self.key + ":bucket", self.key + ":aimd"], args=[rate, max(1.0, rate)]
                )
            )
            if wait is not None and float(wait) > 0:
                await asyncio.sleep(min(60.0, float(wait)))
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
            value = await self._call(
                self._scripts["adjust"](
                    keys=[self.key + ":aimd"], args=[direction, PENALTY_SECONDS]
                )
            )
            text = value.decode() if isinstance(value, bytes) else str(value)
            if direction == "up" and text in ("None", "1"):
                self.throttled = False

        self._background(adjust())

    async def aclose(self) -> None:
        """End of the job: stop renewing, give the leased slots back, let pending adjustments
        finish, close the connection pool."""
        self._closing = True
        if self._renewer is not None:
            # Bounded: a cancel that lands inside a Redis call's own timeout can be turned into
            # a (swallowed) timeout error, so never wait on the task without a limit.
            self._renewer.cancel()
            await asyncio.wait({self._renewer}, timeout=RENEW_SECONDS + 3)
            self._renewer = None
        if self._client is not None and self.max_concurrency:
            pipe = self._client.pipeline(transaction=False)
            if self._members:
                pipe.zrem(self.key + ":slots", *self._members)
            pipe.zrem(self.key + ":holders", self.holder)
            await self._call(pipe.execute())
            self._members, self._free = [], 0
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def gate_for(
    redis_url: str,
    base_url: str,
    region: str | None,
    rps: float | None,
    max_concurrency: int | None,
) -> EndpointLimiter | None:
    if not rps and not max_concurrency:
        return None
    return EndpointLimiter(redis_url, endpoint_key(base_url, region), rps, max_concurrency)


Gate = Callable[[], Awaitable[Slot | None]]
