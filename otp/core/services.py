"""Verify v2 *services*: the tenants of the Twilio-compatible API (``/v2``).

A service is configuration, like an API key: one hash ``otp:{cfg}:svc:<VA sid>`` that lives until
it is deleted (no TTL), plus a per-account index, a sorted set by creation time, so a page of
``GET /v2/Services`` is one ``ZRANGE``. Each service is a tenant of its own for the Verifier: its
sid is the ``key_id`` that verifications, pending pointers and per-key send limits are kept under.

Settings are stored under their Twilio parameter names (``p:FriendlyName``, ``p:Push.IncludeDate``),
validated and normalised (booleans ``true``/``false``, integers in decimal), so the adapter can
answer every property of Twilio's schema without a second naming scheme.

Also here, the v2 adapter's two small lookups kept beside each verification, in its partition and
for its lifetime (otp.storage.accounts). An attempt sid leads back to its
(verification, send number, service), which ``GET /v2/Attempts/{Sid}`` needs; and (service,
number) leads to the latest verification, so a check by ``To`` after the Verifier has dropped its
pending pointer can still say *why* nothing is pending (attempts used up → Twilio's 60202).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from otp.core import messages, templates
from otp.core.validators import whole_number
from otp.errors import Forbidden, InvalidInput
from otp.storage import accounts
from otp.storage import webhooks as webhook_records
from otp.storage.errors import STORAGE_ERRORS
from otp.storage.store import Store

log = logging.getLogger("otp.services")

__all__ = ["STORAGE_ERRORS"]  # re-exported: the /v2 adapter tells storage failures apart with it

SERVICE_SID = re.compile(r"^VA[0-9a-fA-F]{32}$")
ATTEMPT_SID = re.compile(r"^VL[0-9a-f]{32}$")
DEFAULT_CODE_LENGTH = 6
# Services are configuration each /v2 read may walk (an account's Attempts span all of them), so
# an account gets a bounded number; its fraud budgets are the account's whatever the count.
MAX_SERVICES_PER_ACCOUNT = 100
# FriendlyName is the name in the SMS: otp.core.messages.validate_app_name holds it to one GSM-7
# segment and no links (Twilio's "up to 30 characters" rather than its form's 32).
FRIENDLY_NAME_MAX = messages.APP_NAME_MAX
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


@dataclass(frozen=True)
class Param:
    """One form parameter of CreateService/UpdateService: its kind and bounds."""

    kind: str  # "str", "bool" or "int"
    low: int = 0
    high: int = 0
    pattern: re.Pattern[str] | None = None
    max_length: int = 128
    shape: str = ""  # what ``pattern`` wants, in words, for the error message


def _sid(prefix: str) -> Param:
    pattern = re.compile(rf"^{prefix}[0-9a-fA-F]{{32}}$")
    return Param("str", pattern=pattern, max_length=34, shape=f"a sid: {prefix} and 32 hex digits")


BOOL = Param("bool")
TEXT = Param("str")
# Every parameter of the spec's CreateServiceRequest. Those for channels otp doesn't run (calls,
# push, TOTP, WhatsApp, passkeys) are kept and echoed, as Twilio does, and change nothing here.
PARAMS: Mapping[str, Param] = {
    "FriendlyName": Param("str", max_length=FRIENDLY_NAME_MAX),
    "CodeLength": Param("int", 4, 10),
    "LookupEnabled": BOOL,
    "SkipSmsToLandlines": BOOL,
    "DtmfInputRequired": BOOL,
    "TtsName": TEXT,
    "Psd2Enabled": BOOL,
    "DoNotShareWarningEnabled": BOOL,
    "CustomCodeEnabled": BOOL,
    "Push.IncludeDate": BOOL,
    "Push.ApnCredentialSid": _sid("CR"),
    "Push.FcmCredentialSid": _sid("CR"),
    "Totp.Issuer": TEXT,
    "Totp.TimeStep": Param("int", 20, 60),
    "Totp.CodeLength": Param("int", 3, 8),
    "Totp.Skew": Param("int", 0, 2),
    "DefaultTemplateSid": _sid("HJ"),
    "Whatsapp.MsgServiceSid": _sid("MG"),
    "Whatsapp.From": TEXT,
    "Passkeys.RelyingParty.Id": TEXT,
    "Passkeys.RelyingParty.Name": TEXT,
    "Passkeys.RelyingParty.Origins": Param("str", max_length=1024),
    "Passkeys.AuthenticatorAttachment": TEXT,
    "Passkeys.DiscoverableCredentials": TEXT,
    "Passkeys.UserVerification": TEXT,
    "VerifyEventSubscriptionEnabled": BOOL,
}


def _normalise(name: str, spec: Param, raw: str) -> str:
    if spec.kind == "bool":
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return "true"
        if lowered in _FALSE:
            return "false"
        raise InvalidInput("must be true or false", field=name)
    if spec.kind == "int":
        return str(whole_number(raw.strip(), field=name, low=spec.low, high=spec.high))
    if len(raw) > spec.max_length:
        raise InvalidInput(f"is longer than {spec.max_length} characters", field=name)
    if spec.pattern is not None and not spec.pattern.match(raw):
        raise InvalidInput(f"must be {spec.shape or spec.pattern.pattern}", field=name)
    if name == "FriendlyName":
        # Also the service's display name, refused here rather than at its first SMS.
        return messages.validate_app_name(raw, name)
    if name == "DefaultTemplateSid":
        # One of otp's templates (60228 otherwise), refused here rather than at the service's first start.
        templates.by_sid(raw, name)
    return raw


def validate(form: Mapping[str, str], *, creating: bool) -> dict[str, str]:
    """The service parameters of a form, validated and normalised; other form fields are ignored,
    as Twilio ignores them. Raises InvalidInput naming the parameter in Twilio's spelling."""
    if creating and not form.get("FriendlyName", "").strip():
        raise InvalidInput("is required", field="FriendlyName", code="missing_field")
    return {name: _normalise(name, spec, form[name]) for name, spec in PARAMS.items() if name in form}


