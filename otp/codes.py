"""One-time codes: generated with `secrets`, stored only as argon2id(pepper ‖ code), compared only
through argon2 verification, and always off the event loop."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from starlette.concurrency import run_in_threadpool

from otp.keyring import Keyring

PEPPER = "code-pepper"


def generate(length: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))


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
        """``<key id>$<argon2 encoded hash>``: the key id says which secret's pepper was used."""
        return f"{self.keyring.current_id}${self._hasher.hash(self._peppered(self.keyring.current(PEPPER), code))}"

    def matches_now(self, stored: str, code: str) -> bool:
        kid, _, encoded = stored.partition("$")
        pepper = self.keyring.by_id(kid, PEPPER)
        if pepper is None:  # made with a secret that has since been retired
            return False
        try:
            return self._hasher.verify(encoded, self._peppered(pepper, code))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

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
