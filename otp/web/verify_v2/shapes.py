"""The JSON of /v2 answers, in Twilio's shapes: services, verifications, checks, attempts, and the
list envelope (``meta``) with its page URLs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from otp import delivery_errors
from otp.core import attempts, messages, services
from otp.core.attempts import Attempt
from otp.core.audit import iso_ms
from otp.core.messaging_configs import MessagingConfiguration
from otp.core.phone import CARRIER_TYPES, parse_e164
from otp.core.rate_limits import Bucket, RateLimit
from otp.core.services import Service
from otp.core.verification import APPROVED, EXPIRED, Verification
from otp.web.v1 import iso
from otp.web.verify_v2.context import base


def service_json(service: Service, base: str) -> dict[str, Any]:
    s = service
    url = f"{base}/v2/Services/{s.sid}"
    origins = s.text("Passkeys.RelyingParty.Origins")
    return {
        "sid": s.sid,
        "account_sid": s.account_sid,
        "friendly_name": s.friendly_name,
        "code_length": s.code_length,
        "lookup_enabled": s.flag("LookupEnabled"),
        "psd2_enabled": s.flag("Psd2Enabled"),
        "skip_sms_to_landlines": s.flag("SkipSmsToLandlines"),
        "dtmf_input_required": s.text("DtmfInputRequired") != "false",  # Twilio's default is true
        "tts_name": s.text("TtsName"),
        "do_not_share_warning_enabled": s.flag("DoNotShareWarningEnabled"),
        "custom_code_enabled": s.custom_code_enabled,
        "push": {
            "include_date": s.flag("Push.IncludeDate"),
            "apn_credential_sid": s.text("Push.ApnCredentialSid"),
            "fcm_credential_sid": s.text("Push.FcmCredentialSid"),
        },
        "totp": {
            "issuer": s.text("Totp.Issuer") or s.friendly_name,
            "time_step": s.integer("Totp.TimeStep") or 30,
            "code_length": s.integer("Totp.CodeLength") or 6,
            "skew": s.integer("Totp.Skew") if s.integer("Totp.Skew") is not None else 1,
        },
        "default_template_sid": s.text("DefaultTemplateSid"),
        "whatsapp": {"msg_service_sid": s.text("Whatsapp.MsgServiceSid"), "from": s.text("Whatsapp.From")},
        "passkeys": {
            "relying_party": {
                "id": s.text("Passkeys.RelyingParty.Id"),
                "name": s.text("Passkeys.RelyingParty.Name"),
                "origins": [o.strip() for o in origins.split(",") if o.strip()] if origins else None,
            },
            "authenticator_attachment": s.text("Passkeys.AuthenticatorAttachment"),
            "discoverable_credentials": s.text("Passkeys.DiscoverableCredentials"),
            "user_verification": s.text("Passkeys.UserVerification"),
        },
        "verify_event_subscription_enabled": s.flag("VerifyEventSubscriptionEnabled"),
        "date_created": iso(s.created_at),
        "date_updated": iso(s.updated_at),
        "url": url,
        # Only the sub-resources this server answers.
        "links": {
            "verifications": f"{url}/Verifications",
            "verification_checks": f"{url}/VerificationCheck",
            "rate_limits": f"{url}/RateLimits",
            "messaging_configurations": f"{url}/MessagingConfigurations",
        },
    }


def rate_limit_json(limit: RateLimit, service: Service, base: str) -> dict[str, Any]:
    url = f"{base}/v2/Services/{service.sid}/RateLimits/{limit.sid}"
    return {
        "sid": limit.sid,
        "service_sid": service.sid,
        "account_sid": service.account_sid,
        "unique_name": limit.unique_name,
        "description": limit.description,
        "date_created": iso(limit.created_at),
        "date_updated": iso(limit.updated_at),
        "url": url,
        "links": {"buckets": f"{url}/Buckets"},
    }


def bucket_json(bucket: Bucket, limit: RateLimit, service: Service, base: str) -> dict[str, Any]:
    return {
        "sid": bucket.sid,
        "rate_limit_sid": limit.sid,
        "service_sid": service.sid,
        "account_sid": service.account_sid,
        "max": bucket.max,
        "interval": bucket.interval,
        "date_created": iso(bucket.created_at),
        "date_updated": iso(bucket.updated_at),
        "url": f"{base}/v2/Services/{service.sid}/RateLimits/{limit.sid}/Buckets/{bucket.sid}",
    }


def lookup(service: Service, v: Verification) -> dict[str, Any]:
    """The carrier and type Twilio Lookup found when it ran for the start (OTP_LOOKUP), else what
    ``phonenumbers`` knows offline (a type, no carrier)."""
    if not service.flag("LookupEnabled"):
        return {}
    number_type = v.line_type or parse_e164(v.to).number_type
    return {
        "carrier": {
            "error_code": None,
            "name": v.carrier or None,
            "mobile_country_code": None,
            "mobile_network_code": None,
            "type": CARRIER_TYPES.get(number_type),
        }
    }


def _identity(v: Verification, service: Service) -> dict[str, Any]:
    """The fields a Verification and a VerificationCheck share."""
    # ``to`` in full: the service's owner gave it to us, and Twilio's contract returns it.
    return {
        "sid": v.id,
        "service_sid": service.sid,
        "account_sid": service.account_sid,
        "to": v.to,
        "channel": v.channel,
    }


def verification_json(v: Verification, service: Service, base: str) -> dict[str, Any]:
    return {
        **_identity(v, service),
        "status": v.status,
        "valid": v.status == APPROVED,
        "lookup": lookup(service, v),
        "amount": None,
        "payee": None,
        "send_code_attempts": [
            {"attempt_sid": services.attempt_sid(v.id, a.number), "channel": a.channel, "time": iso(a.at)}
            for a in v.send_attempts
        ],
        "date_created": iso(v.created_at),
        "date_updated": iso(v.updated_at),
        "sna": None,
        "url": f"{base}/v2/Services/{service.sid}/Verifications/{v.id}",
    }


def check_json(v: Verification, status: str, approved: bool, service: Service) -> dict[str, Any]:
    return {
        **_identity(v, service),
        "status": status,
        "valid": approved,
        "amount": None,
        "payee": None,
        "date_created": iso(v.created_at),
        "date_updated": iso(v.updated_at),
        "sna_attempts_error_codes": [],
    }


def page_url(base_url: str, params: Mapping[str, str], page_size: int, page: int, token: str | None) -> str:
    query = {k: v for k, v in params.items() if k not in ("PageSize", "Page", "PageToken")}
    query.update({"PageSize": str(page_size), "Page": str(page)})
    if token:
        query["PageToken"] = token
    return f"{base_url}?{urlencode(query)}"


def meta(
    request: Request,
    key: str,
    page: int,
    page_size: int,
    *,
    previous: str | None,
    current: str | None,
    following: str | None,
) -> dict[str, Any]:
    """Twilio's list envelope; ``previous``/``current``/``following`` are page tokens ("" for the
    first page, None for none)."""
    base_url = f"{base(request)}{request.url.path}"
    params = dict(request.query_params)

    def url(page_index: int, token: str | None) -> str:
        return page_url(base_url, params, page_size, page_index, token)

    return {
        "page": page,
        "page_size": page_size,
        "first_page_url": url(0, None),
        "previous_page_url": url(page - 1, previous) if previous is not None and page > 0 else None,
        "url": url(page, current),
        "next_page_url": url(page + 1, following) if following is not None else None,
        "key": key,
    }


def _attempt_status(v: Verification | None) -> str:
    if v is None or v.status == EXPIRED:
        return "expired"
    return "confirmed" if v.status == APPROVED else "unconfirmed"


def attempt_json(attempt: Attempt, account_sid: str, base: str) -> dict[str, Any]:
    v, send = attempt.verification, attempt.send
    delivery = send.delivery if send else {}
    updated_ms = delivery.get("updated_at")
    price = {"value": send.price, "currency": (send.price_unit or "USD").lower()} if send and send.price else None
    return {
        "sid": attempt.sid,
        "account_sid": account_sid,
        "service_sid": attempt.service_sid,
        "verification_sid": attempt.verification_id,
        "date_created": iso(attempt.at),
        "date_updated": iso(max(attempt.at, updated_ms / 1000) if updated_ms else attempt.at),
        "conversion_status": "converted" if attempt.converted else "unconverted",
        "channel": "sms",
        "price": price,
        "channel_data": {
            "verification_sid": attempt.verification_id,
            # In full while the verification is retained; the log keeps only the masked number.
            "to": v.to if v else None,
            "status": _attempt_status(v),
            "message_status": delivery.get("status"),
            "error_code": str(delivery["error_code"]) if delivery.get("error_code") else None,
            "country": attempt.country or None,
            "locale": (v.locale or None) if v else None,
            "message_sid": send.message_sid if send else None,
            "segments": send.segments if send else None,
            # Seconds the code was expected to wait for its sender's slot (otp paces each sender).
            "queued_at_sender": send.queued_at_sender if send else None,
            # The start's Tags: Twilio's schema has no property for them and channel_data is free-form.
            "tags": attempt.tags,
            # otp's additions, free-form too: what the error code means and what to do (the
            # catalogue, otp.delivery_errors), when each state was reached, and the sender.
            "error": delivery_errors.explain(delivery.get("error_code")),
            "timeline": {k: iso_ms(ms) for k, ms in attempts.timeline(send).items()} if send else {},
            "time_to_delivered_ms": attempts.time_to_delivered_ms(send) if send else None,
            "sender": send.sender if send else None,
        },
        "url": f"{base}/v2/Attempts/{attempt.sid}",
    }


def summary_json(summary: attempts.Summary, url: str) -> dict[str, Any]:
    return {
        "total_attempts": summary.total,
        "total_converted": summary.converted,
        "total_unconverted": summary.unconverted,
        "conversion_rate_percentage": summary.conversion_rate_percentage,
        "url": url,
    }


def messaging_configuration_json(config: MessagingConfiguration, account_sid: str, base: str) -> dict[str, Any]:
    return {
        "account_sid": account_sid,
        "service_sid": config.service_sid,
        "country": config.country,
        "messaging_service_sid": config.messaging_service_sid,
        "date_created": iso(config.created_at),
        "date_updated": iso(config.updated_at),
        "url": f"{base}/v2/Services/{config.service_sid}/MessagingConfigurations/{config.country}",
    }


def safelist_json(sid: str, entry: str, base: str) -> dict[str, Any]:
    # The entry as it is in the URL: an SDK's fetch of ``url`` gets this answer back.
    return {"sid": sid, "phone_number": entry, "url": f"{base}/v2/SafeList/Numbers/{entry}"}


def template_json(sid: str, account_sid: str, friendly_name: str, texts: Mapping[str, str]) -> dict[str, Any]:
    """A Verification Template; ``texts`` maps each locale to its text. Built into otp, so always
    approved and with no dates of its own."""
    translations = {
        locale: {
            "is_default_translation": locale == messages.DEFAULT_LOCALE,
            "status": "approved",
            "locale": locale,
            "text": text,
            "date_created": None,
            "date_updated": None,
        }
        for locale, text in texts.items()
    }
    return {
        "sid": sid,
        "account_sid": account_sid,
        "friendly_name": friendly_name,
        "channels": ["sms"],
        "translations": translations,
    }
