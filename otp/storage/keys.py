"""Every Redis key name, in one place: Lua scripts receive theirs in ``KEYS`` (see `script_keys`).

All state about one phone number and its verifications lives under one hash tag, the number's
*partition* ``{pNN}``, so one Lua script can resend, check and approve atomically and still run on
Redis Cluster (a script touches one slot only). A verification id carries its partition in its
first byte, so ``GET /v1/verifications/{id}`` finds the slot without an index. The outbox and the
audit stream are per partition too: no single key takes every write, and a worker or reader walks
the partitions.

The partition count is fixed for a deployment (like a shard count): changing it orphans pending
verifications until they expire.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets

PREFIX = "otp:"
VERIFICATION_ID = re.compile(r"^VE[0-9a-f]{32}$")
CONFIG_TAG = "{cfg}"
# start.lua publishes here when it queues an SMS, so idle workers wake at once instead of polling.
WAKE_CHANNEL = "otp:wake"


def partition_of_number(e164: str, partitions: int) -> int:
    # Not keyed: the partition only spreads load and must survive secret-key rotation.
    return hashlib.sha256(e164.encode()).digest()[0] % partitions


def partition_of_id(verification_id: str, partitions: int) -> int:
    return int(verification_id[2:4], 16) % partitions


def new_verification_id(partition: int, partitions: int) -> str:
    """``VE`` + 32 hex, whose first byte maps to ``partition`` (``partitions`` divides 256)."""
    raw = bytearray(secrets.token_bytes(16))
    # Keep the random high bits of the first byte, put the partition in its low bits.
    raw[0] = (raw[0] - raw[0] % partitions) + partition
    return "VE" + raw.hex()


def tag(partition: int) -> str:
    return f"{PREFIX}{{p{partition:02x}}}:"


_TAG = re.compile(rf"^{re.escape(PREFIX)}\{{p([0-9a-f]{{2}})\}}:$")


def partition_of_tag(text: str) -> int | None:
    """The partition a `tag` names (start.lua's wake-up message is its partition's tag), or None."""
    found = _TAG.match(text)
    return int(found.group(1), 16) if found else None


def verification_prefix(partition: int) -> str:
    return f"{tag(partition)}v:"


def verification(partition: int, verification_id: str) -> str:
    return verification_prefix(partition) + verification_id


def number_state_prefix(partition: int) -> str:
    return f"{tag(partition)}num:"


def number_state(partition: int, e164: str) -> str:
    """A hash: per API key the number's pending verification (``p:<key id>``), and the number's
    send log of the last day (``s``)."""
    return number_state_prefix(partition) + e164


def used_token(partition: int, verification_id: str) -> str:
    """Marks the approval token of a verification used (``/v1/tokens/verify`` with ``consume``):
    one approval earns one token, so the verification names it; it expires when the token would."""
    return f"{tag(partition)}tok:{verification_id}"


def failed_checks_prefix(partition: int) -> str:
    return f"{tag(partition)}nf:"


def failed_checks(partition: int, key_id: str, e164: str) -> str:
    """A sorted set: the number's failed checks of the last hour by one API key (lib.lua's
    ``failedkey`` appends the same ``<key id>:<e164>`` to `failed_checks_prefix`)."""
    return f"{failed_checks_prefix(partition)}{key_id}:{e164}"


def check_log(partition: int, rate_key: str) -> str:
    """A sorted set: one API key's (or /v2 account's) checks of the last minute in this partition."""
    return f"{tag(partition)}ck:{rate_key}"


def approving_code_prefix(partition: int) -> str:
    return f"{tag(partition)}ah:"


def approving_code(partition: int, verification_id: str) -> str:
    """A hash: the hash of the code that approved a verification (``h``) and how many checks have
    looked at it (``n``), for a short while, so the same right check can repeat the approval a few
    times."""
    return approving_code_prefix(partition) + verification_id


def job_prefix(partition: int) -> str:
    return f"{tag(partition)}j:"


def job(partition: int, job_id: str) -> str:
    return job_prefix(partition) + job_id


def outbox(partition: int) -> str:
    """A sorted set: the partition's SMS jobs under a lease, waiting for a retry or for their
    sender's slot (job id → due ms)."""
    return f"{tag(partition)}outbox"


