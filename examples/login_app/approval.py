"""The approval token otp answers a right code with, verified offline: an EdDSA JWT checked against
otp's public keys (its JWKS), our API key's id as the audience and otp's issuer. No shared secret;
otp is asked nothing but its public keys, fetched once and cached (again on an unknown ``kid``,
which is how otp's key rotation reaches us)."""

from __future__ import annotations

from typing import Any

import jwt
from starlette.concurrency import run_in_threadpool

ALGORITHMS = ["EdDSA"]  # pinned: the token's own header never chooses the algorithm
REQUIRED = ["iss", "aud", "sub", "vid", "iat", "exp", "jti"]


class NotApproved(Exception):
    """The token does not prove this verification was approved (``reason`` says why)."""


class Approvals:
    def __init__(self, jwks_url: str, *, audience: str, issuer: str) -> None:
        self.jwks_url = jwks_url
        self.audience = audience
        self.issuer = issuer
        self._keys = jwt.PyJWKClient(jwks_url, lifespan=300, timeout=5)

    async def verify(self, token: str, verification_id: str) -> dict[str, Any]:
        """The token's claims when it is otp's approval of ``verification_id`` for us. Raises
        NotApproved, or jwt.PyJWKClientConnectionError when otp's JWKS can't be fetched."""
        try:
            # PyJWKClient fetches with urllib: in a thread, off the event loop (cached after the first).
            key = await run_in_threadpool(self._keys.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError:
            raise
        except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
            raise NotApproved(f"no key for it: {exc}") from exc
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED},
            )
        except jwt.InvalidTokenError as exc:
            raise NotApproved(str(exc)) from exc
        if claims["vid"] != verification_id:
            raise NotApproved("it approves another verification")
        return claims
