"""The one script registry: every ``lua/*.lua`` loaded once, registered once per client, run here.

A script declares the names of its ``KEYS``; the registry prepends a line binding them
(``local K = {outbox = KEYS[1], …}``), so Lua reads ``K.outbox`` and Python passes keys by name,
built by `otp.storage.keys`. The prelude also carries the audit counters' lifetime (keys.py) and,
for scripts that share ``lib.lua``, the delivery ranks from `otp.delivery`, their one home:
generated at load rather than sent with each call, so a call carries no constant and a change of
ranks changes the scripts' SHA (every node reloads them).
Arguments are one JSON object (``ARGV[1]``, decoded by lib.lua as ``A``) with named fields;
the scope scripts that other modules call positionally (limit, fraud, signin_limit) take their
own values after it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from otp import audit_fields, delivery
from otp.storage import keys as keyspace

# What the partition's scripts may touch (keys.partition_script_keys builds them in this order).
PARTITION_KEYS = (
    "verifications",
    "numbers",
    "failed",
    "approving",
    "jobs",
    "outbox",
    "new_jobs",
    "poll",
    "audit",
    "counter",
    "minute",
    "refusals",
    "sources",
    "locks",
    "lock_details",
    "events",
    "event",
    "event_owner",
)


@dataclass(frozen=True)
class ScriptSpec:
    """``keys``: the names of KEYS in order, or None for a script that takes a list of like keys
    (one partition's hour counters). ``lib``: whether ``lib.lua`` is prepended."""

    keys: tuple[str, ...] | None
    lib: bool = True


# The runtime's scripts. Other storage modules add theirs with `register` (e.g. "audit_scan").
SCRIPTS: dict[str, ScriptSpec] = {
    "start": ScriptSpec(("number", *PARTITION_KEYS)),
    "number_gate": ScriptSpec(("number", *PARTITION_KEYS)),
    "attempt": ScriptSpec(("check_log", *PARTITION_KEYS)),
    "approve": ScriptSpec(("verification", *PARTITION_KEYS)),
    "exhaust": ScriptSpec(("verification", *PARTITION_KEYS)),
    "fetch": ScriptSpec(("verification", *PARTITION_KEYS)),
    "audit_event": ScriptSpec(PARTITION_KEYS),
    "cancel": ScriptSpec(("verification", *PARTITION_KEYS)),
    "claim": ScriptSpec(PARTITION_KEYS),
    "settle_job": ScriptSpec(PARTITION_KEYS),
    "delivery": ScriptSpec(("verification", *PARTITION_KEYS)),
    "poll_claim": ScriptSpec(PARTITION_KEYS),
    "renew": ScriptSpec(("outbox",)),
    "event_claim": ScriptSpec(PARTITION_KEYS),
    "event_settle": ScriptSpec(PARTITION_KEYS),
    # otp.storage.webhooks: a tenant's webhooks, capped.
    "webhook_put": ScriptSpec(("hooks",), lib=False),
    "limit": ScriptSpec(("log",)),
    # Verify v2 service Rate Limits: every bucket of one (rate limit, value), decided at once.
    "buckets": ScriptSpec(("log",)),
    # Their configuration: a service's rate limits and buckets, edited atomically under caps.
    "rate_limits": ScriptSpec(("limits",)),
    "fraud": ScriptSpec(("window", "reservations", "known_good", "block", "level")),
    "signin_limit": ScriptSpec(("log",)),
    # otp.core.budget: a spend budget's day (reserve or adjust), and a send's reconciliation.
    "budget": ScriptSpec(("day", "limit")),
    "budget_settle": ScriptSpec(("verification", *PARTITION_KEYS)),
    "counters": ScriptSpec(None, lib=False),
    # otp.core.incidents: refusals ranked, and the top rows' counts per minute or hour.
    "incidents": ScriptSpec(None, lib=False),
    # otp.storage.audit_log's filtered read of one partition's stream.
    "audit_scan": ScriptSpec(("stream",), lib=False),
    # otp.storage.pacing: the next slot of the sender pool's least-busy allowed sender.
    "sender_take": ScriptSpec(None, lib=False),
    # otp.storage.accounts: a /v2 service's MessagingConfigurations, changed while the service exists.
    "messaging_config": ScriptSpec(("service", "configs"), lib=False),
    # otp.storage.accounts: a new /v2 service, under its account's cap.
    "service_create": ScriptSpec(("service", "services"), lib=False),
}
# Development tools only (otp.devtools): kept apart, so the runtime never registers them.
DEV_SCRIPTS: dict[str, ScriptSpec] = {
    "dev_fill_audit": ScriptSpec(("stream", "counters", "refusals", "sources", "minutes"), lib=False),
}
SCRIPT_NAMES = tuple(SCRIPTS)


def register(name: str, spec: ScriptSpec) -> None:
    """Add a runtime script (a storage module's own, registered at its import)."""
    SCRIPTS[name] = spec


def _spec(name: str) -> ScriptSpec:
    return SCRIPTS.get(name) or DEV_SCRIPTS[name]


def _lua_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)  # an int, or a plain name (a Python repr of one is a Lua string too)


