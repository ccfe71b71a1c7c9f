"""Brute force: verifications locked by their check attempts, and numbers locked by failed checks
(OTP_FAILED_CHECKS_PER_HOUR per API key: the check-failure lock of attempt.lua), with the API
keys and end-user IPs that checked them, from the partitions' lock index (otp.storage.locks).

A number lock is kept by the verification whose check it refused, not by the number: the rows
are grouped per number here, through the verification's record and the keyed number hash, while
the record is kept (OTP_RETENTION); after that each verification shows alone, its number unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from otp.core.keyring import Keyring
from otp.core.phone import mask_in_record, parse_e164
from otp.storage import locks
from otp.storage.store import Store


@dataclass
class Lock:
    kind: str  # "verification" (locked by its attempts) or "number" (locked by failed checks)
    key: str  # the API key or /v2 service the verification belongs to
    to: str  # masked; "" once the verification is past its retention
    country: str
    first_ms: int
    last_ms: int
    count: int  # attempts that locked a verification, or refused checks of a locked number
    until_ms: int | None = None  # a number's lock: when its failed checks age out
    verifications: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # the keys that checked
    ips: list[str] = field(default_factory=list)

    def locked_now(self, now_ms: int) -> bool:
        return self.until_ms is None or self.until_ms > now_ms


def _listed(text: object) -> list[str]:
    return [part for part in str(text or "").split(",") if part]


def _merge(into: list[str], more: list[str]) -> None:
    into.extend(item for item in more if item not in into)


async def locks_since(store: Store, keyring: Keyring, since_ms: int) -> tuple[list[Lock], list[Lock]]:
    """(verifications locked by attempts, numbers locked by failed checks) last seen since
    ``since_ms``, the most recent first."""
    verifications: list[Lock] = []
    numbers: dict[tuple[str, str], Lock] = {}
    for found in await locks.recent(store, since_ms):
        d, record = found.details, found.verification
        to = record.get("to", "")
        phone = parse_e164(to) if to else None
        masked, country = (mask_in_record(to), phone.country) if phone else ("", "")
        owner = str(d.get("key") or record.get("key", ""))
        lock = Lock(
            "verification" if found.kind == "v" else "number",
            owner,
            masked,
            country,
            int(d.get("first", 0)),
            int(d.get("last", 0)),
            int(d.get("attempts", 0) if found.kind == "v" else d.get("n", 0)),
            None if found.kind == "v" else int(d.get("until", 0)),
            [found.vid],
            _listed(d.get("keys")),
            _listed(d.get("ips")),
        )
        if found.kind == "v":
            verifications.append(lock)
            continue
        group = (owner, keyring.number_hash(to) if to else found.vid)
        same = numbers.get(group)
        if same is None:
            numbers[group] = lock
            continue
        same.first_ms, same.last_ms = min(same.first_ms, lock.first_ms), max(same.last_ms, lock.last_ms)
        same.count += lock.count
        same.until_ms = max(same.until_ms or 0, lock.until_ms or 0)
        _merge(same.verifications, lock.verifications)
        _merge(same.keys, lock.keys)
        _merge(same.ips, lock.ips)

    def newest(rows: list[Lock]) -> list[Lock]:
        return sorted(rows, key=lambda lock: -lock.last_ms)

    return newest(verifications), newest(list(numbers.values()))