def new_jobs(partition: int) -> str:
    """A list: the partition's SMS jobs queued and not yet claimed, oldest first. A list entry
    costs a third of a sorted set's member, and every queued SMS waits here until its first claim
    moves it to `outbox` under its lease."""
    return f"{tag(partition)}outq"


def event_outbox(partition: int) -> str:
    """A sorted set: the partition's webhook events (event sid → due ms), claimed under a lease
    like the SMS outbox (lib.lua's ``emit_event``, event_claim.lua)."""
    return f"{tag(partition)}wh:outbox"


def event_prefix(partition: int) -> str:
    return f"{tag(partition)}whe:"


def event(partition: int, event_sid: str) -> str:
    """A hash: one webhook event (type, verification, send, time, owner, error code, who got it)."""
    return event_prefix(partition) + event_sid


def event_owner_prefix(partition: int) -> str:
    return f"{tag(partition)}who:"


def event_owner(partition: int, owner: str) -> str:
    """A sorted set: one fraud tenant's queued events in this partition by creation time (a /v2
    account's, for all its services; a /v1 key's), capped (the oldest goes first) so a dead
    endpoint can't grow Redis without bound, nor more services buy a longer queue."""
    return event_owner_prefix(partition) + owner


def poll_schedule(partition: int) -> str:
    return f"{tag(partition)}poll"


def audit_stream(partition: int) -> str:
    return f"{tag(partition)}audit"


def scope_tag(kind: str, value: str) -> str:
    """Tag of a cross-number scope (an IP, an API key, a number prefix, a country): its counters
    live in a slot of their own, decided by their own script."""
    return f"{PREFIX}{{{kind}:{value}}}:"


def scope_window(kind: str, value: str) -> str:
    return f"{scope_tag(kind, value)}w"


def scope_sends(kind: str, value: str) -> str:
    """A sliding log of a rate-limited scope's sends (limit.lua): an IP, an API key, a tenant's
    own RateLimits value."""
    return f"{scope_tag(kind, value)}sends"


def scope_reservations(kind: str, value: str) -> str:
    """A sorted set: sends a scope's pumping check allowed that aren't written yet (fraud.lua)."""
    return f"{scope_tag(kind, value)}r"


def scope_known_good(kind: str, value: str) -> str:
    """A hash: keyed number hash → when a code last approved that number. Only prefix scopes keep
    one (`known_good`); fraud.lua receives the name for every scope and leaves it alone elsewhere."""
    return f"{scope_tag(kind, value)}good"


def known_good(prefix: str) -> str:
    """A prefix's known-good numbers (fraud.lua; the prefix scope's slot)."""
    return scope_known_good("pfx", prefix)


def scope_block(kind: str, value: str) -> str:
    """A string ``<level>:<until ms>:<reason>:<unverified>``: the scope's pumping block (fraud.lua)."""
    return block_of(scope_tag(kind, value))


def scope_level(kind: str, value: str) -> str:
    """A string ``<level>:<at ms>``: the scope's last block level, decaying (fraud.lua)."""
    return level_of(scope_tag(kind, value))


def fraud_keys(kind: str, value: str) -> list[str]:
    """fraud.lua's KEYS for one scope, in the order scripts.SCRIPTS declares them."""
    return [
        scope_window(kind, value),
        scope_reservations(kind, value),
        scope_known_good(kind, value),
        scope_block(kind, value),
        scope_level(kind, value),
    ]


def line_type(number_hash: str) -> str:
    """A string ``<at ms>|<type>|<carrier>``: Twilio Lookup's answer for a number, by its keyed
    hash (otp.core.line_types), in a slot of its own; it expires with the cache's lifetime."""
    return f"{scope_tag('lt', number_hash)}type"


