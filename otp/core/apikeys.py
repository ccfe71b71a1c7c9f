"""API keys: ``otpk_<id>_<secret>``, stored as SHA-256 of the secret (the secret is 256 random
bits, so a slow hash would buy nothing), compared in constant time, and looked up on every request:
no process keeps a copy, so revoking a key (``otp keys revoke``) refuses it at once everywhere."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from otp.clock import SYSTEM
from otp.errors import Unauthorized
from otp.storage import accounts
from otp.storage import webhooks as webhook_records
from otp.storage.store import Store

PREFIX = "otpk"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    admin: bool


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split(token: str) -> tuple[str, str] | None:
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


async def create(store: Store, name: str, *, admin: bool = False, twilio: bool = False) -> tuple[ApiKey, str]:
    """A new key, and its token (shown once).  ``twilio`` makes the id an account SID (``AC`` + 32 hex)
    and the secret an auth token (32 hex), so Twilio's SDKs can use the pair as their credentials."""
    key_id = "AC" + secrets.token_hex(16) if twilio else secrets.token_hex(8)
    secret = secrets.token_hex(16 if twilio else 32)
    await accounts.put_key(store, accounts.KeyRecord(key_id, name, _digest(secret), admin), created_s=int(SYSTEM.now()))
    return ApiKey(key_id, name, admin), f"{PREFIX}_{key_id}_{secret}"


async def revoke(store: Store, key_id: str) -> bool:
    """Its webhook goes too (a /v1 key's; an account's service webhooks stop at their next send,
    when the revoked key no longer vouches for the secret that signs them)."""
    await webhook_records.remove_all(store, key_id)
    return await accounts.delete_key(store, key_id)


async def list_keys(store: Store) -> list[ApiKey]:
    return [_key(record) for record in await accounts.all_keys(store)]


async def count(store: Store) -> int:
    return await accounts.count_keys(store)


async def still_valid(store: Store, key_id: str, secret: str) -> bool:
    """Whether ``secret`` is still the secret of key ``key_id`` (not revoked, not replaced): what a
    webhook signed with it checks before each send."""
    record = await accounts.get_key(store, key_id)
    return record is not None and hmac.compare_digest(record.digest, _digest(secret))


def _key(record: accounts.KeyRecord) -> ApiKey:
    return ApiKey(record.key_id, record.name, record.admin)


def credentials_from_header(header: str | None) -> tuple[str, str]:
    """Bearer ``otpk_<id>_<secret>`` or Basic ``<id>:<secret>`` → (id, secret)."""
    if not header:
        raise Unauthorized("send Authorization: Bearer <api key>", field="Authorization")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        pair = split(value)
    elif scheme.lower() == "basic":
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, sep, password = "", "", ""
        pair = (user, password) if sep and user and password else None
    else:
        pair = None
    if pair is None:
        raise Unauthorized("malformed credentials; send Bearer otpk_<id>_<secret>", field="Authorization")
    return pair


class KeyChecker:
    """Resolves credentials to a key: one HGETALL per request, never a cached answer. A cache would
    keep a revoked key working in every other process for its lifetime (it was 10 s); the lookup
    is one O(1) round trip, the same as checking a revocation counter would cost."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def authenticate(self, header: str | None) -> ApiKey:
        key_id, secret = credentials_from_header(header)
        record = await accounts.get_key(self.store, key_id)
        digest = record.digest if record else ""
        # Compare even when the key is unknown, so timing doesn't tell which ids exist.
        good = hmac.compare_digest(digest or "0" * 64, _digest(secret)) and bool(digest)
        if not good or record is None:
            raise Unauthorized("unknown or revoked API key", field="Authorization")
        return _key(record)
