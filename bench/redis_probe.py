"""The Redis side: memory figures, and fast pre-population of many pending verifications.

Pre-population replays what the service itself sends.  One real start goes through an API process
connected via the counting proxy, which keeps the script calls it makes; every call that names the
template's number or verification id is then sent again, pipelined on a raw connection, with that
number, id and partition tag swapped for each new number.  So the Lua scripts and their argument
layout are exactly the service's (nothing here knows them), at tens of thousands a second instead
of the ~1,000 a second a Python client manages (redis-py parses each reply in pure Python).

What replay skips: the rate-limit and fraud counters (they are per API key, prefix and country, not
per number), and fresh timestamps (every copy shares the template's "now").
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis

from otp.app import create_app
from otp.edge.sms import Receipt, SmsMessage
from otp.settings import Settings
from otp.storage import keys as keyspace

HOST = "127.0.0.1"
PIPELINE_BATCH = 2000
MARKER = b"bench-batch-end"
READ_LIMIT = 256 * 1024 * 1024  # a batch's replies are read whole, up to the marker


class ReplayError(RuntimeError):
    pass


# -- memory --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryPoint:
    used: int
    audit: int


async def memory_point(client: aioredis.Redis, partitions: int) -> MemoryPoint:
    """used_memory, and the audit streams' MEMORY USAGE (every node counted: SAMPLES 0).

    Our own connections are dropped first (their buffers count in used_memory), and an
    incremental rehash is given a moment to finish."""
    await client.connection_pool.disconnect()
    await asyncio.sleep(0.5)
    used = int((await client.info("memory"))["used_memory"])
    audit = 0
    for p in range(partitions):
        size = await client.execute_command("MEMORY", "USAGE", keyspace.audit_stream(p), "SAMPLES", "0")  # type: ignore[no-untyped-call]
        audit += int(size or 0)
    return MemoryPoint(used, audit)


async def key_breakdown(client: aioredis.Redis, partitions: int, sample: int = 20_000) -> dict[str, dict[str, float]]:
    """Keys and MEMORY USAGE by kind of key: the per-partition shared keys (audit stream, outbox,
    poll schedule) measured exactly, every other kind scaled up from a SCAN sample.

    The kind is the key's first segment after its hash tag: ``otp:{p03}:v:VE…`` → ``v``.  MEMORY
    USAGE leaves out the keyspace's own tables, so these add up to a little less than used_memory."""
    shared = [f(p) for p in range(partitions) for f in (keyspace.audit_stream, keyspace.outbox, keyspace.poll_schedule)]
    exact = await _usage_by_kind(client, shared)
    total = int(await client.dbsize()) - sum(int(v["keys"]) for v in exact.values())
    sampled: dict[str, dict[str, float]] = {}
    cursor, seen = 0, 0
    for _ in range(sample):  # bounded: each SCAN step returns at least one key or ends
        cursor, found = await client.scan(cursor, count=1000)
        keys = [k for k in found if key_kind(k) not in exact]
        for kind, usage in (await _usage_by_kind(client, keys)).items():
            entry = sampled.setdefault(kind, {"keys": 0.0, "bytes": 0.0})
            entry["keys"] += usage["keys"]
            entry["bytes"] += usage["bytes"]
        seen += len(keys)
        if cursor == 0 or seen >= sample:
            break
    scale = total / seen if seen else 0.0
    scaled = {k: {"keys": v["keys"] * scale, "bytes": v["bytes"] * scale} for k, v in sampled.items()}
    return dict(sorted({**scaled, **exact}.items()))


async def _usage_by_kind(client: aioredis.Redis, keys: Sequence[bytes | str]) -> dict[str, dict[str, float]]:
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes = await pipe.execute()
    kinds: dict[str, dict[str, float]] = {}
    for key, size in zip(keys, sizes, strict=True):
        if size is None:
            continue  # no such key (an empty outbox or poll schedule)
        entry = kinds.setdefault(key_kind(key), {"keys": 0.0, "bytes": 0.0})
        entry["keys"] += 1
        entry["bytes"] += int(size)
    return kinds


