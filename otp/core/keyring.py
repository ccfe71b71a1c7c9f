"""Purpose-bound subkeys derived from ``OTP_SECRET_KEY`` (a list, newest first, for rotation).

Each purpose gets its own HMAC-derived key, so a leak of one use (say, a log's number hashes)
says nothing about another (the code pepper).  Nothing derived here is ever written to Redis.
The one asymmetric key, the approval tokens' Ed25519 signing key (`signing_key`), is derived here
too, and only its public half ever leaves the process (the JWKS).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# HKDF's info label: the seed it yields is the token signing key of a secret and nothing else.
SIGNING_KEY_LABEL = b"otp/approval-token-signing-key/ed25519"


def derive(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), f"otp/{purpose}".encode(), hashlib.sha256).digest()


@functools.lru_cache(maxsize=16)
def signing_key(secret: str) -> Ed25519PrivateKey:
    """The Ed25519 key approval tokens are signed with under ``secret``: HKDF-SHA256 of the secret
    with a fixed label, as the 32-byte seed. One key pair per entry of ``OTP_SECRET_KEY``, so
    rotating the secrets rotates the token keys with no setting of their own; every process
    derives the same pair. Cached: the list is fixed for a process's life."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SIGNING_KEY_LABEL).derive(secret.encode())
    return Ed25519PrivateKey.from_private_bytes(seed)


def key_id(secret: str) -> str:
    """A short public fingerprint naming which secret made a hash, so rotation keeps old codes valid."""
    return derive(secret, "key-id").hex()[:8]


@dataclass(frozen=True)
class Keyring:
    secrets: tuple[str, ...]
    _by_id: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError("a keyring needs at least one secret key")
        object.__setattr__(self, "_by_id", {key_id(s): s for s in self.secrets})

    @property
    def current_id(self) -> str:
        return key_id(self.secrets[0])

    def current(self, purpose: str) -> bytes:
        return derive(self.secrets[0], purpose)

    def by_id(self, kid: str, purpose: str) -> bytes | None:
        secret = self._by_id.get(kid)
        return derive(secret, purpose) if secret is not None else None

    def all(self, purpose: str) -> list[bytes]:
        return [derive(s, purpose) for s in self.secrets]

    def number_hash(self, e164: str) -> str:
        """Keyed hash of a number, for correlating log lines and tokens without the number."""
        return self.value_hash("number-hash", e164)

    def prefix_hash(self, prefix: str) -> str:
        """Keyed hash of a destination prefix (the number without its last 4 digits): audit
        records carry it, so the log filters by prefix without spelling one beside the masked
        number's last digits."""
        return self.value_hash("prefix-hash", prefix)

    def value_hash(self, purpose: str, value: str) -> str:
        """Keyed hash of a value a tenant sent (a number, a RateLimits value), 64 bits in hex:
        what names it in Redis without spelling it. A new current secret changes it."""
        return hmac.new(self.current(purpose), value.encode(), hashlib.sha256).hexdigest()[:16]
