"""Webhooks: where a tenant wants otp's events posted, and the rules around them.

A tenant is a /v2 service (up to `MAX_PER_SERVICE` webhooks, Twilio's Webhook resource) or a /v1
API key (one webhook, `V1_SID`). Each webhook is signed the way Twilio signs its requests
(``X-Twilio-Signature``) with the secret of the credentials that created it: the /v2 account's
auth token, or the /v1 key's secret. otp keeps only a digest of those, so the secret is taken from
the very request that creates (or updates) the webhook and kept sealed (AES-GCM under
``OTP_SECRET_KEY``, otp.core.sealing) beside it, never in plaintext. Before each send the delivery
loop checks the unsealed secret is still the key's: a revoked or replaced key's webhooks stop.

Events come from the Lua scripts that commit the change (lib.lua's ``emit_event``) for
verifications whose owner had a webhook when they started (`subscribed`); their vocabulary is
otp.audit_fields.WEBHOOK_EVENTS. `payload` is what a receiver gets (docs/webhooks.md).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from otp import delivery_errors
from otp.audit_fields import WEBHOOK_ANY
from otp.audit_fields import WEBHOOK_EVENT_TYPES as EVENT_TYPES
from otp.core import apikeys, sealing
from otp.core.keyring import Keyring
from otp.errors import InvalidInput
from otp.model import QueuedEvent
from otp.storage import webhooks as records
from otp.storage.store import Read, Store

# Twilio documents no cap; a handful keeps each event's fan-out (and its retries) small.
MAX_PER_SERVICE = 5
V1_SID = "default"  # a /v1 key's one webhook
STATUSES = ("enabled", "disabled")
VERSIONS = ("v1", "v2")  # kept and echoed (Twilio's payload versions of Verify Push); one payload here
METHOD = "POST"
FRIENDLY_NAME_MAX = 64
SECRET_AAD = b"otp.webhook.secret"


@dataclass(frozen=True)
class Webhook:
    sid: str
    owner: str  # the service sid (/v2) or key id (/v1) whose verifications it reports
    key_id: str  # whose secret signs it: the /v2 account sid, or the /v1 key id
    friendly_name: str
    event_types: tuple[str, ...]
    status: str
    version: str
    url: str
    created_ms: int
    updated_ms: int
    sealed_secret: str

    def wants(self, event_type: str) -> bool:
        return self.status == "enabled" and (WEBHOOK_ANY in self.event_types or event_type in self.event_types)

    def record(self) -> dict[str, Any]:
        return {
            "key": self.key_id,
            "name": self.friendly_name,
            "events": list(self.event_types),
            "status": self.status,
            "version": self.version,
            "url": self.url,
            "created": self.created_ms,
            "updated": self.updated_ms,
            "secret": self.sealed_secret,
        }


def _from_record(sid: str, owner: str, r: dict[str, Any]) -> Webhook:
    return Webhook(
        sid=sid,
        owner=owner,
        key_id=str(r["key"]),
        friendly_name=str(r.get("name", "")),
        event_types=tuple(r.get("events", ())),
        status=str(r.get("status", "enabled")),
        version=str(r.get("version", "v2")),
        url=str(r["url"]),
        created_ms=int(r["created"]),
        updated_ms=int(r["updated"]),
        sealed_secret=str(r["secret"]),
    )


def new_sid() -> str:
    return "YW" + secrets.token_hex(16)


def event_types(values: Sequence[str], field: str) -> tuple[str, ...]:
    """EventTypes, each one of otp's events or ``*``; at least one, duplicates dropped."""
    cleaned = [v.strip() for v in values]
    if not cleaned or not all(cleaned):
        raise InvalidInput("is required: one or more event types", field=field, code="missing_field")
    for value in cleaned:
        if value not in EVENT_TYPES:
            raise InvalidInput(f"{value[:64]!r} is not one of {', '.join(EVENT_TYPES)}", field=field)
    return tuple(dict.fromkeys(cleaned))


def friendly_name(raw: str, field: str) -> str:
    name = raw.strip()
    if not name or len(name) > FRIENDLY_NAME_MAX or not name.isprintable():
        raise InvalidInput(f"must be 1 to {FRIENDLY_NAME_MAX} printable characters", field=field)
    return name