def key_kind(key: bytes | str) -> str:
    text = (key.decode(errors="replace") if isinstance(key, bytes) else key).removeprefix("otp:")
    if text.startswith("{") and "}:" in text:
        text = text.split("}:", 1)[1]
    return text.split(":", 1)[0]


async def one_verification(client: aioredis.Redis, partitions: int) -> list[dict[str, Any]]:
    """The keys of one pending verification (its record, its SMS job if queued, its number's
    state, its outbox entry): MEMORY USAGE, OBJECT ENCODING and each field's value size, so a
    change to what they hold can be measured field by field."""
    found: list[Any] = []
    cursor = 0
    for _ in range(10_000):  # bounded: a few SCAN steps find a record among the keys
        cursor, found = await client.scan(cursor, match=f"{keyspace.PREFIX}*:v:*", count=1000)
        if found or cursor == 0:
            break
    if not found:
        return []
    vkey = _text(found[0])
    vid = vkey.rsplit(":", 1)[1]
    partition = keyspace.partition_of_id(vid, partitions)
    record = {_text(k): _text(v) for k, v in (await client.hgetall(vkey)).items()}
    to = record.get("to", "")
    sends = int(record.get("s", "1"))
    jobs = [keyspace.job(partition, f"{vid}:{n}") for n in range(1, sends + 1)]
    out = [await _key_sample(client, "v", vkey)]
    out += [await _key_sample(client, "j", key) for key in jobs if await client.exists(key)]
    if to:
        out.append(await _key_sample(client, "num", keyspace.number_state(partition, to)))
    for n in range(1, sends + 1):
        if await client.zscore(keyspace.outbox(partition), f"{vid}:{n}") is not None:
            out.append({"kind": "outbox entry", "bytes": len(f"{vid}:{n}"), "encoding": "member", "fields": {}})
        if await client.lpos(keyspace.new_jobs(partition), f"{vid}:{n}") is not None:
            out.append({"kind": "new job entry", "bytes": len(f"{vid}:{n}"), "encoding": "list entry", "fields": {}})
    return out


async def _key_sample(client: aioredis.Redis, kind: str, key: str) -> dict[str, Any]:
    size = await client.memory_usage(key, samples=0)
    encoding = await client.object("ENCODING", key)
    fields: dict[str, int] = {}
    if (await client.type(key)) in (b"hash", "hash"):
        fields = {_text(k): len(v) for k, v in (await client.hgetall(key)).items()}
    return {"kind": kind, "bytes": int(size or 0), "encoding": _text(encoding), "fields": fields}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def outbox_depth(client: aioredis.Redis, partitions: int) -> int:
    leased = [int(await client.zcard(keyspace.outbox(p))) for p in range(partitions)]
    return sum(leased) + sum([int(await client.llen(keyspace.new_jobs(p))) for p in range(partitions)])


async def drop_outbox(client: aioredis.Redis, partitions: int) -> None:
    """Forget queued SMS jobs (filler numbers are never sent); their job hashes expire by TTL."""
    await client.delete(*(keyspace.outbox(p) for p in range(partitions)))
    await client.delete(*(keyspace.new_jobs(p) for p in range(partitions)))


# -- capture and replay --------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """The script calls one real start made, as argument lists split around what varies."""

    e164: bytes
    vid: bytes
    tag: bytes
    partitions: int
    calls: tuple[tuple[Any, ...], ...]  # per call, per arg: bytes, or (literal, token, literal, …)

    @classmethod
    def from_capture(cls, captured: Sequence[list[bytes]], e164: str, vid: str, partitions: int) -> Template:
        number, ident, tag = e164.encode(), vid.encode(), tag_of(e164, partitions)
        scripts = [c for c in captured if c and c[0].lower() in (b"evalsha", b"eval")]
        mine = [c for c in scripts if any(number in a or ident in a for a in c)]
        if not any(tag in a for c in mine for a in c):
            raise ReplayError(f"no script call of the start names {e164} in its partition; {len(scripts)} captured")
        splitter = re.compile(b"(" + b"|".join(re.escape(t) for t in (number, ident, tag)) + b")")
        calls = tuple(tuple(_split(arg, splitter) for arg in call) for call in mine)
        return cls(number, ident, tag, partitions, calls)

    def render(self, e164: str) -> list[list[bytes]]:
        partition = keyspace.partition_of_number(e164, self.partitions)
        values = {
            self.e164: e164.encode(),
            self.vid: keyspace.new_verification_id(partition, self.partitions).encode(),
            self.tag: keyspace.tag(partition).encode(),
        }
        return [[_join(parts, values) for parts in call] for call in self.calls]


