"""Typed storage operations: each runs one registered script (or a short pipeline) and decodes
its reply into the kernel's records. The storage package is the only code that talks to Redis."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from otp.errors import Unavailable
from otp.model import (
    ApproveArgs,
    AttemptOutcome,
    CheckArgs,
    DeliveryUpdate,
    Job,
    NumberGateArgs,
    QueuedEvent,
    StartArgs,
    StartOutcome,
)
from otp.storage import keys as keyspace
from otp.storage import records
from otp.storage.scripts import PipelineCall, Registry, ordered_keys
from otp.storage.transient import is_transient

__all__ = ["Call", "Read", "Store"]

T = TypeVar("T")


# A script's one JSON argument, as bytes redis-py sends untouched: msgspec encodes the start's
# and the attempt's arguments (dataclasses, nested ones too) several times faster than json.dumps
# of dataclasses.asdict, which deep-copies every field (a start's argument: 35 µs before, 4.6 µs).
_encode = msgspec.json.Encoder().encode


def _shallow(value: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, nested dataclasses left for ``_encode``."""
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


log = logging.getLogger("otp.store")

# Hours per counters.lua call: about a day keeps each call to a few milliseconds of Redis time, so
# a week's sums never hold other clients up for long.
COUNTER_HOURS_PER_CALL = 24
COUNTER_ROUND_KEYS = 96
# The minute counters hold a few dozen fields each: a call covers the short windows' 6 hours.
MINUTES_PER_CALL = 360
MINUTE_ROUND_KEYS = 1440
# Webhook events queued per tenant (over all partitions; each partition holds its share), and how
# long one may wait past its due time: beyond the delivery loop's retry bound (24 h), so the loop,
# not a TTL, decides when to give up, and a lost event hash still goes away.
WEBHOOK_QUEUE_CAP = 50_000
WEBHOOK_EVENT_LIFE_MS = 26 * 3_600_000


@dataclass(frozen=True)
class Read:
    """A plain read (``GET``, ``EXISTS`` of one key) for `Store.run_many`: sent in the scripts'
    round trip, its raw reply in its place among theirs."""

    command: str
    key: str


@dataclass(frozen=True)
class Call:
    """One call of a scope script (limit, fraud, signin_limit) for `Store.run_many`: scripts of
    different slots, one round trip. ``keys`` in the order the script declares them
    (scripts.SCRIPTS); ``args`` the script's named fields, sent with ``now`` as its one JSON
    argument. ``tag`` names the scope in logs."""

    script: str
    tag: str
    keys: Sequence[str]
    args: Mapping[str, Any]


def _storage_error(exc: BaseException) -> BaseException:
    """What a caller sees of a Redis error: a transient one (connection lost, failover, a primary
    without its replicas) as ``Unavailable`` — 503 with Retry-After, a retry for the worker."""
    if is_transient(exc):
        return Unavailable(f"storage unavailable ({type(exc).__name__}); retry shortly", retry_after=1)
    return exc


def _batch(reply: Any) -> tuple[Any, bool]:
    """A claim script's reply: its rows, and whether it looked at a whole batch (more may be due)."""
    rows, more = reply
    return rows, bool(int(more))


def _rows_or_error(reply: Any, decode: Callable[[Any], T]) -> list[T] | BaseException:
    """One partition's reply in a pipelined claim: its rows decoded, or its error as `guarded` raises it."""
    if isinstance(reply, BaseException):
        return _storage_error(reply)
    return [decode(row) for row in reply]


def _raiser(exc: BaseException) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        raise exc

    return call


# Texts a send attempt keeps (lib.lua stores at most 64 bytes of each, the compact hash encoding).
_SHORT_TEXTS = ("error_message", "last_error")


