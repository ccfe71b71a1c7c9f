"""Approval tokens: proof, for the caller's own backend, that a verification was approved.

A token is a signed JWT (RFC 7519), EdDSA over Ed25519 (RFC 8037), so any JWT library verifies it
offline with otp's public keys (`jwks`, served at ``/.well-known/jwks.json``) and no shared secret.
Claims: ``iss`` (the service: ``OTP_PUBLIC_URL``, else ``otp``), ``aud`` (the API key id whose check
earned it), ``sub`` (the keyring's hash of the number, never the number), ``vid`` (the
verification), ``iat`` (the approval's time), ``exp`` (``iat`` + ``OTP_TOKEN_MAX_AGE``) and ``jti``;
the header's ``kid`` is the signing key's RFC 7638 thumbprint.

Keys: one Ed25519 pair per entry of the secret-key list (`otp.core.keyring.signing_key`); the newest
signs, all verify and are published, so rotating ``OTP_SECRET_KEY`` rotates them. Only ``EdDSA``
is accepted: a token claiming ``none`` or ``HS256`` (keyed with the public key) is invalid.

The same approval always gets the same token: Ed25519 signatures are deterministic and ``jti`` is
derived from the approval (its verification id is random and approves once), so the approval
replay (the same right code again) answers with the token the client lost. Time and keys are given,
never read: a token is signed at its approval's time and checked against the caller's ``now``.

Single use (`Tokens.redeem` with ``consume``) is a mark in Redis named by the verification id, set
once (SET NX) for as long as the token could still verify. One verification, one approval, one
``jti``: the mark is exactly as strict as one per ``jti``, and lives in the verification's partition.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from otp.core.keyring import signing_key
from otp.errors import InvalidInput
from otp.storage.keys import VERIFICATION_ID

ALGORITHM = "EdDSA"
# The issuer when OTP_PUBLIC_URL is unset (development): the shell passes the URL otherwise.
DEFAULT_ISSUER = "otp"
# OTP_TOKEN_MAX_AGE's default, for `issue` called without a lifetime (the Verifier passes the setting).
DEFAULT_LIFETIME = 300.0
# A token signed up to this many seconds "in the future" still verifies: API processes' clocks differ.
CLOCK_SKEW = 5.0
# What every token of ours carries; a token missing one is not ours.
CLAIMS = ("iss", "sub", "vid", "iat", "exp", "jti")


@dataclass(frozen=True)
class Approval:
    verification_id: str
    number_hash: str
    approved_at: int  # unix seconds


class UseMarks(Protocol):
    """Where single use is kept (`otp.storage.store.Store`)."""

    async def consume_token(self, verification_id: str, *, ttl_ms: int, peek: bool = False) -> bool: ...


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(public: Ed25519PublicKey) -> dict[str, str]:
    """The JWK (RFC 8037) of a token key, with its ``kid``: the RFC 7638 thumbprint (SHA-256 of the
    required members in lexicographic order), so any party can recompute it from the key."""
    x = _b64(public.public_bytes(Encoding.Raw, PublicFormat.Raw))
    members = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    kid = _b64(hashlib.sha256(members.encode()).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": ALGORITHM, "use": "sig"}


def _jti(approval: Approval) -> str:
    # Unique because the verification id is (128 random bits) and a verification approves once;
    # derived rather than drawn so the approval replay gets the same token.
    seed = f"otp/token-jti:{approval.verification_id}:{approval.approved_at}".encode()
    return _b64(hashlib.sha256(seed).digest()[:16])


def _invalid() -> InvalidInput:
    return InvalidInput("is not a valid approval token", field="token", code="token_invalid")


def _approval(claims: Mapping[str, Any]) -> tuple[Approval, int]:
    """The approval a decoded token names, and its ``exp``; `_invalid` for a claim of the wrong type."""
    vid, sub, iat, exp = claims["vid"], claims["sub"], claims["iat"], claims["exp"]
    if not (isinstance(vid, str) and isinstance(sub, str)):
        raise _invalid()
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in (iat, exp)):
        raise _invalid()
    return Approval(verification_id=vid, number_hash=sub, approved_at=iat), exp


@dataclass(frozen=True)
class Tokens:
    """A service's approval tokens: its secret keys (``OTP_SECRET_KEY``, newest first), its issuer
    (``iss``) and ``lifetime`` (``OTP_TOKEN_MAX_AGE``: each token's ``exp``, and the largest
    ``max_age`` a verify may ask for)."""

    secret_keys: tuple[str, ...] = field(repr=False)
    issuer: str = DEFAULT_ISSUER
    lifetime: float = DEFAULT_LIFETIME
    # kid → public key, newest first; and the JWK of each.
    _public: dict[str, Ed25519PublicKey] = field(init=False, repr=False, compare=False)
    _jwks: tuple[dict[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.secret_keys:
            raise ValueError("no secret keys: pass secret_keys (OTP_SECRET_KEY)")
        publics = [signing_key(secret).public_key() for secret in self.secret_keys]
        jwks = tuple(public_jwk(public) for public in publics)
        object.__setattr__(self, "_public", {jwk["kid"]: public for jwk, public in zip(jwks, publics, strict=True)})
        object.__setattr__(self, "_jwks", jwks)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK Set (RFC 7517) of every key a token of ours may be signed with: the document at
        ``/.well-known/jwks.json``. Public keys only."""
        return {"keys": [dict(jwk) for jwk in self._jwks]}

    def issue(self, approval: Approval, *, key_id: str | None = None) -> str:
        """A token for ``approval``, signed at ``approval.approved_at`` with the newest key; its
        ``aud`` is the API key ``key_id`` when given (the Verifier always gives the checking key's)."""
        claims: dict[str, Any] = {"iss": self.issuer, "sub": approval.number_hash}
        if key_id is not None:
            claims["aud"] = key_id
        claims |= {
            "vid": approval.verification_id,
            "iat": approval.approved_at,
            "exp": approval.approved_at + int(self.lifetime),
            "jti": _jti(approval),
        }
        kid = self._jwks[0]["kid"]
        return jwt.encode(claims, signing_key(self.secret_keys[0]), algorithm=ALGORITHM, headers={"kid": kid})

    def verify(self, token: str, *, max_age: float, now: float, key_id: str | None = None) -> Approval:
        """Check a token's signature (any of our keys, EdDSA only), issuer, audience and age; raises
        `InvalidInput` (field ``token``, code ``token_invalid`` or ``token_expired``) when it fails.

        ``key_id``: accept only a token earned by that API key (a token of another key is
        ``token_invalid``, whatever its age, so it tells nothing about the other tenant).
        ``now``: unix seconds, from the caller's clock. Single use needs Redis: see `redeem`.
        """
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            public = self._public.get(kid) if isinstance(kid, str) else None
            if public is None:
                raise _invalid()  # not one of our keys (or a token from before the JWT format)
            claims = jwt.decode(
                token,
                public,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=key_id,
                # Time is ours to check, against the injected clock; the audience only for a tenant.
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_aud": key_id is not None,
                    "require": [*CLAIMS, "aud"] if key_id is not None else list(CLAIMS),
                },
            )
        except jwt.PyJWTError:
            raise _invalid() from None
        approval, expires = _approval(claims)
        age = now - approval.approved_at
        if age < -CLOCK_SKEW:
            raise _invalid()
        if age > max_age or now > expires:
            raise InvalidInput("has expired", field="token", code="token_expired")
        return approval

    async def redeem(
        self,
        token: str,
        *,
        marks: UseMarks,
        max_age: float,
        now: float,
        key_id: str | None = None,
        consume: bool = False,
    ) -> Approval:
        """`verify`, and then single use: a token already consumed is ``token_used``; with
        ``consume`` this call marks it used, and of concurrent callers exactly one succeeds.

        The mark lives until the token is too old even for ``lifetime`` (the largest ``max_age``
        any caller may ask for), so no verify can accept it once the mark is gone.
        """
        approval = self.verify(token, max_age=max_age, now=now, key_id=key_id)
        if not VERIFICATION_ID.fullmatch(approval.verification_id):
            raise _invalid()  # not one of ours: the mark is kept in the verification's partition
        ttl_ms = max(1, int((approval.approved_at + self.lifetime - now) * 1000))
        if not await marks.consume_token(approval.verification_id, ttl_ms=ttl_ms, peek=not consume):
            raise InvalidInput("has already been used", field="token", code="token_used")
        return approval


def issue(
    approval: Approval,
    secret_keys: Sequence[str],
    *,
    key_id: str | None = None,
    issuer: str = DEFAULT_ISSUER,
    lifetime: float = DEFAULT_LIFETIME,
) -> str:
    """`Tokens.issue` with the given keys (newest first)."""
    return Tokens(tuple(secret_keys), issuer, lifetime).issue(approval, key_id=key_id)


def verify(
    token: str,
    *,
    max_age: float,
    secret_keys: Sequence[str],
    now: float,
    key_id: str | None = None,
    issuer: str = DEFAULT_ISSUER,
) -> Approval:
    """`Tokens.verify` with the secret keys (``OTP_SECRET_KEY``, newest first), for an embedder
    holding them; without them, any JWT library verifies a token against the JWKS."""
    return Tokens(tuple(secret_keys), issuer).verify(token, max_age=max_age, now=now, key_id=key_id)
