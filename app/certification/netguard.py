"""SSRF guard: which addresses a certification may connect to, checked where it connects.

Three layers, one policy:
- `check_url` at target creation (literal addresses in any spelling, special names, and
  whatever the name resolves to now);
- `GuardedResolver` for aiohttp: every address DNS returns at run time is checked, so a name
  that resolved to a public address at creation and to 127.0.0.1 now (DNS rebinding) is caught;
- `guarded_socket_factory`: the address of the socket actually opened is checked last.

Loopback and private ranges (RFC 1918, CGNAT, IPv6 ULA) pass only with `allow_private`;
link-local (cloud metadata), multicast, unspecified, reserved and broadcast never pass.
Imports nothing from Flask, Celery or SQLAlchemy.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from app.certification.providers.http import BlockedAddressError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Allowed only with allow_private (local development, the reference endpoint).
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "::1/128",
        "fc00::/7",
    )
)
_LINK_LOCAL = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10"))
_NAT64 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# Names that mean "this machine" or "the cloud's metadata service" without any DNS.
_SPECIAL_NAMES = (
    "localhost",
    "localhost.localdomain",
    "ip6-localhost",
    "ip6-loopback",
    "metadata",
    "metadata.google.internal",
    "instance-data",
)
RESOLVE_TIMEOUT = 2.0


@dataclass(frozen=True)
class AddressPolicy:
    allow_private: bool = False

    def reason(self, address: IPAddress) -> str | None:
        """Why `address` is refused, or None when it may be connected to."""
        embedded = embedded_ipv4(address)
        if embedded is not None:
            inner = self.reason(embedded)
            return f"{inner} (embedded in {address})" if inner else None
        if address.is_unspecified:
            return "an unspecified address"
        if any(address in net for net in _LINK_LOCAL):
            return "a link-local address (cloud metadata lives here)"
        if address.is_multicast:
            return "a multicast address"
        if isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address(
            "255.255.255.255"
        ):
            return "the broadcast address"
        private = next((net for net in _PRIVATE if address in net), None)
        if private is not None:
            if self.allow_private:
                return None
            kind = "a loopback" if address.is_loopback else "a private"
            return (
                f"{kind} address ({private}); set MODELCERT_ALLOW_PRIVATE_TARGETS=true "
                "only for local development"
            )
        if address.is_reserved:
            return "a reserved address"
        if not address.is_global:
            return "a non-public address"
        return None

    def check(self, address: IPAddress | str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
        why = self.reason(ip)
        if why is not None:
            raise BlockedAddressError(f"refused to connect to {ip}: {why}")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden in an IPv4-mapped, IPv4-compatible, NAT64 or 6to4 address."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.teredo is not None:
        return address.teredo[1]
    return None


def parse_ipv4_legacy(host: str) -> ipaddress.IPv4Address | None:
    """inet_aton's spellings: 2130706433, 0x7f.1, 0177.0.0.1, 127.1 (one to four parts)."""
    parts = host.split(".")
    if host.endswith("."):
        parts = parts[:-1]
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                value = int(part[2:] or "0", 16)
            elif len(part) > 1 and part.startswith("0"):
                value = int(part, 8)
            else:
                value = int(part, 10) if part.isdigit() else -1
        except ValueError:
            return None
        if value < 0:
            return None
        values.append(value)
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    number = number * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(number)


def literal_address(host: str) -> IPAddress | None:
    """The address a host names by itself (no DNS), in any spelling a resolver accepts."""
    host = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return parse_ipv4_legacy(host)


def normalised_host(url: str) -> str:
    """The host as aiohttp will see it (IDNA-normalised, lower case)."""
    try:
        host = URL(url).host
    except (ValueError, UnicodeError) as exc:
        raise BlockedAddressError(f"the URL's host cannot be read ({exc})") from None
    if not host:
        raise BlockedAddressError("the URL names no host")
    return host.lower().rstrip(".")


def resolve(host: str, port: int, timeout: float = RESOLVE_TIMEOUT) -> list[str] | None:
    """Addresses of `host` now, or None when it does not resolve within `timeout`."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        infos = future.result(timeout=timeout)
    except (OSError, UnicodeError, concurrent.futures.TimeoutError):
        return None
    finally:
        pool.shutdown(wait=False)
    return sorted({str(info[4][0]) for info in infos})


def check_url(
    url: str, policy: AddressPolicy, resolver: Callable[[str, int], list[str] | None] = resolve
) -> None:
    """Refuse a target URL whose host is, or now resolves to, a blocked address.

    A name that does not resolve is accepted here: the run-time check is the one that counts.
    """
    host = normalised_host(url)
    address = literal_address(host)
    if address is not None:
        policy.check(address)
        return
    if not policy.allow_private and (
        host in _SPECIAL_NAMES or host.endswith((".localhost", ".internal", ".local"))
    ):
        raise BlockedAddressError(
            f"refused host {host!r}: it names this machine or a link-local service"
        )
    parsed = URL(url)
    for found in resolver(host, parsed.port or 80) or []:
        policy.check(found)


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` (aiohttp's default) and refuses when any answer is blocked."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner

    @property
    def inner(self) -> AbstractResolver:
        if self._inner is None:  # created in the running loop, as aiohttp requires
            self._inner = aiohttp.ThreadedResolver()
        return self._inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        literal = literal_address(host)
        if literal is not None:
            self.policy.check(literal)
        answers = await self.inner.resolve(host, port, family)
        for answer in answers:
            self.policy.check(answer["host"])
        return answers

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def guarded_socket_factory(policy: AddressPolicy) -> Callable[[Any], socket.socket]:
    """aiohttp `socket_factory`: the last check, on the address the socket connects to."""

    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if policy.reason(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])) is not None:
            # One message for every address, so happy eyeballs keeps this exception's type.
            raise BlockedAddressError(
                "refused to connect: the endpoint's address is blocked by the SSRF guard"
            )
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setblocking(False)
        return sock

    return factory
