"""How a webhook delivery reaches its receiver: through the engine's SSRF guard, so that
what is connected to is what was checked (DNS rebinding gains nothing), and what the delivery
log may say about a receiver that could not be reached.
"""

from __future__ import annotations

import asyncio

import aiohttp

from app.certification.netguard import (
    AddressPolicy,
    GuardedResolver,
    check_url,
    guarded_socket_factory,
    resolve,
)
from app.certification.providers.http import BlockedAddressError

DELIVERY_TIMEOUT = 5.0

# What the delivery log says of a receiver that could not be reached: fixed phrases, never
# the resolver's or the socket's message, or the address a name resolved to (the log of a
# webhook pointed at internal names would otherwise map them: which resolve, to what, which
# ports are open).
CONNECTION_FAILED = "connection failed"
BLOCKED = "blocked by the SSRF guard"


class DeliveryFailed(Exception):
    """The receiver could not be reached (no address, refused, reset, timed out, TLS)."""


class Unresolvable(BlockedAddressError):
    """The receiver's name does not resolve now: nothing is sent (the attempt is retried)."""


def resolved_or_refused(host: str, port: int) -> list[str]:
    """check_url's resolver for receivers: a name that does not resolve is refused, not
    waved through (it would be resolved again, unchecked, by whoever connects)."""
    found = resolve(host, port)
    if not found:
        raise Unresolvable(f"the host {host!r} does not resolve")
    return found


def send(url: str, body: bytes, headers: dict[str, str], policy: AddressPolicy) -> int:
    """POST `body` to `url`; its status. The name is checked, then resolved once more by the
    connection itself through the engine's guard (GuardedResolver: every address checked;
    the socket factory: the address connected to checked last), so what is connected to is
    what was checked, with the URL's Host and SNI. BlockedAddressError when refused;
    DeliveryFailed when unreachable."""
    try:
        check_url(url, policy, resolver=resolved_or_refused)
    except Unresolvable:
        raise DeliveryFailed() from None
    try:
        return asyncio.run(_post(url, body, headers, policy))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        if _blocked(exc):
            raise BlockedAddressError() from None
        raise DeliveryFailed() from None


async def _post(url: str, body: bytes, headers: dict[str, str], policy: AddressPolicy) -> int:
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy),
        socket_factory=guarded_socket_factory(policy),
        use_dns_cache=False,
        limit=1,
    )
    timeout = aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session,
        session.post(url, data=body, headers=headers, allow_redirects=False) as response,
    ):
        return response.status


def _blocked(exc: BaseException | None) -> bool:
    """Whether the guard refused (aiohttp wraps its error in a connector error)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, BlockedAddressError):
            return True
        seen.add(id(exc))
        exc = getattr(exc, "os_error", None) or exc.__cause__ or exc.__context__
    return False
