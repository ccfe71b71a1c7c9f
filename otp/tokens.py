"""Signed approval tokens: proof, for the caller's own backend, that a verification was approved.

An ``itsdangerous`` timed serializer with the secret-key list (newest signs, all verify: rotation),
one salt for this purpose, and ``max_age`` always enforced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from otp.errors import InvalidInput

SALT = "otp.approval-token"


@dataclass(frozen=True)
class Approval:
    verification_id: str
    number_hash: str
    approved_at: int  # unix seconds


def _serializer(secret_keys: Sequence[str]) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(list(reversed(secret_keys)), salt=SALT)


def issue(approval: Approval, secret_keys: Sequence[str]) -> str:
    payload = {"vid": approval.verification_id, "nh": approval.number_hash, "at": approval.approved_at}
    return str(_serializer(secret_keys).dumps(payload))


def verify(token: str, max_age: float, secret_keys: Sequence[str] | None = None) -> Approval:
    """Check a token's signature and age; raises `InvalidInput` (field ``token``) when it fails.

    Without ``secret_keys`` the keys come from ``OTP_SECRET_KEY``, for callers embedding otp.
    """
    if secret_keys is None:
        from otp.settings import Settings  # the one reader of settings outside app and cli

        secret_keys = Settings.from_env().secret_keys
    if not secret_keys:
        raise ValueError("no secret keys: set OTP_SECRET_KEY or pass secret_keys")
    try:
        payload: Any = _serializer(secret_keys).loads(token, max_age=int(max_age))
    except SignatureExpired:
        raise InvalidInput("has expired", field="token", code="token_expired") from None
    except BadSignature:
        raise InvalidInput("is not a valid approval token", field="token", code="token_invalid") from None
    return Approval(verification_id=payload["vid"], number_hash=payload["nh"], approved_at=int(payload["at"]))
