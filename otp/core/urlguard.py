"""Which URLs otp's servers may fetch on a tenant's behalf (webhooks): the SSRF rule, its one home.

A webhook URL is tenant input that the delivery loop will POST to from inside the operator's
network. Refused: anything but http(s), credentials in the URL, and, unless the operator allows
private targets (``OTP_WEBHOOK_ALLOW_PRIVATE``, for development and tests), plain http and any host
that resolves to a loopback, private, link-local, shared, multicast, reserved or unspecified
address. The address rule is applied twice: when the webhook is saved (to tell its owner at once)
and on the address actually connected to at each send (edge/webhook_sender.py), so a name that
resolves elsewhere later (DNS rebinding) is refused then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from otp.errors import InvalidInput

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT = 3.0
# Told with the refusals it lifts: a developer pointing a webhook at a local receiver learns the switch.
ALLOW_PRIVATE_HINT = "OTP_WEBHOOK_ALLOW_PRIVATE=1 allows it, for development only"
# host, port → the addresses it resolves to (injectable: the tests' resolver)
Resolve = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int


# IPv6 ranges that carry an IPv4 address in their last 32 bits and reach it through a translator
# (NAT64, RFC 6052 and 8215) or the host's own stack (IPv4-compatible, IPv4-translated). Python
# calls them global whatever IPv4 address they carry: 64:ff9b::a9fe:a9fe is the cloud metadata
# address wherever the network has NAT64.
_EMBEDDING: tuple[ipaddress.IPv6Network, ...] = tuple(
    ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96", "::ffff:0:0/96", "::ffff:0:0:0/96")
)


def _embedded(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (mapped, 6to4, Teredo, the ranges above)."""
    found = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in network for network in _EMBEDDING) and int(ip) & 0xFFFFFFFF > 1:  # not :: or ::1
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def address_allowed(address: str, *, allow_private: bool) -> bool:
    """Whether otp may connect to this IP address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.is_multicast or ip.is_unspecified:
        return False
    if allow_private:
        return True
    # is_global is False for every loopback, private, link-local (cloud metadata), shared (CGNAT),
    # documentation and reserved range; an IPv6 address that stands for an IPv4 one is judged by
    # that one too (::ffff:127.0.0.1 is 127.0.0.1).
    embedded = _embedded(ip) if isinstance(ip, ipaddress.IPv6Address) else []
    return ip.is_global and all(address_allowed(str(v4), allow_private=False) for v4 in embedded)


def parse(raw: str, field: str, *, allow_private: bool) -> Target:
    """The URL's parts, or InvalidInput naming ``field`` and the reason."""
    url = raw.strip()
    if not url or len(url) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise InvalidInput(f"must be an absolute http(s) URL of at most {MAX_URL_LENGTH} characters", field=field)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("is not a valid URL", field=field) from None
    if parts.scheme not in ("https", "http"):
        raise InvalidInput("must be an http or https URL" if allow_private else "must be an https URL", field=field)
    if parts.scheme == "http" and not allow_private:
        raise InvalidInput(f"must be an https URL (plain http: {ALLOW_PRIVATE_HINT})", field=field)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidInput("must not carry credentials (user:password@)", field=field)
    host = parts.hostname or ""
    if not host:
        raise InvalidInput("must name a host", field=field)
    return Target(url, parts.scheme, host, port or (443 if parts.scheme == "https" else 80))


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check(raw: str, field: str, *, allow_private: bool, resolve: Resolve = system_resolve) -> str:
    """The URL, once its scheme, form and every address its host resolves to pass the rule."""
    target = parse(raw, field, allow_private=allow_private)
    try:
        addresses = await asyncio.wait_for(resolve(target.host, target.port), RESOLVE_TIMEOUT)
    except (OSError, TimeoutError, UnicodeError, ValueError):
        # UnicodeError: a name IDNA can't encode (a label over 63 characters, say).
        raise InvalidInput(f"names a host that does not resolve ({target.host[:64]})", field=field) from None
    if not addresses:
        raise InvalidInput(f"names a host that does not resolve ({target.host[:64]})", field=field)
    if not all(address_allowed(a, allow_private=allow_private) for a in addresses):
        raise InvalidInput(
            "resolves to a loopback, private, link-local or reserved address, which otp does not post to"
            + ("" if allow_private else f" ({ALLOW_PRIVATE_HINT})"),
            field=field,
        )
    return target.url
