"""Hostile-client review of issue 17 (approval JWTs and JWKS, the typed client, /docs, the login app
example, the Incidents and Brute-force pages and their counters): each finding reproduced here
before it was fixed, and the attacks that held."""

from __future__ import annotations

import time

from conftest import Service, hash_fields

from otp import audit_fields
from otp.storage import keys as keyspace

MINUTE_MS, HOUR_MS = 60_000, 3_600_000


async def _fields(svc: Service, key: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in (await hash_fields(svc.redis, key)).items()}


async def test_refused_starts_from_fresh_ips_cannot_grow_the_refusal_tallies_without_bound(service: Service) -> None:
    """Refused starts are free for the client (they move no limit) and each named a new end-user IP
    (any of 2^128 IPv6 addresses): every one used to add a field to the partition's hourly refusal
    hash (kept 8 days) and its minute hash — Redis memory a client could grow at its request rate,
    and more for the Incidents page's reads to go through. The tallies by IP and prefix are capped
    per hash; refusals past the cap are still counted (by rule, and as untallied)."""
    svc = service
    to = "+15017122661"
    first = await svc.start(to, ip="2001:db8::1")
    assert first.status_code == 201
    assert (await svc.start(to, ip="2001:db8::2")).status_code == 201  # a resend, then the cooldown
    partition = int(first.json()["id"][2:4], 16) % 16
    now = int(svc.clock() * 1000)
    refused = keyspace.REFUSAL_TALLIES_PER_HOUR + 50
    started = time.monotonic()
    for n in range(refused):
        response = await svc.start(to, ip=f"2001:db8:{n:x}:1::{n:x}")
        assert response.status_code == 429, response.text
    print(f"{refused} refused starts in {time.monotonic() - started:.1f} s")
    hourly = await _fields(svc, keyspace.audit_refusal_counter_of_hour(partition, now // HOUR_MS))
    minute = await _fields(svc, keyspace.audit_minute_counter_of(partition, now // MINUTE_MS))
    by_ip = [f for f in hourly if f.startswith(audit_fields.REFUSED_FROM_IP)]
    assert len(by_ip) <= keyspace.REFUSAL_TALLIES_PER_HOUR, len(by_ip)
    assert len(hourly) <= keyspace.REFUSAL_TALLIES_PER_HOUR + 10, len(hourly)
    minute_ips = [f for f in minute if f.startswith(audit_fields.REFUSED_FROM_IP)]
    assert len(minute_ips) <= keyspace.REFUSAL_TALLIES_PER_MINUTE, len(minute_ips)
    assert len(minute) <= keyspace.REFUSAL_TALLIES_PER_MINUTE + 40, len(minute)
    # Nothing is lost from the totals: every refusal counts by its rule, the excess as untallied.
    rules = sum(n for f, n in hourly.items() if f.startswith(audit_fields.REFUSED_BY_RULE))
    assert rules == refused
    assert sum(hourly[f] for f in by_ip) + hourly.get(audit_fields.REFUSED_UNTALLIED, 0) == refused
    assert hourly.get(audit_fields.REFUSED_FROM_IP + "2001:db8:0:1::") == 1  # the first ones are tallied