@dataclass(frozen=True)
class Service:
    sid: str
    account_sid: str
    created_at: float
    updated_at: float
    params: Mapping[str, str]

    def text(self, name: str) -> str | None:
        return self.params.get(name)

    def flag(self, name: str) -> bool:
        return self.params.get(name) == "true"

    def integer(self, name: str) -> int | None:
        value = self.params.get(name)
        return int(value) if value is not None else None

    @property
    def friendly_name(self) -> str:
        return self.params.get("FriendlyName", "")

    @property
    def code_length(self) -> int:
        return self.integer("CodeLength") or DEFAULT_CODE_LENGTH

    @property
    def custom_code_enabled(self) -> bool:
        return self.flag("CustomCodeEnabled")


# -- services ------------------------------------------------------------------------------------


def from_record(sid: str, fields: Mapping[str, str]) -> Service:
    return Service(
        sid=sid,
        account_sid=fields["account"],
        created_at=int(fields["created"]) / 1000,
        updated_at=int(fields["updated"]) / 1000,
        params={name[2:]: value for name, value in fields.items() if name.startswith("p:")},
    )


async def create(store: Store, account_sid: str, params: Mapping[str, str], *, now: float) -> Service:
    sid = "VA" + secrets.token_hex(16)
    now_ms = int(now * 1000)
    record: dict[str, Any] = {"account": account_sid, "created": now_ms, "updated": now_ms}
    record.update({f"p:{name}": value for name, value in params.items()})
    # Counted and written in one step: concurrent creates can't pass the cap together.
    if not await accounts.put_service(
        store, sid, account_sid, record, created_ms=now_ms, most=MAX_SERVICES_PER_ACCOUNT
    ):
        raise Forbidden(
            f"an account may have at most {MAX_SERVICES_PER_ACCOUNT} services; delete one first",
            field="FriendlyName",
        )
    return Service(sid, account_sid, now_ms / 1000, now_ms / 1000, dict(params))


async def get(store: Store, sid: str) -> Service | None:
    if not SERVICE_SID.match(sid):
        return None
    fields = await accounts.get_service(store, sid)
    return from_record(sid, fields) if fields else None


async def sids_for_account(store: Store, account_sid: str) -> frozenset[str]:
    return frozenset(await accounts.service_sids(store, account_sid))


async def list_for_account(store: Store, account_sid: str, *, offset: int, count: int) -> tuple[list[Service], int]:
    """One page of the account's services, oldest first, and how many it has in all."""
    found, total = await accounts.service_page(store, account_sid, offset=offset, count=count)
    return [from_record(sid, fields) for sid, fields in found], total


async def update(store: Store, service: Service, params: Mapping[str, str], *, now: float) -> Service:
    now_ms = int(now * 1000)
    mapping: dict[str, Any] = {f"p:{name}": value for name, value in params.items()}
    mapping["updated"] = now_ms
    await accounts.update_service(store, service.sid, mapping)
    return Service(service.sid, service.account_sid, service.created_at, now_ms / 1000, {**service.params, **params})


async def delete(store: Store, service: Service) -> None:
    """Pending verifications of the service run out by themselves; its sid is never reused. Its
    webhooks go with it (their queued events then find none and are dropped)."""
    await accounts.delete_service(store, service.sid, service.account_sid)
    await webhook_records.remove_all(store, service.sid)


# -- per-verification lookups ------------------------------------------------------------------


def attempt_sid(verification_id: str, send_number: int) -> str:
    """``VL`` + the verification's partition byte + 30 hex of a hash of (verification, send):
    the same sid whether it is computed from the audit log or the verification, and it names the
    slot its lookup lives in."""
    digest = hashlib.sha256(f"{verification_id}:{send_number}".encode()).hexdigest()[:30]
    return f"VL{verification_id[2:4]}{digest}"


async def remember_send(
    store: Store,
    *,
    service_sid: str,
    verification_id: str,
    send_number: int,
    e164: str,
    ttl_ms: int,
) -> None:
    """Best effort: the send has happened whatever this does, so a storage error here is logged
    and swallowed rather than turning a queued SMS into a 503 that invites a retry."""
    sid = attempt_sid(verification_id, send_number)
    try:
        await accounts.put_send_lookups(
            store, accounts.SendLookups(sid, verification_id, send_number, service_sid, e164), ttl_ms=ttl_ms
        )
    except STORAGE_ERRORS as exc:
        # Unavailable wraps the Redis error: name that one, as before.
        log.warning("could not record the lookups of attempt %s: %s", sid, type(exc.__cause__ or exc).__name__)


async def find_attempt(store: Store, sid: str) -> tuple[str, int, str] | None:
    """(verification id, send number, service sid) of an attempt sid, while its verification lives."""
    if not ATTEMPT_SID.match(sid):
        return None
    return await accounts.get_attempt(store, sid)


async def latest_verification(store: Store, service_sid: str, e164: str) -> str | None:
    return await accounts.get_latest(store, service_sid, e164)