def choice(raw: str | None, field: str, choices: Sequence[str], default: str) -> str:
    if raw is None:
        return default
    if raw.strip() not in choices:
        raise InvalidInput(f"must be one of {', '.join(choices)}", field=field)
    return raw.strip()


def seal_secret(keyring: Keyring, secret: str) -> str:
    return sealing.seal(keyring, secret, aad=SECRET_AAD)


async def save(store: Store, webhook: Webhook, *, cap: int = MAX_PER_SERVICE) -> None:
    if not await records.put(store, webhook.owner, webhook.sid, webhook.record(), cap=cap):
        raise InvalidInput(f"a service has at most {cap} webhooks: delete one first", field="WebhookUrl")


async def list_for(store: Store, owner: str) -> list[Webhook]:
    found = [_from_record(sid, owner, r) for sid, r in (await records.all_of(store, owner)).items()]
    return sorted(found, key=lambda w: (w.created_ms, w.sid))


async def get(store: Store, owner: str, sid: str) -> Webhook | None:
    return next((w for w in await list_for(store, owner) if w.sid == sid), None)


async def delete(store: Store, owner: str, sid: str) -> bool:
    return await records.remove(store, owner, sid)


async def delete_all(store: Store, owner: str) -> None:
    """With its service or key: a deleted tenant's queued events find no webhook and are dropped."""
    await records.remove_all(store, owner)


async def subscribed(store: Store, owner: str) -> bool:
    """Whether a verification the owner starts now should record its events."""
    return await records.any_for(store, owner)


def subscribed_read(owner: str) -> Read:
    """`subscribed` as a read for the start's admission round trip; its reply is truthy when so."""
    return records.any_read(owner)


def updated(webhook: Webhook, now_ms: int, **changes: Any) -> Webhook:
    return replace(webhook, updated_ms=now_ms, **changes)


async def targets(store: Store, keyring: Keyring, event: QueuedEvent) -> list[tuple[Webhook, str]]:
    """The owner's enabled webhooks that want the event, each with its signing secret; a webhook
    whose key was revoked or replaced (or whose secret no key of the ring unseals) is left out."""
    found = []
    for webhook in await list_for(store, event.owner):
        if not webhook.wants(event.event_type):
            continue
        token = sealing.unseal(keyring, webhook.sealed_secret, aad=SECRET_AAD)
        if token is not None and await apikeys.still_valid(store, webhook.key_id, _secret_of(token)):
            found.append((webhook, token))
    return found


def _secret_of(token: str) -> str:
    """The key secret inside a signing token: a /v2 auth token is one, a /v1 token is the whole
    API key (``otpk_<id>_<secret>``)."""
    pair = apikeys.split(token)
    return pair[1] if pair else token


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def payload(event: QueuedEvent, webhook: Webhook, *, attempt_sid: str = "") -> dict[str, str]:
    """The form fields a receiver gets (docs/webhooks.md). ``To`` is resolved from the verification
    at send time: the receiver is the tenant that sent the code, as at Twilio."""
    v2 = webhook.owner.startswith("VA")
    fields = {
        "EventSid": event.event_sid,
        "EventType": event.event_type,
        "Timestamp": _iso(event.at_ms),
        "VerificationSid": event.verification_id,
        "To": event.to,
        "Channel": event.channel or "sms",
        "Status": event.status,
        "WebhookSid": webhook.sid,
    }
    if v2:
        fields.update(AccountSid=webhook.key_id, ServiceSid=webhook.owner)
    else:
        fields["KeyId"] = webhook.owner
    if event.event_type.startswith("message."):
        fields.update(
            SendNumber=str(event.send_number),
            DeliveryStatus=event.event_type.split(".", 1)[1],
            ErrorCode=event.error_code,
        )
        # What the code means and what to do (otp's catalogue), so a receiver can act on it.
        explained = delivery_errors.lookup(event.error_code)
        if explained is not None:
            fields.update(
                ErrorTitle=explained.title,
                ErrorMeaning=explained.meaning,
                ErrorRetryHelps="true" if explained.retry else "false",
                ErrorAction=explained.action,
                ErrorMoreInfo=explained.more_info,
            )
        if attempt_sid:
            fields["AttemptSid"] = attempt_sid
    if event.tags:
        fields["Tags"] = json.dumps(json.loads(event.tags), separators=(",", ":"), ensure_ascii=False)
    return fields