def safe_list() -> str:
    """The prefixes of the safe list (``/v1/safelist``, ``otp safelist``, the dashboard)."""
    return f"{PREFIX}{CONFIG_TAG}:safe"


def opt_out(partition: int, number_hash: str, scope: str = "") -> str:
    """A number that replied STOP (Twilio's 21610) to a sender, by its keyed hash, in the number's
    partition: ``scope`` "" for the operator's own sender, else the /v2 MessagingConfiguration's
    Messaging Service the STOP was sent to. Its value is when it was marked (ms), its TTL
    ``OTP_OPT_OUT_TTL`` (otp.storage.optouts)."""
    return f"{tag(partition)}optout:{number_hash}" + (f":{scope}" if scope else "")


def safe_numbers() -> str:
    """The whole numbers of the safe list (``/v2/SafeList/Numbers``), matched exactly."""
    return f"{PREFIX}{CONFIG_TAG}:safe:n"


def stats_index(name: str) -> str:
    """Small indexes for readers (countries seen, blocked scopes); bounded by their TTL."""
    return f"{PREFIX}{{stats}}:{name}"


# The hourly counters outlive the dashboard's longest window (7 days) by a day.
AUDIT_COUNTER_TTL_MS = 8 * 86_400_000


def audit_counter_prefix(partition: int) -> str:
    return f"{tag(partition)}agg:"


def audit_counter_of_hour(partition: int, hour: int) -> str:
    """Counts of the partition's audit events in one hour since the epoch (written beside the
    stream, see lib.lua's ``audit``)."""
    return f"{audit_counter_prefix(partition)}{hour}"


