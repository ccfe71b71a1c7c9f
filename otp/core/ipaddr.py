"""End-user IP addresses, as callers report them: one parser for every field that takes one, and the
scope a per-IP limit counts in."""

from __future__ import annotations

import ipaddress

from otp.errors import InvalidInput

# An end user controls every address of the /64 their router hands out (SLAAC, privacy
# addresses), so a per-address limit on IPv6 would be one limit per guess.
IPV6_LIMIT_PREFIX = 64


def parse_ip(value: str, *, field: str) -> str:
    """The canonical text of an IPv4 or IPv6 address (``2001:DB8::1`` → ``2001:db8::1``), so one
    address is always one value. Zone ids (``fe80::1%eth0``) are refused: they name an interface
    of the reporting host, not a user, and let one address pass as many."""
    text = value.strip()
    if "%" in text:
        raise InvalidInput("must be an IP address without a zone id (%…)", field=field)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidInput("is not an IPv4 or IPv6 address", field=field) from None


def ip_scope(ip: str) -> str:
    """What a per-IP limit counts: the address for IPv4, its /64 network for IPv6."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)  # ::ffff:192.0.2.1 is 192.0.2.1
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/{IPV6_LIMIT_PREFIX}", strict=False))
    return str(address)