def _lua_table(values: Mapping[str, str | int | bool]) -> str:
    return "{" + ", ".join(f"[{k!r}] = {_lua_value(v)}" for k, v in values.items()) + "}"


COUNTER_NAMES = {
    "refused": audit_fields.REFUSED_COUNTER,
    "delivery": audit_fields.DELIVERY_COUNTER,
    "flagged": audit_fields.FLAGGED_COUNTER,
    "sent_prefix": audit_fields.SENT_TO_PREFIX,
    "approved_prefix": audit_fields.APPROVED_TO_PREFIX,
    "sent_country": audit_fields.SENT_TO_COUNTRY,
    "approved_country": audit_fields.APPROVED_TO_COUNTRY,
    "webhook_dropped": audit_fields.WEBHOOK_DROPPED_COUNTER,
    "country_delivery": audit_fields.COUNTRY_DELIVERY_COUNTER,
    "sender_delivery": audit_fields.SENDER_DELIVERY_COUNTER,
    "country_ttd": audit_fields.COUNTRY_TTD_COUNTER,
    "sender_ttd": audit_fields.SENDER_TTD_COUNTER,
    "spend_country": audit_fields.SPEND_TO_COUNTRY,
    "spend_key": audit_fields.SPEND_BY_KEY,
    "blocked_spend": audit_fields.BLOCKED_SPEND,
    "lookup": audit_fields.LOOKUP_COUNTER,
    "refused_prefix": audit_fields.REFUSED_TO_PREFIX,
    "refused_country": audit_fields.REFUSED_TO_COUNTRY,
    "refused_ip": audit_fields.REFUSED_FROM_IP,
    "refused_key": audit_fields.REFUSED_BY_KEY,
    "refused_rule": audit_fields.REFUSED_BY_RULE,
    "refused_tallies": audit_fields.REFUSED_TALLIES,
    "refused_untallied": audit_fields.REFUSED_UNTALLIED,
    "sent_ip": audit_fields.SENT_FROM_IP,
    "approved_ip": audit_fields.APPROVED_FROM_IP,
    "sent_key": audit_fields.SENT_BY_KEY,
    "approved_key": audit_fields.APPROVED_BY_KEY,
}


def _webhook_events(kind: str) -> dict[str, str]:
    """The webhook events of one kind ("verification", "message") by the status that causes them."""
    return {name.split(".", 1)[1]: name for name in audit_fields.WEBHOOK_EVENTS if name.startswith(kind + ".")}


def _prelude(spec: ScriptSpec) -> str:
    lines = [f"local AUDIT_COUNTER_TTL_MS = {keyspace.AUDIT_COUNTER_TTL_MS}"]
    lines.append(f"local MINUTE_COUNTER_TTL_MS = {keyspace.MINUTE_COUNTER_TTL_MS}")
    lines.append(f"local REFUSAL_TALLIES_PER_HOUR = {keyspace.REFUSAL_TALLIES_PER_HOUR}")
    lines.append(f"local REFUSAL_TALLIES_PER_MINUTE = {keyspace.REFUSAL_TALLIES_PER_MINUTE}")
    # The hourly counters' field names, from otp/audit_fields.py: writers and readers name them alike.
    lines.append(f"local C = {_lua_table(COUNTER_NAMES)}")
    if spec.keys is not None:
        lines.append("local K = {" + ", ".join(f"{k} = KEYS[{i}]" for i, k in enumerate(spec.keys, 1)) + "}")
    if spec.lib:
        lines.append(f"local DELIVERY_RANK = {_lua_table(delivery.RANK)}")
        lines.append(f"local FINAL = {_lua_table(dict.fromkeys(sorted(delivery.FINAL), True))}")
        lines.append(f"local VERIFY_EVENT = {_lua_table(_webhook_events('verification'))}")
        lines.append(f"local MESSAGE_EVENT = {_lua_table(_webhook_events('message'))}")
        # The attempt timeline's states, the states counted per country and sender, and the
        # time-to-delivered buckets (upper bounds in ms), from otp/delivery.py.
        lines.append(f"local TIMELINE = {_lua_table(dict.fromkeys(delivery.TIMELINE, True))}")
        lines.append(f"local COUNTED = {_lua_table(dict.fromkeys(delivery.COUNTED, True))}")
        bounds = ", ".join(str(int(b * 1000)) for b in delivery.TIME_TO_DELIVERED_BUCKETS)
        lines.append(f"local TTD_BOUNDS_MS = {{{bounds}}}")
    return "\n".join(lines)


