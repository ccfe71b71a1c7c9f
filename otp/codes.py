"""One-time codes: generated with `secrets`, stored only as argon2id(pepper ‖ code), compared only
through argon2 verification, and always off the event loop."""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import hash_secret_raw
from starlette.concurrency import run_in_threadpool

from otp.keyring import Keyring

PEPPER = "code-pepper"
SALT_LEN = 16
HASH_LEN = 16


def generate(length: int) -> str:
    # One draw for the whole code: uniform over 10**length, like a digit at a time but far cheaper.
    return f"{secrets.randbelow(10**length):0{length}d}"


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int = 2
    memory_kib: int = 19456
    parallelism: int = 1


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
        self._decoy: str | None = None

    def _peppered(self, pepper: bytes, code: str) -> bytes:
        return pepper + code.encode()

    def hash_now(self, code: str) -> str:
        """``<key id>$<t>,<m>,<p>$<salt‖hash, base64>``: the key id says which secret's pepper was
        used.  This compact form of argon2's encoding fits Redis's 64-byte compact hash values."""
        p = self.params
        salt = secrets.token_bytes(SALT_LEN)
        digest = self._raw(self.keyring.current(PEPPER), code, salt, p.time_cost, p.memory_kib, p.parallelism)
        packed = base64.b64encode(salt + digest).decode().rstrip("=")
        return f"{self.keyring.current_id}${p.time_cost},{p.memory_kib},{p.parallelism}${packed}"

    def _raw(self, pepper: bytes, code: str, salt: bytes, time_cost: int, memory_kib: int, parallelism: int) -> bytes:
        return hash_secret_raw(
            self._peppered(pepper, code), salt, time_cost, memory_kib, parallelism, HASH_LEN, Type.ID
        )

    def matches_now(self, stored: str, code: str) -> bool:
        kid, _, rest = stored.partition("$")
        pepper = self.keyring.by_id(kid, PEPPER)
        if pepper is None:  # made with a secret that has since been retired
            return False
        if rest.startswith("$argon2"):  # argon2's own encoding, as stored by earlier versions
            try:
                return self._hasher.verify(rest, self._peppered(pepper, code))
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
        try:
            params, _, packed = rest.partition("$")
            time_cost, memory_kib, parallelism = (int(x) for x in params.split(","))
            blob = base64.b64decode(packed + "=" * (-len(packed) % 4))
        except ValueError:
            return False
        salt, expected = blob[:SALT_LEN], blob[SALT_LEN:]
        actual = self._raw(pepper, code, salt, time_cost, memory_kib, parallelism)
        return hmac.compare_digest(actual, expected)

    async def hash(self, code: str) -> str:
        return await run_in_threadpool(self.hash_now, code)

    async def decoy(self, code: str) -> None:
        """One verification against a hash of nothing, with the same parameters as real ones."""
        if self._decoy is None:
            self._decoy = self.hash_now(secrets.token_hex(8))
        decoy = self._decoy
        await run_in_threadpool(self.matches_now, decoy, code)

    async def first_match(self, stored: list[str], code: str) -> bool:
        def search() -> bool:
            return any(self.matches_now(h, code) for h in stored)

        return await run_in_threadpool(search)
