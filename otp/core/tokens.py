"""Signed approval tokens: proof, for the caller's own backend, that a verification was approved.

An ``itsdangerous`` timed serializer with the secret-key list (newest signs, all verify: rotation),
one salt for this purpose, and ``max_age`` always enforced. Time and keys are given, never read: a
token is signed at its approval's time and checked against the caller's ``now`` (the injected
clock), with the secret keys the caller has (the shell's, from ``OTP_SECRET_KEY``).

A token is bound to the API key whose check earned it: the payload carries a keyed hash of the key
id (``k``), not the id, so a token passing through a browser names no tenant. `verify` with
``key_id`` accepts only that key's tokens; without it (an admin, or an embedder holding
``OTP_SECRET_KEY``) any key's.

Single use (`redeem` with ``consume``) is a mark in Redis named by the verification id (one
approval, one token), set once (SET NX) for as long as the token could still verify.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from otp.core.keyring import derive
from otp.errors import InvalidInput
from otp.storage.keys import VERIFICATION_ID

SALT = "otp.approval-token"
# A token signed up to this many seconds "in the future" still verifies: API processes' clocks differ.
CLOCK_SKEW = 5.0


@dataclass(frozen=True)
class Approval:
    verification_id: str
    number_hash: str
    approved_at: int  # unix seconds


class UseMarks(Protocol):
    """Where single use is kept (`otp.storage.store.Store`)."""

    async def consume_token(self, verification_id: str, *, ttl_ms: int, peek: bool = False) -> bool: ...


class _Signer(TimestampSigner):
    """itsdangerous' timestamp signer, at a given time instead of the system clock's."""

    def __init__(self, *args: Any, timestamp: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timestamp = timestamp

    def get_timestamp(self) -> int:
        return self._timestamp


def _serializer(secret_keys: Sequence[str], timestamp: float) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        list(reversed(secret_keys)), salt=SALT, signer=_Signer, signer_kwargs={"timestamp": int(timestamp)}
    )


def _binding(secret: str, key_id: str) -> str:
    return hmac.new(derive(secret, "token-key"), key_id.encode(), hashlib.sha256).hexdigest()[:16]


def _invalid() -> InvalidInput:
    return InvalidInput("is not a valid approval token", field="token", code="token_invalid")


def issue(approval: Approval, secret_keys: Sequence[str], *, key_id: str | None = None) -> str:
    """A token for ``approval``, signed at ``approval.approved_at``; bound to the API key
    ``key_id`` when given (the Verifier always gives the checking key's)."""
    payload = {"vid": approval.verification_id, "nh": approval.number_hash, "at": approval.approved_at}
    if key_id is not None:
        payload["k"] = _binding(secret_keys[0], key_id)
    return str(_serializer(secret_keys, approval.approved_at).dumps(payload))


def verify(
    token: str,
    *,
    max_age: float,
    secret_keys: Sequence[str],
    now: float,
    key_id: str | None = None,
) -> Approval:
    """Check a token's signature, binding and age; raises `InvalidInput` (field ``token``, code
    ``token_invalid`` or ``token_expired``) when it fails.

    ``secret_keys``: newest first, as ``Settings.secret_keys`` has them (``OTP_SECRET_KEY``).
    ``key_id``: accept only a token earned by that API key (a token of another key is
    ``token_invalid``, whatever its age, so it tells nothing about the other tenant).
    ``now``: unix seconds, from the caller's clock. Single use needs Redis: see `redeem`.
    """
    return _verify(token, max_age, secret_keys, key_id=key_id, now=now)[0]


async def redeem(
    token: str,
    *,
    marks: UseMarks,
    secret_keys: Sequence[str],
    max_age: float,
    lifetime: float,
    now: float,
    key_id: str | None = None,
    consume: bool = False,
) -> Approval:
    """`verify`, and then single use: a token already consumed is ``token_used``; with
    ``consume`` this call marks it used, and of concurrent callers exactly one succeeds.

    ``lifetime`` is the largest ``max_age`` any caller may ask for (``OTP_TOKEN_MAX_AGE``): the mark
    lives until the token is too old even for that, so no verify can accept it once the mark is gone.
    """
    approval, signed_at = _verify(token, max_age, secret_keys, key_id=key_id, now=now)
    if not VERIFICATION_ID.fullmatch(approval.verification_id):
        raise _invalid()  # not one of ours: the mark is kept in the verification's partition
    ttl_ms = max(1, int((signed_at + lifetime - now) * 1000))
    if not await marks.consume_token(approval.verification_id, ttl_ms=ttl_ms, peek=not consume):
        raise InvalidInput("has already been used", field="token", code="token_used")
    return approval


def _verify(
    token: str, max_age: float, secret_keys: Sequence[str], *, key_id: str | None, now: float
) -> tuple[Approval, float]:
    if not secret_keys:
        raise ValueError("no secret keys: pass secret_keys (OTP_SECRET_KEY)")
    try:
        payload, signed = _serializer(secret_keys, now).loads(token, return_timestamp=True)
        approval = Approval(verification_id=payload["vid"], number_hash=payload["nh"], approved_at=int(payload["at"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        raise _invalid() from None
    if key_id is not None:
        claimed = payload.get("k")
        # Every secret of the list: a token signed before a rotation keeps its binding.
        if not isinstance(claimed, str) or not any(
            hmac.compare_digest(claimed.encode(), _binding(secret, key_id).encode()) for secret in secret_keys
        ):
            raise _invalid()
    signed_at = float(signed.timestamp())
    age = now - signed_at
    if age < -CLOCK_SKEW:
        raise _invalid()
    if age > max_age:
        raise InvalidInput("has expired", field="token", code="token_expired")
    return approval, signed_at
