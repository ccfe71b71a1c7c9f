"""One-time codes: generated with `secrets`, stored only as argon2id(pepper ‖ code), compared only
through argon2 verification, and always off the event loop."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import hash_secret_raw

from otp.core.keyring import Keyring

PEPPER = "code-pepper"
SALT_KEY = "code-salt"
SALT_LEN = 16
HASH_LEN = 16


def generate(length: int) -> str:
    # One draw for the whole code: uniform over 10**length, like a digit at a time but far cheaper.
    return f"{secrets.randbelow(10**length):0{length}d}"


@dataclass(frozen=True)
class Argon2Params:
    """argon2id's cost (the shell's OTP_ARGON2_* settings)."""

    time_cost: int
    memory_kib: int
    parallelism: int


class CodeHasher:
    def __init__(self, keyring: Keyring, params: Argon2Params) -> None:
        self.keyring = keyring
        self.params = params
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=16,
            salt_len=16,
            type=Type.ID,
        )
        self._typical: float | None = None  # seconds one argon2 run takes here, lately

    def _peppered(self, pepper: bytes, code: str) -> bytes:
        return pepper + code.encode()

    def salt_for(self, context: str, kid: str | None = None) -> bytes | None:
        """The salt of every code of one API key's verifications of one number (``context`` names
        both): resends share it, so a check runs argon2 once however many codes are live. Keyed
        (by the secret ``kid`` names, the current one by default), so it can't be predicted without
        the secret; a pepper makes precomputation useless anyway. None: a retired secret."""
        key = self.keyring.current(SALT_KEY) if kid is None else self.keyring.by_id(kid, SALT_KEY)
        if key is None:
            return None
        return hmac.new(key, context.encode(), hashlib.sha256).digest()[:SALT_LEN]

    def hash_now(self, code: str, context: str | None = None) -> str:
        """``<key id>$<t>,<m>,<p>$<hash, base64>``: the key id says which secret's pepper (and
        salt key) was used.  This compact form of argon2's encoding fits Redis's 64-byte compact
        hash values. With ``context`` the salt is derived from it (`salt_for`) and not stored: a
        check knows the context, and a pending verification keeps 22 bytes less per code. Without
        it the salt is random and stored before the hash (``<salt‖hash, base64>``)."""
        p = self.params
        derived = self.salt_for(context) if context is not None else None
        salt = derived or secrets.token_bytes(SALT_LEN)
        digest = self._raw(self.keyring.current(PEPPER), code, salt, p.time_cost, p.memory_kib, p.parallelism)
        packed = base64.b64encode(digest if derived else salt + digest).decode().rstrip("=")
        return f"{self.keyring.current_id}${p.time_cost},{p.memory_kib},{p.parallelism}${packed}"

    def _raw(self, pepper: bytes, code: str, salt: bytes, time_cost: int, memory_kib: int, parallelism: int) -> bytes:
        started = time.perf_counter()  # a duration: what the decoy wait imitates
        digest = hash_secret_raw(
            self._peppered(pepper, code), salt, time_cost, memory_kib, parallelism, HASH_LEN, Type.ID
        )
        self._typical = _ewma(self._typical, time.perf_counter() - started)
        return digest

    def matches_now(self, stored: str, code: str, context: str | None = None) -> bool:
        return self.match_index([stored], code, context) is not None

    def match_index(self, stored: Sequence[str], code: str, context: str | None = None) -> int | None:
        """The index of the first stored hash ``code`` matches, or None. Hashes that share pepper,
        parameters and salt (every code of one verification) cost one argon2 run between them, and
        every digest is compared, so the cost doesn't depend on which one matched. ``context``: the
        one the codes were hashed with, for hashes that don't store their salt."""
        runs: dict[tuple[str, str, bytes], bytes | None] = {}
        found: int | None = None
        for index, entry in enumerate(stored):
            parsed = self._parse(entry, context)
            if parsed is None:
                if self._legacy_matches(entry, code) and found is None:
                    found = index
                continue
            group, expected = parsed
            if group not in runs:
                runs[group] = self._digest(group, code)
            actual = runs[group]
            if actual is not None and hmac.compare_digest(actual, expected) and found is None:
                found = index
        return found

    def _parse(self, stored: str, context: str | None) -> tuple[tuple[str, str, bytes], bytes] | None:
        kid, _, rest = stored.partition("$")
        if rest.startswith("$argon2"):
            return None
        params, _, packed = rest.partition("$")
        try:
            blob = base64.b64decode(packed + "=" * (-len(packed) % 4))
        except ValueError:
            blob = b""
        if len(blob) == HASH_LEN:  # the salt is the context's; without one nothing matches
            salt = self.salt_for(context, kid) if context is not None else None
            return (kid, params, salt or b""), blob
        return (kid, params, blob[:SALT_LEN]), blob[SALT_LEN:]

    def _digest(self, group: tuple[str, str, bytes], code: str) -> bytes | None:
        kid, params, salt = group
        pepper = self.keyring.by_id(kid, PEPPER)
        if pepper is None or len(salt) != SALT_LEN:  # a retired secret, or a damaged entry
            return None
        try:
            time_cost, memory_kib, parallelism = (int(x) for x in params.split(","))
        except ValueError:
            return None
        return self._raw(pepper, code, salt, time_cost, memory_kib, parallelism)

    def _legacy_matches(self, stored: str, code: str) -> bool:
        """argon2's own encoding, as stored by earlier versions."""
        kid, _, rest = stored.partition("$")
        pepper = self.keyring.by_id(kid, PEPPER)
        if pepper is None:
            return False
        try:
            return self._hasher.verify(rest, self._peppered(pepper, code))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def hash(self, code: str, context: str | None = None) -> str:
        return await asyncio.to_thread(self.hash_now, code, context)

    async def decoy(self) -> None:
        """Take as long as a comparison would, for answers that have nothing to compare (an unknown
        id, a locked or finished verification), so timing doesn't tell them apart. A wait, not a
        hash: a flood of checks for unknown ids then costs no CPU. Until this process has timed a
        real run, it runs one."""
        if self._typical is None:
            await asyncio.to_thread(self.hash_now, secrets.token_hex(8))
            return
        await asyncio.sleep(self._typical)

    async def first_match(self, stored: list[str], code: str, context: str | None = None) -> int | None:
        """The index of the stored hash ``code`` matches (see ``match_index``), off the event loop."""
        return await asyncio.to_thread(self.match_index, stored, code, context)


def _ewma(previous: float | None, sample: float) -> float:
    # Recent runs weigh most, so the decoy follows the machine's current load.
    return sample if previous is None else 0.9 * previous + 0.1 * sample
