"""Seals a code for the outbox.  The SMS job must survive a Redis restart until it is sent, so the
code has to be recoverable for those few seconds; it is kept as AES-GCM ciphertext under a key
derived from ``OTP_SECRET_KEY`` (never in Redis) and deleted with the job once Twilio has it."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from otp.core.keyring import Keyring

PURPOSE = "outbox-seal"
AAD = b"otp.outbox.code"


def seal(keyring: Keyring, code: str, *, aad: bytes = AAD) -> str:
    """``aad`` names what is sealed (a code, a webhook's signing secret): one can't be passed off
    as the other."""
    nonce = os.urandom(12)
    box = AESGCM(keyring.current(PURPOSE)).encrypt(nonce, code.encode(), aad)
    return f"{keyring.current_id}.{base64.urlsafe_b64encode(nonce + box).decode()}"


def unseal(keyring: Keyring, sealed: str, *, aad: bytes = AAD) -> str | None:
    kid, _, body = sealed.partition(".")
    key = keyring.by_id(kid, PURPOSE)
    if key is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(body)
        return AESGCM(key).decrypt(raw[:12], raw[12:], aad).decode()
    except (InvalidTag, ValueError):
        return None
