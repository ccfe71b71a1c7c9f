"""The only module that talks to Redis: Lua scripts loaded once, called with the shared header."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFoundError
from redis.commands.core import AsyncScript
from redis.sentinel import MasterNotFoundError

from otp.errors import Unavailable
from otp.storage import keys as keyspace

T = TypeVar("T")

log = logging.getLogger("otp.store")

SCRIPT_NAMES = (
    "start",
    "attempt",
    "approve",
    "exhaust",
    "fetch",
    "cancel",
    "claim",
    "settle_job",
    "delivery",
    "poll_claim",
    "limit",
    "fraud",
    "renew",
    "signin_limit",
    "audit_event",
)

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


def load_script_source(name: str) -> str:
    folder = resources.files("otp.storage") / "lua"
    return (folder / "lib.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


Flat = list[Any]


def flat_to_dict(flat: Sequence[Any]) -> dict[str, str]:
    items = [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
    return dict(zip(items[::2], items[1::2], strict=True))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class NumberLimits:
    safe: bool
    sends_per_hour: int
    sends_per_day: int
    cooldown_ms: int
    shared_hold_ms: int = 60_000


@dataclass(frozen=True)
class StartOutcome:
    mode: str  # created | resent | refused
    record: dict[str, str]
    rule: str
    reason: str
    retry_ms: int
    foreign: bool = False  # a number-wide refusal that another API key's sends took part in


@dataclass(frozen=True)
class CheckArgs:
    """What ``attempt.lua`` needs to count one check."""

    verification_id: str
    to: str
    retention_ms: int
    caller: str
    admin: bool
    failed_per_hour: int
    checks_per_minute: int  # in this partition, for ``rate_key``; 0: no limit
    rate_key: str
    member: str
    replay_ms: int
    replays: int = 3


@dataclass(frozen=True)
class AttemptOutcome:
    outcome: str  # counted | not_found | throttled | refused | a status
    verification_id: str = ""
    attempts: int = 0
    max_attempts: int = 0
    hashes: dict[str, str] = field(default_factory=dict)  # "h:n" → hash, for a counted attempt
    record: dict[str, str] = field(default_factory=dict)
    retry_ms: int = 0
    replay_hash: str = ""  # the approving code's hash, while it may repeat the approval


@dataclass(frozen=True)
class Job:
    job_id: str
    verification_id: str
    send_number: int
    to: str
    sealed_code: str
    locale: str
    tries: int
    expires_ms: int
    partition: int
    app_name: str = ""
    lease_deadline_ms: int = 0


AUDIT_COUNTER_TTL_MS = 8 * 86_400_000  # as in lib.lua

ScriptCall = tuple[AsyncScript, Sequence[Any], Sequence[Any]]  # (script, keys, args)


async def run_scripts(client: aioredis.Redis, calls: Sequence[ScriptCall], *, raise_errors: bool = True) -> list[Any]:
    """Script calls of any slots in one pipelined round trip (per node), each atomic on its own;
    the replies in order, or the first error raised (without ``raise_errors``, errors are
    returned in their places: calls in other slots may have succeeded).

    EVALSHA goes in as a raw command (on a cluster routed by its first key's slot). Not
    ``AsyncScript(client=pipe)``: redis-py then sends SCRIPT EXISTS before every pipeline, one more
    round trip each time, and a cluster pipeline refuses it anyway. A node that lacks a script
    answers NOSCRIPT *without running it*, so exactly those calls are run again once the scripts
    are loaded; nothing runs twice.
    """
    if not calls:
        return []
    async with client.pipeline(transaction=False) as cluster_pipe:
        for script, keys, args in calls:
            cluster_pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        # raise_on_error=False: a failed reply is raised below as is. Raising inside redis-py
        # would re-run the whole batch on a connection error, scripts that did run included.
        results = list(await cluster_pipe.execute(raise_on_error=False))
    missing = [i for i, result in enumerate(results) if isinstance(result, redis_errors.NoScriptError)]
    if missing:
        await load_scripts(client, {calls[i][0].script for i in missing})
        for i in missing:
            script, keys, args = calls[i]
            # AsyncScript on the cluster client itself loads (on every primary) and retries.
            try:
                results[i] = await script(keys=list(keys), args=list(args))
            except Exception as exc:
                if raise_errors:
                    raise
                results[i] = exc
    if not raise_errors:
        return results
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def load_scripts(client: aioredis.Redis, sources: Iterable[Any]) -> None:
    """SCRIPT LOAD each source on every primary (redis-py sends SCRIPT LOAD to all primaries of
    a cluster client)."""
    for source in sources:
        await client.script_load(source)


def _raiser(exc: BaseException) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        raise exc

    return call


class Store:
    def __init__(self, client: aioredis.Redis, *, partitions: int, audit_maxlen: int = 1_000_000) -> None:
        self.client = client
        self.partitions = partitions
        self.audit_maxlen_per_partition = max(1, audit_maxlen // partitions)
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(load_script_source(name)) for name in SCRIPT_NAMES
        }
        self.cluster = isinstance(client, RedisCluster)
        # Cluster: whether the scripts were loaded on every primary yet (first pipelined use).
        # Only an optimisation; run_scripts copes with a primary that lacks them.
        self._scripts_loaded = not self.cluster

    async def guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except Exception as exc:
            if is_transient(exc):
                raise Unavailable(f"storage unavailable ({type(exc).__name__}); retry shortly", retry_after=1) from exc
            raise

    async def _pipelined(
        self, calls: Sequence[tuple[str, Sequence[Any], Sequence[Any]]], *, raise_errors: bool = True
    ) -> list[Any]:
        if not self._scripts_loaded:
            await load_scripts(self.client, [script.script for script in self._scripts.values()])
            self._scripts_loaded = True
        scripts = [(self._scripts[name], keys, args) for name, keys, args in calls]
        return await run_scripts(self.client, scripts, raise_errors=raise_errors)

    def _header(self, tag: str, now_ms: int, audit: dict[str, str] | None = None) -> list[Any]:
        return [tag, now_ms, self.audit_maxlen_per_partition, json.dumps(audit or {})]

    async def _run(
        self,
        name: str,
        partition: int,
        keys: Sequence[str],
        now_ms: int,
        args: Sequence[Any],
        audit: dict[str, str] | None = None,
    ) -> Any:
        header = self._header(keyspace.tag(partition), now_ms, audit)
        script = self._scripts[name]
        return await self.guarded(lambda: script(keys=list(keys), args=[*header, *args]))

    async def run_many(self, calls: Sequence[Call], now_ms: int) -> list[Any]:
        """Scripts of different slots in one pipelined round trip (each one atomic on its own)."""
        if not calls:
            return []
        return await self.guarded(
            lambda: self._pipelined(
                [(call.script, call.keys, [*self._header(call.tag, now_ms), *call.args]) for call in calls]
            )
        )

    async def audit_event(self, partition: int, now_ms: int, fields: dict[str, Any]) -> None:
        """An audit event decided outside Lua (a permission refusal, a failed check): written by
        lib.lua's ``audit()`` like every other, so the counters have one format."""
        event = str(fields.get("event", ""))
        context = {k: str(v) for k, v in fields.items() if k != "event" and v not in (None, "")}
        keys = [keyspace.audit_stream(partition), keyspace.audit_counter(partition, now_ms)]
        await self._run("audit_event", partition, keys, now_ms, [event], audit=context)

    # -- verifications ---------------------------------------------------------------------------

    async def start(
        self,
        *,
        partition: int,
        now_ms: int,
        new_id: str,
        to: str,
        channel: str,
        locale: str,
        key_id: str,
        ttl_ms: int,
        max_attempts: int,
        max_sends: int,
        codes_kept: int,
        retention_ms: int,
        code_hash: str,
        sealed_code: str,
        number_limits: NumberLimits,
        event_id: str,
        decisions: str,
        audit: dict[str, str],
        app_name: str = "",
        custom_code: bool = False,
        pumping: tuple[bool, str] = (False, ""),
    ) -> StartOutcome:
        """``pumping``: whether the send was to an unproven destination, and its IP scope: kept on
        a new record, so its approval converts where it counted."""
        args = [new_id, to, channel, locale, key_id, ttl_ms, max_attempts, max_sends, codes_kept, retention_ms]
        args += [code_hash, sealed_code, "1" if number_limits.safe else "0", number_limits.sends_per_hour]
        args += [number_limits.sends_per_day, number_limits.cooldown_ms, event_id, decisions, app_name]
        args += [number_limits.shared_hold_ms, "1" if custom_code else "0", "1" if pumping[0] else "0", pumping[1]]
        mode, flat, rule, reason, retry_ms, foreign = await self._run(
            "start", partition, [keyspace.number_state(partition, to)], now_ms, args, audit
        )
        return StartOutcome(_text(mode), flat_to_dict(flat), _text(rule), _text(reason), int(retry_ms), bool(foreign))

    async def count_attempt(
        self, partition: int, now_ms: int, check: CheckArgs, audit: dict[str, str]
    ) -> AttemptOutcome:
        anchor = (
            keyspace.verification(partition, check.verification_id)
            if check.verification_id
            else keyspace.number_state(partition, check.to)
        )
        args = [check.verification_id, check.to, check.retention_ms, check.caller, "1" if check.admin else "0"]
        args += [check.failed_per_hour, check.checks_per_minute, check.rate_key, check.member, check.replay_ms]
        args += [check.replays]
        reply = await self._run("attempt", partition, [anchor], now_ms, args, audit)
        outcome = _text(reply[0])
        if outcome == "not_found":
            return AttemptOutcome(outcome)
        retry_ms = int(reply[6]) if len(reply) > 6 else 0
        record = flat_to_dict(reply[5])
        # Only a counted attempt hands out the code hashes, to be compared.
        hashes = {k: v for k, v in record.items() if k.startswith("h:")} if outcome == "counted" else {}
        return AttemptOutcome(
            outcome, _text(reply[1]), int(reply[2]), int(reply[3]), hashes, record, retry_ms, _text(reply[4])
        )

    async def approve(
        self,
        *,
        partition: int,
        now_ms: int,
        verification_id: str,
        attempt: int,
        retention_ms: int,
        audit: dict[str, str],
        matched: str = "",
        replay_ms: int = 0,
        along: Sequence[Call] = (),
    ) -> tuple[bool, dict[str, str], list[Any]]:
        """Approve, pipelined with ``along`` (the conversion counters) in the same round trip;
        returns (won, record, results of ``along``, None for each that failed). Once the approval
        is committed, a failure elsewhere (a counter on a node in failover) must not turn it into
        an error: the user typed the right code."""
        key = keyspace.verification(partition, verification_id)
        header = self._header(keyspace.tag(partition), now_ms, audit)
        args = [*header, verification_id, retention_ms, attempt, matched, replay_ms]

        calls: list[tuple[str, Sequence[Any], Sequence[Any]]] = [("approve", [key], args)]
        calls += [(call.script, call.keys, [*self._header(call.tag, now_ms), *call.args]) for call in along]
        results = await self.guarded(lambda: self._pipelined(calls, raise_errors=False))
        if isinstance(results[0], BaseException):
            await self.guarded(_raiser(results[0]))
        won, flat = results[0]
        side = [None if isinstance(r, BaseException) else r for r in results[1:]]
        for call, result in zip(along, results[1:], strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "a counter beside an approval failed (%s on %s): not counted", type(result).__name__, call.tag
                )
        return bool(int(won)), flat_to_dict(flat), side

    async def exhaust(
        self, *, partition: int, now_ms: int, verification_id: str, retention_ms: int, audit: dict[str, str]
    ) -> dict[str, str]:
        flat = await self._run(
            "exhaust",
            partition,
            [keyspace.verification(partition, verification_id)],
            now_ms,
            [verification_id, retention_ms],
            audit,
        )
        return flat_to_dict(flat)

    async def fetch(self, *, partition: int, now_ms: int, verification_id: str, retention_ms: int) -> dict[str, str]:
        flat = await self._run(
            "fetch",
            partition,
            [keyspace.verification(partition, verification_id)],
            now_ms,
            [verification_id, retention_ms],
        )
        return flat_to_dict(flat)

    async def cancel(
        self,
        *,
        partition: int,
        now_ms: int,
        verification_id: str,
        retention_ms: int,
        owner: str,
        audit: dict[str, str],
    ) -> tuple[bool, dict[str, str]]:
        """``owner`` is the caller's key id, or "" for an admin who may cancel any verification."""
        changed, flat = await self._run(
            "cancel",
            partition,
            [keyspace.verification(partition, verification_id)],
            now_ms,
            [verification_id, retention_ms, owner],
            audit,
        )
        return bool(int(changed)), flat_to_dict(flat)

    # -- outbox and delivery ---------------------------------------------------------------------

    async def claim_jobs(
        self, *, partition: int, now_ms: int, lease_ms: int, limit: int, retention_ms: int
    ) -> list[Job]:
        rows = await self._run(
            "claim", partition, [keyspace.outbox(partition)], now_ms, [lease_ms, limit, retention_ms]
        )
        return [
            Job(
                job_id=_text(row[0]),
                verification_id=_text(row[1]),
                send_number=int(row[2]),
                to=_text(row[3]),
                sealed_code=_text(row[4]),
                locale=_text(row[5]),
                tries=int(row[6]),
                expires_ms=int(row[7]),
                partition=partition,
                app_name=_text(row[8]) if len(row) > 8 else "",
                lease_deadline_ms=int(row[9]) if len(row) > 9 else 0,
            )
            for row in rows
        ]

    async def renew_lease(self, job: Job, *, now_ms: int, lease_ms: int) -> bool:
        """True if the job is still this worker's (and its lease now runs from ``now_ms``)."""
        kept = await self._run(
            "renew",
            job.partition,
            [keyspace.outbox(job.partition)],
            now_ms,
            [job.job_id, job.lease_deadline_ms, lease_ms],
        )
        return bool(int(kept))

    async def settle_job(
        self,
        *,
        partition: int,
        now_ms: int,
        job_id: str,
        outcome: str,
        changes: dict[str, Any],
        retry_due_ms: int = 0,
        poll_due_ms: int = 0,
    ) -> str:
        status = await self._run(
            "settle_job",
            partition,
            [keyspace.outbox(partition)],
            now_ms,
            [job_id, outcome, json.dumps(_without_none(changes)), retry_due_ms, poll_due_ms],
        )
        return _text(status)

    async def record_delivery(
        self,
        *,
        partition: int,
        now_ms: int,
        verification_id: str,
        send_number: int,
        changes: dict[str, Any],
        next_poll_ms: int = 0,
    ) -> str:
        status = await self._run(
            "delivery",
            partition,
            [keyspace.verification(partition, verification_id)],
            now_ms,
            [verification_id, send_number, json.dumps(_without_none(changes)), next_poll_ms],
        )
        return _text(status)

    async def claim_polls(
        self, *, partition: int, now_ms: int, lease_ms: int, limit: int
    ) -> list[tuple[str, int, str, int]]:
        """Sends due for a status poll: (verification id, send number, message sid, sent at ms)."""
        rows = await self._run("poll_claim", partition, [keyspace.poll_schedule(partition)], now_ms, [lease_ms, limit])
        return [(_text(r[0]), int(r[1]), _text(r[2]), int(float(_text(r[3])))) for r in rows]

    async def consume_token(self, verification_id: str, *, ttl_ms: int, peek: bool = False) -> bool:
        """Whether the approval token of a verification was still unused; unless ``peek``, it is
        marked used in the same step (SET NX PX: of concurrent callers one gets True). The mark
        lives ``ttl_ms``: as long as the token could still verify."""
        key = keyspace.used_token(keyspace.partition_of_id(verification_id, self.partitions), verification_id)
        if peek:
            return not await self.guarded(lambda: self.client.exists(key))
        return bool(await self.guarded(lambda: self.client.set(key, 1, px=ttl_ms, nx=True)))

    async def outbox_depth(self) -> int:
        async def depth() -> int:
            async with self.client.pipeline(transaction=False) as pipe:
                for partition in range(self.partitions):
                    pipe.zcard(keyspace.outbox(partition))
                return sum(int(n) for n in await pipe.execute())

        return await self.guarded(depth)

    async def ping(self) -> bool:
        return bool(await self.guarded(self.client.ping))


def _without_none(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in changes.items() if v is not None}


@dataclass(frozen=True)
class Call:
    """One script call for `Store.run_many`: scripts of different slots, one round trip."""

    script: str
    tag: str
    keys: Sequence[str]
    args: Sequence[Any]
