"""Every Redis key name, in one place.

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


def verification(partition: int, verification_id: str) -> str:
    return f"{tag(partition)}v:{verification_id}"


def number_state(partition: int, e164: str) -> str:
    """A hash: per API key the number's pending verification (``p:<key id>``), and the number's
    send log of the last day (``s``)."""
    return f"{tag(partition)}num:{e164}"


def used_token(partition: int, verification_id: str) -> str:
    """Marks the approval token of a verification used (``/v1/tokens/verify`` with ``consume``):
    one approval earns one token, so the verification names it; it expires when the token would."""
    return f"{tag(partition)}tok:{verification_id}"


def failed_checks(partition: int, key_id: str, e164: str) -> str:
    """A sorted set: the number's failed checks of the last hour by one API key (built in lib.lua
    as ``failedkey``)."""
    return f"{tag(partition)}nf:{key_id}:{e164}"


def check_log(partition: int, rate_key: str) -> str:
    """A sorted set: one API key's (or /v2 account's) checks of the last minute in this partition
    (built in attempt.lua)."""
    return f"{tag(partition)}ck:{rate_key}"


def approving_code(partition: int, verification_id: str) -> str:
    """A hash: the hash of the code that approved a verification (``h``) and how many checks have
    looked at it (``n``), for a short while, so the same right check can repeat the approval a few
    times (built in approve.lua and attempt.lua)."""
    return f"{tag(partition)}ah:{verification_id}"


def job(partition: int, job_id: str) -> str:
    return f"{tag(partition)}j:{job_id}"


def outbox(partition: int) -> str:
    return f"{tag(partition)}outbox"


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


def scope_reservations(kind: str, value: str) -> str:
    """A sorted set: sends a scope's pumping check allowed that aren't written yet (fraud.lua)."""
    return f"{scope_tag(kind, value)}r"


def known_good(prefix: str) -> str:
    """A hash: keyed number hash → when a code last approved that number, for one prefix's numbers
    (fraud.lua; the prefix scope's slot)."""
    return f"{scope_tag('pfx', prefix)}good"


def safe_list() -> str:
    return f"{PREFIX}{CONFIG_TAG}:safe"


def stats_index(name: str) -> str:
    """Small indexes for readers (countries seen, blocked scopes); bounded by their TTL."""
    return f"{PREFIX}{{stats}}:{name}"


def audit_counter(partition: int, now_ms: int) -> str:
    """Hourly counts of the partition's audit events (written beside the stream, see lib.lua)."""
    return f"{tag(partition)}agg:{now_ms // 3_600_000}"


def api_key(key_id: str) -> str:
    # Configuration, not state: API keys live until revoked, so they carry no TTL.
    return f"{PREFIX}{CONFIG_TAG}:key:{key_id}"


def api_key_index() -> str:
    return f"{PREFIX}{CONFIG_TAG}:keys"


def worker_heartbeat() -> str:
    return f"{PREFIX}{CONFIG_TAG}:worker-heartbeat"


def dashboard_session(digest: str) -> str:
    """A signed-in dashboard session, named by the SHA-256 of the id its cookie carries (a dump
    names no live session); the value is the admin key's id. Its TTL is the session's life, and
    sign-out deletes it. Beside the API keys, so one round trip reads both."""
    return f"{PREFIX}{CONFIG_TAG}:session:{digest}"


def signin_failures(scope: str) -> str:
    """Failed dashboard sign-ins from one client address (its /64 on IPv6): a sliding log."""
    return f"{scope_tag('signin', scope)}fail"


def scope_block(scope: str) -> str:
    """A scope's block, ``"<level>:<until ms>:<reason>:<unverified>"`` (fraud.lua), by scope tag."""
    return f"{scope}block"


def scope_level(scope: str) -> str:
    """How many times a scope was blocked lately: the next block lasts longer (fraud.lua)."""
    return f"{scope}level"


# Verify v2 services: configuration like the API keys (the {cfg} tag, no TTL); the per-verification
# lookups in the verification's partition, so they land in its slot and spread like it.


def v2_service(sid: str) -> str:
    return f"{PREFIX}{CONFIG_TAG}:svc:{sid}"


def v2_services_of(account_sid: str) -> str:
    """A sorted set of an account's service sids by creation time (ms)."""
    return f"{PREFIX}{CONFIG_TAG}:svcs:{account_sid}"


def v2_attempt(attempt_sid: str, partitions: int) -> str:
    """``<verification id>:<send number>:<service sid>`` of an attempt sid (``VL`` + partition byte…)."""
    return f"{tag(int(attempt_sid[2:4], 16) % partitions)}vl:{attempt_sid}"


def v2_latest(service_sid: str, e164: str, partitions: int) -> str:
    """The latest verification of a service to a number."""
    return f"{tag(partition_of_number(e164, partitions))}v2n:{service_sid}:{e164}"
