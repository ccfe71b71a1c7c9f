"""The Redis client for ``OTP_REDIS_URL``: standalone, Sentinel or Cluster, chosen by the URL.

Accepted forms (anything else is refused at startup, naming the variable):

- ``redis://[user:password@]host[:port][/db]``, ``rediss://…`` (TLS), ``unix:///path/to.sock[?db=N]``
- ``redis+sentinel://[user:password@]host:port,host:port,…/service_name[/db]``
  — the hosts are Sentinels (port 26379 if left out); the client asks them for the master of
  ``service_name`` and follows failovers. Credentials apply to the master, not to the Sentinels.
- ``redis+cluster://[user:password@]host:port,host:port,…`` and ``rediss+cluster://…`` (TLS)
  — seed nodes of a Redis Cluster (port 6379 if left out); the rest is discovered. Cluster
  has only database 0.

Every form gets the same timeouts, so a dead node costs a request at most a few seconds and then
becomes a 503 rather than a hang.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import SplitResult, unquote, urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.cluster import ClusterPipeline as AsyncClusterPipeline
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisClusterException

from otp.errors import ConfigError

PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel",)
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = (*PLAIN_SCHEMES, *SENTINEL_SCHEMES, *CLUSTER_SCHEMES)

SENTINEL_PORT = 26379
REDIS_PORT = 6379

# The same bounds for every topology: connecting is quick or the node is gone; a command that
# takes more than 5 s is treated as lost (the request answers 503, the caller retries).
TIMEOUTS: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
HEALTH_CHECK_INTERVAL = 10
MAX_CONNECTIONS = 256  # per process, and per node on Cluster
POOL_WAIT = 2.0  # seconds a command may wait for a free connection of a full pool (plain Redis)


class SentinelRedis(aioredis.Redis):
    """The master client of a Sentinel URL; closing it also closes the Sentinel connections,
    which ``master_for`` leaves to its caller."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if isinstance(manager, Sentinel):
            await manager.aclose()


class ClusterUnreachable(redis_errors.ConnectionError):
    """No seed node answered, or the nodes' slot maps don't cover every slot."""


class ConnectionLost(redis_errors.ConnectionError):
    """A connection closed under an in-flight command (see ``Cluster``)."""