def _without_none(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The changes to send to Lua: no None, and the short texts cut to 64 bytes here, on a
    character boundary. Lua's ``string.sub`` cuts bytes: a character split there would store
    invalid UTF-8, and every later read of the verification would fail decoding it."""
    out = {k: v for k, v in changes.items() if v is not None}
    for name in _SHORT_TEXTS:
        if isinstance(out.get(name), str):
            out[name] = out[name].encode("utf-8", "replace")[:64].decode("utf-8", "ignore")
    return out


@dataclass(frozen=True)
class SenderWait:
    """A send the sender pool holds back: the slot it waits for ("<sender>|<slot ms>"; "" none),
    and whether its wait passed OTP_SENDER_MAX_WAIT (settle_job.lua then writes a sender_queued
    audit event)."""

    slot: str = ""
    over_bound: bool = False


class Store:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        partitions: int,
        audit_maxlen: int = 1_000_000,
        webhook_queue_cap: int = WEBHOOK_QUEUE_CAP,
        audit_retention_ms: int | None = None,
    ) -> None:
        """``audit_retention_ms``: audit entries older than this are trimmed as events are written
        (lib.lua's ``audit()``); None keeps them until ``audit_maxlen`` pushes them out, so a store
        built without the settings (a read-only tool) never trims what the service keeps."""
        self.client = client
        self.partitions = partitions
        self.audit_maxlen_per_partition = max(1, audit_maxlen // partitions)
        self.audit_retention_ms = audit_retention_ms
        self.webhook_cap_per_partition = max(1, webhook_queue_cap // partitions)
        self.scripts = Registry(client)
        self.cluster = isinstance(client, RedisCluster)

    async def guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except Exception as exc:
            raise _storage_error(exc) from exc

    def _argument(self, now_ms: int, named: Mapping[str, Any], audit: Mapping[str, str] | None = None) -> bytes:
        """The one JSON argument of a partition script: its named fields and lib.lua's header."""
        return _encode(self._fields(now_ms, named, audit))

    def _fields(self, now_ms: int, named: Mapping[str, Any], audit: Mapping[str, str] | None) -> dict[str, Any]:
        header = {
            "now": now_ms,
            "cap": self.audit_maxlen_per_partition,
            "audit": dict(audit or {}),
            "evcap": self.webhook_cap_per_partition,
            "evlife": WEBHOOK_EVENT_LIFE_MS,
        }
        if self.audit_retention_ms is not None:
            header["cap_ms"] = self.audit_retention_ms
        return {**named, **header}

    async def _run(
        self,
        name: str,
        partition: int,
        now_ms: int,
        fields: Mapping[str, Any],
        keys: Mapping[str, str] | None = None,
        audit: Mapping[str, str] | None = None,
    ) -> Any:
        """A partition script: its own ``keys`` beside the partition's (keys.partition_script_keys)."""
        named = {**keyspace.partition_script_keys(partition, now_ms), **(keys or {})}
        argument = self._argument(now_ms, fields, audit)
        return await self.guarded(lambda: self.scripts.run(name, named, [argument]))

    @staticmethod
    def _scope_call(call: Call | Read, now_ms: int) -> PipelineCall:
        if isinstance(call, Read):
            return call.command, (call.key,)
        return call.script, call.keys, [_encode({**call.args, "now": now_ms})]

    async def run_many(self, calls: Sequence[Call | Read], now_ms: int) -> list[Any]:
        """Scripts of different slots, and reads, in one pipelined round trip (each one atomic on its own)."""
        if not calls:
            return []
        return await self.guarded(lambda: self.scripts.pipelined([self._scope_call(c, now_ms) for c in calls]))

    async def audit_event(self, partition: int, now_ms: int, fields: dict[str, Any]) -> None:
        """An audit event decided outside Lua (a permission refusal, a failed check): written by
        lib.lua's ``audit()`` like every other, so the counters have one format."""
        event = str(fields.get("event", ""))
        context = {k: str(v) for k, v in fields.items() if k != "event" and v not in (None, "")}
        await self._run("audit_event", partition, now_ms, {"event": event}, audit=context)

    # -- verifications ---------------------------------------------------------------------------

    async def start(self, partition: int, now_ms: int, args: StartArgs, audit: dict[str, str]) -> StartOutcome:
        named = {**_shallow(args), "wake": [keyspace.WAKE_CHANNEL, keyspace.tag(partition)]}
        keys = {"number": keyspace.number_state(partition, args.to)}
        return records.start_outcome(await self._run("start", partition, now_ms, named, keys, audit))

    async def before_admission(
        self, opt_out: Read, partition: int, now_ms: int, to: str, gate: NumberGateArgs, audit: dict[str, str]
    ) -> tuple[Any, bool]:
        """The opt-out read and number_gate.lua's read in one round trip: the opt-out's raw reply,
        and whether the number's own limits refuse the start now (then `refuse_by_number`).
        ``audit``: the start's context, for the expiry of the key's pending verification the gate
        may find. The gate only advises (start.lua decides the same limits with the send): a
        failure of its own (a number key of the wrong type) leaves them to start.lua instead of
        hiding the opt-out's answer behind a 503."""
        keys = {**keyspace.partition_script_keys(partition, now_ms), "number": keyspace.number_state(partition, to)}
        fields = self._fields(now_ms, {**_shallow(gate), "apply": False}, audit)
        read = Call("number_gate", f"number {keyspace.tag(partition)}", ordered_keys("number_gate", keys), fields)
        calls = [self._scope_call(opt_out, now_ms), self._scope_call(read, now_ms)]
        opted, capped = await self.guarded(lambda: self.scripts.pipelined(calls, raise_errors=False))
        if isinstance(opted, BaseException):
            raise _storage_error(opted) from opted
        if isinstance(capped, BaseException):
            log.warning("number_gate.lua failed (%s): the number's limits are left to start.lua", type(capped).__name__)
            return opted, False
        return opted, capped == 1

    async def refuse_by_number(
        self, partition: int, now_ms: int, to: str, gate: NumberGateArgs, audit: dict[str, str]
    ) -> StartOutcome | None:
        """The number's own limits asked again, a refusal audited and its hold set: the refusal as
        `start` returns it, or None when they allow the start after all (a window just passed)."""
        keys = {"number": keyspace.number_state(partition, to)}
        named = {**_shallow(gate), "apply": True}
        reply = await self._run("number_gate", partition, now_ms, named, keys, audit)
        return None if reply == 0 else records.start_outcome(reply)

    async def count_attempt(
        self, partition: int, now_ms: int, check: CheckArgs, audit: dict[str, str]
    ) -> AttemptOutcome:
        keys = {"check_log": keyspace.check_log(partition, check.rate_key)}
        return records.attempt_outcome(await self._run("attempt", partition, now_ms, _shallow(check), keys, audit))

    def _verification_keys(self, partition: int, verification_id: str) -> dict[str, str]:
        return {"verification": keyspace.verification(partition, verification_id)}

    async def approve(
        self,
        partition: int,
        now_ms: int,
        approval: ApproveArgs,
        audit: dict[str, str],
        along: Sequence[Call] = (),
    ) -> tuple[bool, dict[str, str], list[Any]]:
        """Approve, pipelined with ``along`` (the conversion counters) in the same round trip;
        returns (won, record, results of ``along``, None for each that failed). Once the approval
        is committed, a failure elsewhere (a counter on a node in failover) must not turn it into
        an error: the user typed the right code."""
        keys = {
            **keyspace.partition_script_keys(partition, now_ms),
            **self._verification_keys(partition, approval.verification_id),
        }
        fields = {
            "id": approval.verification_id,
            "retention_ms": approval.retention_ms,
            "attempt": approval.attempt,
            "matched": approval.matched,
            "replay_ms": approval.replay_ms,
        }
        calls: list[PipelineCall] = [("approve", keys, [self._argument(now_ms, fields, audit)])]
        calls += [self._scope_call(call, now_ms) for call in along]
        results = await self.guarded(lambda: self.scripts.pipelined(calls, raise_errors=False))
        if isinstance(results[0], BaseException):
            await self.guarded(_raiser(results[0]))
        won, flat = results[0]
        side = [None if isinstance(r, BaseException) else r for r in results[1:]]
        for call, result in zip(along, results[1:], strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "a counter beside an approval failed (%s on %s): not counted", type(result).__name__, call.tag
                )
        return bool(int(won)), records.flat_to_dict(flat), side

    async def exhaust(
        self, *, partition: int, now_ms: int, verification_id: str, retention_ms: int, audit: dict[str, str]
    ) -> dict[str, str]:
        fields = {"id": verification_id, "retention_ms": retention_ms}
        keys = self._verification_keys(partition, verification_id)
        return records.flat_to_dict(await self._run("exhaust", partition, now_ms, fields, keys, audit))

    async def fetch(self, *, partition: int, now_ms: int, verification_id: str, retention_ms: int) -> dict[str, str]:
        fields = {"id": verification_id, "retention_ms": retention_ms}
        keys = self._verification_keys(partition, verification_id)
        return records.flat_to_dict(await self._run("fetch", partition, now_ms, fields, keys))

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
        fields = {"id": verification_id, "retention_ms": retention_ms, "owner": owner}
        keys = self._verification_keys(partition, verification_id)
        changed, flat = await self._run("cancel", partition, now_ms, fields, keys, audit)
        return bool(int(changed)), records.flat_to_dict(flat)

    # -- outbox and delivery ---------------------------------------------------------------------

    async def claim_jobs(
        self, *, partition: int, now_ms: int, lease_ms: int, limit: int, retention_ms: int
    ) -> list[Job]:
        fields = {"lease_ms": lease_ms, "limit": limit, "retention_ms": retention_ms}
        rows, _ = _batch(await self._run("claim", partition, now_ms, fields))
        return [records.job(row, partition) for row in rows]

    async def claim_due(
        self, *, now_ms: int, lease_ms: int, limit: int, retention_ms: int, partitions: Sequence[int] | None = None
    ) -> tuple[list[list[Job] | BaseException], list[list[tuple[str, int, str, int]] | BaseException], set[int]]:
        """The due SMS jobs and status polls (`claim_jobs`, `claim_polls`) of ``partitions`` (all
        by default) in one pipelined round trip per node, not 2 × partitions: what a worker's round
        costs Redis and the worker's CPU when little is due. Per partition, in the order given, its
        rows or the error it answered; and the partitions where either claim looked at a whole
        batch (more may be due: claim them again at once)."""
        named_partitions = range(self.partitions) if partitions is None else partitions
        jobs_argument = self._argument(now_ms, {"lease_ms": lease_ms, "limit": limit, "retention_ms": retention_ms})
        polls_argument = self._argument(now_ms, {"lease_ms": lease_ms, "limit": limit})
        calls: list[PipelineCall] = []
        for partition in named_partitions:
            named = keyspace.partition_script_keys(partition, now_ms)
            calls += [("claim", named, [jobs_argument]), ("poll_claim", named, [polls_argument])]
        replies = await self.guarded(lambda: self.scripts.pipelined(calls, raise_errors=False))
        batches = [r if isinstance(r, BaseException) else _batch(r) for r in replies]
        rows = [b if isinstance(b, BaseException) else b[0] for b in batches]
        full = [not isinstance(b, BaseException) and b[1] for b in batches]
        more = {
            p
            for p, jobs_full, polls_full in zip(named_partitions, full[0::2], full[1::2], strict=True)
            if jobs_full or polls_full
        }
        jobs = [
            _rows_or_error(found, functools.partial(records.job, partition=partition))
            for partition, found in zip(named_partitions, rows[0::2], strict=True)
        ]
        return jobs, [_rows_or_error(found, records.poll_due) for found in rows[1::2]], more

    async def renew_lease(self, job: Job, *, now_ms: int, lease_ms: int) -> bool:
        """True if the job is still this worker's (and its lease now runs from ``now_ms``)."""
        fields = {"job_id": job.job_id, "lease_deadline_ms": job.lease_deadline_ms, "lease_ms": lease_ms}
        argument = _encode({**fields, "now": now_ms})
        keys = {"outbox": keyspace.outbox(job.partition)}
        return bool(int(await self.guarded(lambda: self.scripts.run("renew", keys, [argument]))))

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
        wait: SenderWait | None = None,
    ) -> str:
        """Outcome "paced": the job waits for ``wait.slot``, due at ``retry_due_ms``."""
        wait = wait or SenderWait()
        fields = {
            "job_id": job_id,
            "outcome": outcome,
            "changes": _without_none(changes),
            "retry_due_ms": retry_due_ms,
            "poll_due_ms": poll_due_ms,
            "pace": wait.slot,
            "over_bound": wait.over_bound,
        }
        return records.text(await self._run("settle_job", partition, now_ms, fields))

    async def record_delivery(
        self,
        *,
        partition: int,
        now_ms: int,
        verification_id: str,
        send_number: int,
        changes: dict[str, Any],
        next_poll_ms: int = 0,
    ) -> DeliveryUpdate:
        fields = {
            "id": verification_id,
            "send_number": send_number,
            "changes": _without_none(changes),
            "next_poll_ms": next_poll_ms,
        }
        keys = self._verification_keys(partition, verification_id)
        return records.delivery_update(await self._run("delivery", partition, now_ms, fields, keys))

    async def settle_budget(
        self, partition: int, now_ms: int, verification_id: str, send_number: int, real: int | None
    ) -> tuple[int, str, str, str, str] | None:
        """Take a send's budget note off its attempt (budget_settle.lua), once: (real − estimate,
        day, country, scope kinds, tenant), or None when there is none."""
        keys = self._verification_keys(partition, verification_id)
        fields = {"send_number": send_number, "real": real}
        found = await self._run("budget_settle", partition, now_ms, fields, keys)
        if not found:
            return None
        delta, day, country, kinds, tenant = found
        return int(delta), records.text(day), records.text(country), records.text(kinds), records.text(tenant)

    async def claim_polls(
        self, *, partition: int, now_ms: int, lease_ms: int, limit: int
    ) -> list[tuple[str, int, str, int]]:
        """Sends due for a status poll: (verification id, send number, message sid, sent at ms)."""
        rows, _ = _batch(await self._run("poll_claim", partition, now_ms, {"lease_ms": lease_ms, "limit": limit}))
        return [records.poll_due(row) for row in rows]

    # -- webhook events ----------------------------------------------------------------------------

    async def claim_events(
        self, *, partition: int, now_ms: int, lease_ms: int, limit: int, retention_ms: int
    ) -> list[QueuedEvent]:
        fields = {"lease_ms": lease_ms, "limit": limit, "retention_ms": retention_ms}
        rows = await self._run("event_claim", partition, now_ms, fields)
        return [records.queued_event(row, partition) for row in rows]

    async def claim_events_everywhere(
        self, *, now_ms: int, lease_ms: int, limit: int, retention_ms: int
    ) -> list[list[QueuedEvent] | BaseException]:
        """`claim_events` of every partition in one pipelined round trip per node; per partition,
        its events or the error it answered."""
        argument = self._argument(now_ms, {"lease_ms": lease_ms, "limit": limit, "retention_ms": retention_ms})
        calls: list[PipelineCall] = [
            ("event_claim", keyspace.partition_script_keys(p, now_ms), [argument]) for p in range(self.partitions)
        ]
        replies = await self.guarded(lambda: self.scripts.pipelined(calls, raise_errors=False))
        return [
            _rows_or_error(rows, functools.partial(records.queued_event, partition=partition))
            for partition, rows in enumerate(replies)
        ]

    async def settle_event(
        self, event: QueuedEvent, *, now_ms: int, outcome: str, done: Sequence[str] = (), retry_due_ms: int = 0
    ) -> None:
        """``outcome`` "done" removes the event; "retry" makes it due again at ``retry_due_ms``."""
        fields = {
            "event_id": event.event_sid,
            "owner": event.owner,
            "outcome": outcome,
            "done": ",".join(done),
            "retry_due_ms": retry_due_ms,
        }
        await self._run("event_settle", event.partition, now_ms, fields)

    async def event_depth(self) -> int:
        async def depth() -> int:
            async with self.client.pipeline(transaction=False) as pipe:
                for partition in range(self.partitions):
                    pipe.zcard(keyspace.event_outbox(partition))
                return sum(int(n) for n in await pipe.execute())

        return await self.guarded(depth)

    # -- readers -----------------------------------------------------------------------------------

    async def sum_audit_counters(
        self, hours: Sequence[int], mode: str, extra: Sequence[str] = (), *, by_minute: bool = False
    ) -> list[list[Any]]:
        """``counters.lua`` over the hourly audit counters of ``hours`` (a mode and its values as
        the script documents them), for every partition: per chunk of COUNTER_HOURS_PER_CALL
        hours, the decoded replies of all partitions. ``by_minute``: ``hours`` are minutes, read
        from the minute counters (MINUTES_PER_CALL of them per call)."""
        per_call = MINUTES_PER_CALL if by_minute else COUNTER_HOURS_PER_CALL
        name = keyspace.audit_minute_counter_of if by_minute else keyspace.audit_counter_of_hour
        replies: list[list[Any]] = []
        for start in range(0, len(hours), per_call):
            chunk = hours[start : start + per_call]
            lists = [[name(p, slot) for slot in chunk] for p in range(self.partitions)]
            replies.append(await self.counter_script("counters", lists, [mode, *extra], by_minute=by_minute))
        return replies

    async def counter_script(
        self,
        script: str,
        key_lists: Sequence[Sequence[str]],
        args: Sequence[str],
        *,
        by_minute: bool = False,
        round_keys: int | None = None,
    ) -> list[Any]:
        """One call of a read-only counter script (counters.lua, incidents.lua) per key list, each
        list one partition's counter hashes (one cluster slot); the decoded JSON replies in order.
        Pipelined calls run back to back in Redis: a round stops at about COUNTER_ROUND_KEYS
        hourly hashes (~10 ms with a million events a week), or MINUTE_ROUND_KEYS of the much
        smaller minute hashes, so verifications don't wait behind a dashboard; ``round_keys``, a
        smaller round for hashes that may be large (the capped refusal tallies)."""
        calls: list[tuple[str, Mapping[str, str] | Sequence[str], Sequence[Any]]] = [
            (script, list(keys), list(args)) for keys in key_lists
        ]
        budget = round_keys or (MINUTE_ROUND_KEYS if by_minute else COUNTER_ROUND_KEYS)
        raw: list[Any] = []
        i = 0
        while i < len(calls):
            batch: list[tuple[str, Mapping[str, str] | Sequence[str], Sequence[Any]]] = []
            used = 0
            while i < len(calls) and (not batch or used + len(calls[i][1]) <= budget):
                batch.append(calls[i])
                used += len(calls[i][1])
                i += 1
            raw += await self.guarded(functools.partial(self.scripts.pipelined, batch))
        return [json.loads(records.text(reply)) for reply in raw]

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
                    pipe.llen(keyspace.new_jobs(partition))
                return sum(int(n) for n in await pipe.execute())

        return await self.guarded(depth)

    async def ping(self) -> bool:
        return bool(await self.guarded(self.client.ping))
