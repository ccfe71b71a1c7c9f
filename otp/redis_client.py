"""The Redis client for a URL.  (Sentinel and Cluster URLs come with the scale-out work.)"""

from __future__ import annotations

from urllib.parse import urlparse

import redis.asyncio as aioredis

from otp.errors import ConfigError

SCHEMES = ("redis", "rediss", "unix")


def connect(url: str) -> aioredis.Redis:
    scheme = urlparse(url).scheme
    if scheme not in SCHEMES:
        raise ConfigError(f"OTP_REDIS_URL: unsupported scheme {scheme!r}; use one of {', '.join(SCHEMES)}://")
    return aioredis.Redis.from_url(
        url,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        health_check_interval=10,
        max_connections=256,
    )