def tag_of(e164: str, partitions: int) -> bytes:
    return keyspace.tag(keyspace.partition_of_number(e164, partitions)).encode()


def _split(arg: bytes, splitter: re.Pattern[bytes]) -> Any:
    """A constant arg stays bytes; one holding tokens becomes (literal, token, literal, …)."""
    parts = splitter.split(arg)
    return arg if len(parts) == 1 else tuple(parts)


def _join(parts: Any, values: dict[bytes, bytes]) -> bytes:
    if isinstance(parts, bytes):
        return parts
    return b"".join(values[p] if i % 2 else p for i, p in enumerate(parts))


def pack(args: Sequence[bytes]) -> bytes:
    """A RESP command."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


async def replay(port: int, template: Template, phones: Iterator[str], count: int, lanes: int = 2) -> float:
    """``count`` copies of the template start, one per number; returns the seconds it took.

    Replies are not parsed (that is what makes it fast): each batch ends with an ECHO marker, and
    fails unless every copy answered "created" (an error reply, or a resend, would not)."""
    began = time.perf_counter()
    left = [count]

    async def lane() -> None:
        reader, writer = await asyncio.open_connection(HOST, port, limit=READ_LIMIT)
        try:
            while left[0] > 0:
                size = min(left[0], PIPELINE_BATCH)
                left[0] -= size
                await _batch(reader, writer, [template.render(next(phones)) for _ in range(size)])
        finally:
            writer.close()

    await asyncio.gather(*(lane() for _ in range(lanes)))
    return time.perf_counter() - began


async def _batch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, copies: list[list[list[bytes]]]) -> None:
    writer.write(b"".join(pack(call) for calls in copies for call in calls) + pack([b"ECHO", MARKER]))
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(MARKER + b"\r\n"), timeout=120)
    created = answer.count(b"\r\ncreated\r\n")
    if created < len(copies):
        error = answer.find(b"-ERR") if b"-ERR" in answer else answer.find(b"-")
        raise ReplayError(f"replay: {created} of {len(copies)} copies created; near: {answer[error : error + 200]!r}")


# -- delivering queued SMS in-process ------------------------------------------------------------


class NullSender:
    """Accepts every SMS at once as delivered: drains the outbox the way the worker does, without
    a network round trip per message."""

    name = "bench-null"

    async def send(self, message: SmsMessage) -> Receipt:
        return Receipt(message_sid="SM" + secrets.token_hex(16), status="delivered", segments=1)

    async def find_sent(self, message: SmsMessage, since: datetime) -> Receipt | None:
        return None

    async def fetch_status(self, message_sid: str) -> tuple[str, int | None, str | None]:
        return "delivered", None, None

    async def aclose(self) -> None:
        return None


@contextlib.asynccontextmanager
async def in_process_worker(env: dict[str, str]) -> AsyncIterator[None]:
    """The service's own SMS worker (through create_app's lifespan) sending to NullSender."""
    app = create_app(Settings.from_env({**env, "OTP_WORKER": "on"}), sender=NullSender())
    async with app.router.lifespan_context(app):
        yield


async def drain(client: aioredis.Redis, env: dict[str, str], partitions: int, timeout_s: float) -> float:
    """Run an in-process worker until the outbox is empty; returns the seconds it took."""
    began = time.perf_counter()
    async with in_process_worker(env):
        while await outbox_depth(client, partitions):
            if time.perf_counter() - began > timeout_s:
                raise ReplayError(f"outbox not drained within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)
    return time.perf_counter() - began