def load_script_source(name: str) -> str:
    folder = resources.files("otp.storage") / "lua"
    spec = _spec(name)
    parts = [_prelude(spec)]
    if spec.lib:
        parts.append((folder / "lib.lua").read_text())
    parts.append((folder / f"{name}.lua").read_text())
    return "\n".join(part for part in parts if part)


@functools.cache
def _cached_source(name: str) -> str:
    return load_script_source(name)


def ordered_keys(name: str, keys: Mapping[str, str] | Sequence[str]) -> list[str]:
    """The KEYS of a call in the script's order; named keys must be exactly the declared ones."""
    declared = _spec(name).keys
    if isinstance(keys, Mapping):
        if declared is None or set(keys) != set(declared):
            raise ValueError(f"{name}.lua takes KEYS {declared}, got {sorted(keys)}")
        return [keys[k] for k in declared]
    if declared is not None and len(keys) != len(declared):
        raise ValueError(f"{name}.lua takes KEYS {declared}, got {len(keys)}")
    return list(keys)


ScriptCall = tuple[AsyncScript, Sequence[Any], Sequence[Any]]  # (script, keys, args)
# A plain read command sent in the same pipeline as the scripts: (command, its arguments).
ReadCall = tuple[str, Sequence[Any]]
# What Registry.pipelined takes: a script by name with its keys (named or in order) and arguments, or a read.
PipelineCall = tuple[str, Mapping[str, str] | Sequence[str], Sequence[Any]] | ReadCall


async def run_scripts(
    client: aioredis.Redis, calls: Sequence[ScriptCall | ReadCall], *, raise_errors: bool = True
) -> list[Any]:
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
        for call in calls:
            if len(call) == 2:
                command, read_args = call
                cluster_pipe.execute_command(command, *read_args)
            else:
                script, keys, args = call
                cluster_pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        # raise_on_error=False: a failed reply is raised below as is. Raising inside redis-py
        # would re-run the whole batch on a connection error, scripts that did run included.
        results = list(await cluster_pipe.execute(raise_on_error=False))
    missing = [i for i, result in enumerate(results) if isinstance(result, redis_errors.NoScriptError)]
    if missing:
        await load_scripts(client, {calls[i][0].script for i in missing})  # type: ignore[union-attr]
        for i in missing:
            script, keys, args = calls[i]  # type: ignore[misc]  # only script calls answer NOSCRIPT
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


class Registry:
    """The scripts registered on one client; each source is read once per process."""

    def __init__(self, client: aioredis.Redis, names: Iterable[str] = SCRIPT_NAMES) -> None:
        self.client = client
        self._scripts = {name: client.register_script(self.source(name)) for name in names}
        # Cluster: whether the scripts were loaded on every primary yet (first pipelined use).
        # Only an optimisation; run_scripts copes with a primary that lacks them.
        self._loaded = not isinstance(client, RedisCluster)

    @staticmethod
    def source(name: str) -> str:
        return _cached_source(name)

    def script(self, name: str) -> AsyncScript:
        if name not in self._scripts:
            # A script added with `register` after this registry was made (or a devtools one).
            self._scripts[name] = self.client.register_script(self.source(name))
        return self._scripts[name]

    async def run(self, name: str, keys: Mapping[str, str] | Sequence[str], args: Sequence[Any]) -> Any:
        return await self.script(name)(keys=ordered_keys(name, keys), args=list(args))

    async def pipelined(
        self,
        calls: Sequence[PipelineCall],
        *,
        raise_errors: bool = True,
    ) -> list[Any]:
        """Script calls ``(name, keys, args)`` and plain reads ``(command, args)`` in one round trip."""
        if not self._loaded:
            await load_scripts(self.client, [script.script for script in self._scripts.values()])
            self._loaded = True
        prepared: list[ScriptCall | ReadCall] = [
            call if len(call) == 2 else (self.script(call[0]), ordered_keys(call[0], call[1]), call[2])
            for call in calls
        ]
        return await run_scripts(self.client, prepared, raise_errors=raise_errors)
