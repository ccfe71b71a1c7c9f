"""One webhook POST, defended against SSRF: the address connected to is the one checked.

aiohttp resolves the host through `GuardedResolver`, which drops every address otp.core.urlguard
refuses, so a name that resolved to a public address when the webhook was saved and resolves to
127.0.0.1 now (DNS rebinding) finds nothing to connect to. A literal IP never reaches a resolver
and is checked here. Redirects are not followed (a 3xx is a refusal), the response body is read
to at most `MAX_BODY` bytes, and the whole exchange has one deadline (connect included).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from otp.core import urlguard
from otp.errors import InvalidInput

MAX_BODY = 4096
DEFAULT_TIMEOUT = 5.0


class AddressRefused(OSError):
    """The host resolves only to addresses otp doesn't post to."""


@dataclass(frozen=True)
class PostResult:
    status: int  # the HTTP status; 0: no answer (timeout, connection error); -1: refused before sending
    error: str = ""

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Worth another try later: no answer, a server error, 408 or 429."""
        return self.status == 0 or self.status >= 500 or self.status in (408, 429)


class GuardedResolver(AbstractResolver):
    def __init__(self, resolve: urlguard.Resolve, *, allow_private: bool) -> None:
        self._resolve = resolve
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        addresses = await self._resolve(host, port)
        allowed = [a for a in addresses if urlguard.address_allowed(a, allow_private=self._allow_private)]
        if not allowed:
            raise AddressRefused(f"{host} resolves to no address otp posts to")
        results: list[ResolveResult] = []
        for address in allowed:
            six = ":" in address
            results.append(
                {
                    "hostname": host,
                    "host": address,
                    "port": port,
                    "family": socket.AF_INET6 if six else socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        return results

    async def close(self) -> None:
        return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class WebhookPoster:
    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float = DEFAULT_TIMEOUT,
        resolve: urlguard.Resolve = urlguard.system_resolve,
    ) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self._resolve = resolve
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self._resolve, allow_private=self.allow_private),
                use_dns_cache=False,  # resolve (and check) at every connection
                limit=64,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout, connect=self.timeout),
                trust_env=False,  # no proxy from the environment: the checked address is the one used
            )
        return self._session

    async def post(self, url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> PostResult:
        try:
            target = urlguard.parse(url, "url", allow_private=self.allow_private)
        except InvalidInput as exc:
            return PostResult(-1, exc.message)
        if _is_ip(target.host) and not urlguard.address_allowed(target.host, allow_private=self.allow_private):
            return PostResult(-1, "the URL names an address otp doesn't post to")
        body = urlencode(params)
        sent_headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        try:
            async with self._client().post(url, data=body, headers=sent_headers, allow_redirects=False) as response:
                await response.content.read(MAX_BODY)  # at most this much; the rest goes with the connection
                return PostResult(response.status)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused) or isinstance(exc.__cause__, AddressRefused):
                return PostResult(-1, str(exc.os_error))
            return PostResult(0, type(exc).__name__)
        except AddressRefused as exc:
            return PostResult(-1, str(exc))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return PostResult(0, type(exc).__name__)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