class ClusterPipeline(AsyncClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        try:
            results = await super().execute(raise_on_error, allow_redirections)
        except AttributeError as exc:
            raise ConnectionLost(f"connection closed during a cluster pipeline: {exc}") from exc
        return [ConnectionLost(str(r)) if isinstance(r, AttributeError) else r for r in results]


class Cluster(RedisCluster):
    """``RedisCluster`` whose topology troubles all surface as ``ConnectionError`` (a 503).

    - Discovery: redis-py raises ``RedisClusterException`` when no node answers or the slot map
      is incomplete. That class is no ``RedisError``, so a request arriving while the whole
      cluster is down would be a 500, and the cluster pipeline would not retry it.
    - Refresh: on CLUSTERDOWN, an uncovered slot or every fifth MOVED, redis-py closes *every*
      connection of the client while other tasks' commands are in flight on them; those fail
      with ``AttributeError`` (a stream already set to None) instead of a ``ConnectionError``.
      Only redis-py code runs inside these calls, so an ``AttributeError`` there is that.
    """

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        try:
            return await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise ClusterUnreachable(f"Redis Cluster unreachable: {exc}") from exc

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        # Learn the slot map before routing. redis-py 8 picks a command's routing policy before
        # its own lazy initialize: commands issued concurrently on a fresh client go to a default
        # node, come back MOVED, and every fifth MOVED makes the client drop *all* connections,
        # under the feet of the other in-flight commands. (A no-op once initialized.)
        await self.initialize()
        try:
            return await super().execute_command(*args, **kwargs)
        except AttributeError as exc:
            raise ConnectionLost(f"connection closed during a cluster command: {exc}") from exc

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> AsyncClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused by redis-py, as it should be
        # redis-py builds its own ClusterPipeline exactly so; its stubs leave a field abstract.
        return ClusterPipeline(self, transaction)  # type: ignore[abstract]


def _bad(url: str, why: str) -> ConfigError:
    return ConfigError(f"OTP_REDIS_URL: {why} (got {_redacted(url)!r})")


def _redacted(url: str) -> str:
    """The URL without its password: error messages end up in logs."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not sep or not at:
        return url
    user = userinfo.split(":", 1)[0]
    shown = f"{user}:***" if ":" in userinfo else user
    return f"{scheme}://{shown}@{hosts}{slash}{path}"


def _hosts(url: str, parts: SplitResult, default_port: int) -> list[tuple[str, int]]:
    """``host:port,host:port`` of a multi-host URL (urllib can't: it would read one port)."""
    netloc = parts.netloc.rpartition("@")[2]
    found: list[tuple[str, int]] = []
    for item in netloc.split(","):
        item = item.strip()
        if not item:
            raise _bad(url, "empty host in the host list")
        if item.startswith("["):  # [IPv6]:port
            host, _, tail = item[1:].partition("]")
            port_text = tail[1:] if tail.startswith(":") else ""
            if tail and not tail.startswith(":"):
                raise _bad(url, f"malformed host {item!r}")
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        if not host:
            raise _bad(url, f"malformed host {item!r}")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise _bad(url, f"port of {item!r} is not a number") from None
        if not 0 < port < 65536:
            raise _bad(url, f"port of {item!r} is out of range")
        found.append((host, port))
    return found


def _credentials(parts: SplitResult) -> dict[str, Any]:
    userinfo, at, _ = parts.netloc.rpartition("@")
    if not at:
        return {}
    user, colon, password = userinfo.partition(":")
    found: dict[str, Any] = {}
    if colon:
        found["password"] = unquote(password)
        if user:
            found["username"] = unquote(user)
    elif user:
        found["username"] = unquote(user)  # as redis-py reads redis://user@host
    return found


def _db(url: str, text: str) -> int:
    try:
        db = int(text)
    except ValueError:
        raise _bad(url, f"database {text!r} is not a number") from None
    if db < 0:
        raise _bad(url, "database must be 0 or more")
    return db


@dataclass(frozen=True)
class Target:
    """What an ``OTP_REDIS_URL`` names, parsed and checked without connecting."""

    kind: str  # plain | sentinel | cluster
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    tls: bool = False
    # Kept out of repr: a Target may be logged.
    credentials: tuple[tuple[str, str], ...] = field(default=(), repr=False)


def parse(url: str) -> Target:
    """Raises ConfigError naming OTP_REDIS_URL for anything but the accepted forms; settings
    validation can call this at startup, before any connection is tried."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ConfigError(
            f"OTP_REDIS_URL: unsupported scheme {scheme or _redacted(url)!r}; use one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if scheme in PLAIN_SCHEMES:
        return Target("plain")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise _bad(url, "Sentinel and Cluster URLs take no query options")
    if not parts.netloc.rpartition("@")[2]:
        raise _bad(url, "no host given")
    credentials = tuple(sorted(_credentials(parts).items()))
    if scheme in SENTINEL_SCHEMES:
        path = [p for p in parts.path.split("/") if p]
        if not path or len(path) > 2:
            raise _bad(url, "a Sentinel URL is redis+sentinel://host:port,host:port/service_name[/db]")
        db = _db(url, path[1]) if len(path) == 2 else 0
        hosts = tuple(_hosts(url, parts, SENTINEL_PORT))
        return Target("sentinel", hosts, service=unquote(path[0]), db=db, credentials=credentials)
    if parts.path.strip("/") not in ("", "0"):
        raise _bad(url, "Redis Cluster has only database 0")
    hosts = tuple(_hosts(url, parts, REDIS_PORT))
    return Target("cluster", hosts, tls=scheme == "rediss+cluster", credentials=credentials)


def connect(url: str) -> aioredis.Redis:
    """The client for ``url``.  A Cluster client is typed as ``Redis``: every command otp sends
    outside the store's scripts touches one key (or keys of one hash tag), which ``RedisCluster``
    routes under the same method names, so callers need no union type."""
    target = parse(url)
    if target.kind == "plain":
        # Blocking: a burst past the pool's size waits its turn for a connection (up to
        # POOL_WAIT) rather than answering 503 while Redis itself is fine.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_WAIT,
            **TIMEOUTS,
        )
        return aioredis.Redis.from_pool(pool)  # closing the client closes its pool
    credentials: dict[str, Any] = dict(target.credentials)
    if target.kind == "sentinel":
        # redis-py leaves Sentinel's __init__ unannotated.
        manager = Sentinel(list(target.hosts), sentinel_kwargs=dict(TIMEOUTS), **TIMEOUTS)  # type: ignore[no-untyped-call]
        master = manager.master_for(
            target.service,
            redis_class=SentinelRedis,
            db=target.db,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            max_connections=MAX_CONNECTIONS,
            **credentials,
        )
        return cast(aioredis.Redis, master)
    cluster = Cluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
        ssl=target.tls,
        username=credentials.get("username"),
        password=credentials.get("password"),
        health_check_interval=HEALTH_CHECK_INTERVAL,
        max_connections=MAX_CONNECTIONS,
        socket_timeout=TIMEOUTS["socket_timeout"],
        socket_connect_timeout=TIMEOUTS["socket_connect_timeout"],
    )
    return cast(aioredis.Redis, cluster)