def audit_counter(partition: int, now_ms: int) -> str:
    """The counter of the hour ``now_ms`` falls in."""
    return audit_counter_of_hour(partition, now_ms // 3_600_000)


# The minute counters cover the dashboard's short windows (6 hours at minute resolution) and an
# hour's margin, so a window read at the end of a minute never finds its oldest minute gone.
MINUTE_COUNTER_TTL_MS = 7 * 3_600_000


# Refused attempts are free for a client (they move no limit) and name values it chooses (an
# end-user IP, a number and so its prefix): one hash holds at most this many distinct refusal
# tallies by IP and prefix (an hour's refusal hash, a minute hash); later values count only in
# audit_fields.REFUSED_UNTALLIED (and by rule, country and key, whose values are few), so the
# memory a flood of refusals can hold, and the Incidents page's reads of it, are bounded.
REFUSAL_TALLIES_PER_HOUR = 500
REFUSAL_TALLIES_PER_MINUTE = 100


def audit_minute_counter_prefix(partition: int) -> str:
    return f"{tag(partition)}aggm:"


def audit_minute_counter_of(partition: int, minute: int) -> str:
    """Counts of the partition's audit events in one minute since the epoch: the event names and
    the tallies by destination and source (lib.lua's ``audit``), kept MINUTE_COUNTER_TTL_MS."""
    return f"{audit_minute_counter_prefix(partition)}{minute}"


def audit_refusal_counter_prefix(partition: int) -> str:
    return f"{tag(partition)}aggr:"


def audit_refusal_counter_of_hour(partition: int, hour: int) -> str:
    """Refused attempts of one hour by destination, source and rule (``refused@…`` fields): a
    hash of its own, small while nothing is under attack, so ranking a week of refusals reads
    refusals only."""
    return f"{audit_refusal_counter_prefix(partition)}{hour}"


def audit_source_counter_prefix(partition: int) -> str:
    return f"{tag(partition)}aggs:"


def audit_source_counter_of_hour(partition: int, hour: int) -> str:
    """Starts and approvals of one hour by end-user IP and API key (``sent@ip:`` …): apart from
    the destination tallies, whose readers (the overview, the fraud ranking) never need them."""
    return f"{audit_source_counter_prefix(partition)}{hour}"


def lock_index(partition: int) -> str:
    """A sorted set: the partition's brute-force locks by when last seen (lib.lua's ``note_lock``):
    ``v:<id>`` a verification locked by its attempts, ``n:<id>`` a check of verification ``id``
    refused because its number is locked by failed checks (the number itself is not kept)."""
    return f"{tag(partition)}locks"


def lock_details(partition: int) -> str:
    """A hash beside `lock_index`: each lock's details (JSON: first and last seen, how many times,
    the API keys and end-user IPs involved)."""
    return f"{tag(partition)}locks:d"


def partition_script_keys(partition: int, now_ms: int) -> dict[str, str]:
    """What the partition's scripts (lib.lua) may touch, named as lib.lua names them.

    Some key names depend on data the script reads (the pending verification a number state points
    at, the jobs in the outbox): those arrive as *prefixes* built here, and Lua only appends the id
    it found. A prefix carries the partition's hash tag, so it names the same cluster slot as the
    keys built from it and Cluster routes the call by it like any key; this module stays the one
    place that spells a key, and no Lua file holds a key-name literal. The hour counter is named
    from ``now_ms``, which the caller knows, so it is a whole key.
    """
    # int(): a float's minute would be the same cache entry as the int's, with '.0' key names.
    return dict(_partition_script_keys(partition, int(now_ms) // 60_000))


@functools.lru_cache(maxsize=4096)
def _partition_script_keys(partition: int, minute: int) -> dict[str, str]:
    # Built once a minute per partition (the hour and minute counters are the only keys that
    # change): each partition script call needs them, and building 18 names cost ~6 µs a call (0.25 µs cached).
    now_ms = minute * 60_000
    return {
        "verifications": verification_prefix(partition),
        "numbers": number_state_prefix(partition),
        "failed": failed_checks_prefix(partition),
        "approving": approving_code_prefix(partition),
        "jobs": job_prefix(partition),
        "outbox": outbox(partition),
        "new_jobs": new_jobs(partition),
        "poll": poll_schedule(partition),
        "audit": audit_stream(partition),
        "counter": audit_counter(partition, now_ms),
        "minute": audit_minute_counter_of(partition, now_ms // 60_000),
        "refusals": audit_refusal_counter_of_hour(partition, now_ms // 3_600_000),
        "sources": audit_source_counter_of_hour(partition, now_ms // 3_600_000),
        "locks": lock_index(partition),
        "lock_details": lock_details(partition),
        "events": event_outbox(partition),
        "event": event_prefix(partition),
        "event_owner": event_owner_prefix(partition),
    }


def api_key(key_id: str) -> str:
    # Configuration, not state: API keys live until revoked, so they carry no TTL.
    return f"{PREFIX}{CONFIG_TAG}:key:{key_id}"


def api_key_index() -> str:
    return f"{PREFIX}{CONFIG_TAG}:keys"


def worker_heartbeat() -> str:
    return f"{PREFIX}{CONFIG_TAG}:worker-heartbeat"


# The sender pool's pacing state: every sender's bucket under one hash tag, so one script picks the
# sender whose queue frees first among several (one slot on Redis Cluster; the pool's total MPS
# bounds the calls it takes).
SENDER_TAG = "{snd}"


def sender_bucket(address: str) -> str:
    """When the sender (one of the operator's own numbers, short codes or Messaging Services, never
    a user's number) is free for its next message, in ms; it expires once the sender is idle."""
    return f"{PREFIX}{SENDER_TAG}:tb:{address}"


def dashboard_session(digest: str) -> str:
    """A signed-in dashboard session, named by the SHA-256 of the id its cookie carries (a dump
    names no live session); the value is the admin key's id. Its TTL is the session's life, and
    sign-out deletes it. Beside the API keys, so one round trip reads both."""
    return f"{PREFIX}{CONFIG_TAG}:session:{digest}"


def signin_failures(scope: str) -> str:
    """Failed dashboard sign-ins from one client address (its /64 on IPv6): a sliding log."""
    return f"{scope_tag('signin', scope)}fail"


def block_of(scope: str) -> str:
    """`scope_block` by the scope's tag (the blocks index holds tags)."""
    return f"{scope}block"


def level_of(scope: str) -> str:
    """`scope_level` by the scope's tag."""
    return f"{scope}level"


# Verify v2 services: configuration like the API keys (the {cfg} tag, no TTL); the per-verification
# lookups in the verification's partition, so they land in its slot and spread like it.


def v2_service(sid: str) -> str:
    return f"{PREFIX}{CONFIG_TAG}:svc:{sid}"


def v2_messaging_configurations(service_sid: str) -> str:
    """A hash beside the service: country (ISO alpha-2, or ``all``) → ``<MG sid>|<created ms>|<updated
    ms>``, its MessagingConfigurations. Bounded by nature (a field per country); deleted with it."""
    return f"{v2_service(service_sid)}:mc"


def v2_services_of(account_sid: str) -> str:
    """A sorted set of an account's service sids by creation time (ms)."""
    return f"{PREFIX}{CONFIG_TAG}:svcs:{account_sid}"


def v2_rate_limits(service_sid: str) -> str:
    """A hash: a service's Rate Limits and their Buckets (rate_limits.lua): per rate limit, its
    record as JSON under ``n:<unique name>`` and its unique name under ``s:<RK sid>``. Beside the
    service's hash in the {cfg} slot, so a start reads both in one round trip."""
    return f"{v2_service(service_sid)}:rl"


def rate_limit_log(log_id: str) -> str:
    """A sliding log of one service Rate Limit's sends for one value (buckets.lua), every bucket of
    the rate limit counting in it; ``log_id`` is ``<RK sid>:<keyed hash of the value>``, so the
    value (which may be a phone number or a user id) is never in a key name."""
    return scope_sends("rlb", log_id)


def v2_attempt(attempt_sid: str, partitions: int) -> str:
    """``<verification id>:<send number>:<service sid>`` of an attempt sid (``VL`` + partition byte…)."""
    return f"{tag(int(attempt_sid[2:4], 16) % partitions)}vl:{attempt_sid}"


def v2_latest(service_sid: str, e164: str, partitions: int) -> str:
    """The latest verification of a service to a number."""
    return f"{tag(partition_of_number(e164, partitions))}v2n:{service_sid}:{e164}"


def webhooks_of(owner: str) -> str:
    """A hash: the webhooks of one tenant (a /v2 service sid, or a /v1 API key id), webhook sid →
    its JSON record (at most a handful: otp.core.webhooks.MAX_PER_SERVICE). Configuration, no TTL;
    deleted with its service or key."""
    return f"{PREFIX}{CONFIG_TAG}:wh:{owner}"


# -- spend budgets (budget.lua) ------------------------------------------------------------------
# A budget scope is ``g`` (everything), ``c:<CC>`` (a destination country) or ``t:<tenant>`` (an API
# key, or a /v2 account for all its services). Each has a slot of its own, like the other
# cross-number scopes: a budget is one counter, and only its own script decides it.
BUDGET_DAY_TTL_MS = 3 * 86_400_000  # a day's counter outlives the day by the latest reconciliation


def budget_day(scope: str, day: str) -> str:
    """A hash: one scope's spend on one day of the budget's time zone (``day`` is YYYYMMDD), in
    millionths of the price table's currency: ``s`` spent and reserved; ``a80`` / ``a100`` once its
    80 % / 100 % audit events were written."""
    return f"{scope_tag('bud', scope)}d:{day}"


def budget_limit(scope: str) -> str:
    """A tenant's own daily budget (millionths), set by the admin API or ``otp keys budget``;
    configuration, no TTL. Beside the scope's day counters, so the script that reserves reads it."""
    return f"{scope_tag('bud', scope)}limit"
