"""Which Redis failures mean "not now" (503, retry) rather than "your request is wrong"."""

from __future__ import annotations

import re

from redis import exceptions as redis_errors
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFoundError
from redis.sentinel import MasterNotFoundError

# Redis raising these means "not now", never "your request is wrong": they become 503.
# Sentinel: no master known during a failover (MasterNotFoundError), or a connection still on the
# demoted master (ReadOnlyError). Cluster: a resharding or failover in progress (TRYAGAIN,
# CLUSTERDOWN, MASTERDOWN), a slot whose master is gone (SlotNotCoveredError, which is not a
# RedisError, so app.py's RedisError handler would miss it), or any other cluster state error.
# MOVED and ASK never get here: the cluster client follows them.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.ReadOnlyError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
    redis_errors.MasterDownError,
    redis_errors.ClusterError,
    redis_errors.SlotNotCoveredError,
    MasterNotFoundError,
    AsyncMasterNotFoundError,
    OSError,
)

# Replies redis-py raises as a plain ResponseError that still mean "not now": a primary refusing
# writes under min-replicas-to-write (NOREPLICAS), a demoted primary (READONLY) or a long script
# (BUSY). Inside a script Redis 6.2 wraps them ("Error running script …: -NOREPLICAS …"), so they
# are matched at the start of the message, after "-" in a script error, or after redis-py's
# "… of pipeline caused error: " prefix.
TRANSIENT_REPLY = re.compile(
    r"(?:^|: -|caused error: \(?'?)(?:NOREPLICAS|READONLY|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|LOADING)\b"
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return True
    return isinstance(exc, redis_errors.ResponseError) and bool(TRANSIENT_REPLY.search(str(exc)))
