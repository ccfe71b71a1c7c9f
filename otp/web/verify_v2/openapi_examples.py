"""The examples of the ``/v2`` operations in the OpenAPI document, by Twilio's operationIds.

Answers come from the adapters' own shaping (``shapes``, ``webhooks.webhook_json``, the list
envelope ``shapes.meta``) applied to sample records, the same sample verification as the ``/v1``
examples (``otp.web.openapi_examples``), so they show what otp answers, not what Twilio's
documentation shows. Requests are the form fields an SDK sends, typed as Twilio's schemas type them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from starlette.requests import Request

from otp.core import attempts, services, templates
from otp.core.messaging_configs import MessagingConfiguration
from otp.core.rate_limits import Bucket, RateLimit
from otp.core.services import Service
from otp.core.verification import APPROVED
from otp.core.webhooks import Webhook
from otp.web import openapi_examples as v1
from otp.web.verify_v2 import shapes, webhooks
from otp.web.verify_v2.templates import twilio_text

HOST: Final = "otp.example.com"
BASE: Final = f"https://{HOST}"
ACCOUNT_SID: Final = "AC" + "0d6c5e3b" * 4
SERVICE = Service(
    sid="VA" + "9c1e4f27" * 4,
    account_sid=ACCOUNT_SID,
    created_at=v1.NOW - 86_400,
    updated_at=v1.NOW - 86_400,
    params={"FriendlyName": "Acme", "CodeLength": "6"},
)
VERIFICATION = replace(v1.VERIFICATION, key_id=SERVICE.sid)
MESSAGING_SERVICE_SID: Final = "MG" + "5a7b9c1d" * 4
BUCKET = Bucket(sid="BL" + "3e8f0a2c" * 4, max=4, interval=3600, created_at=v1.NOW, updated_at=v1.NOW)
RATE_LIMIT = RateLimit(
    sid="RK" + "6d2b8e41" * 4,
    unique_name="end_user_ip",
    description="Sends per end-user IP",
    created_at=v1.NOW,
    updated_at=v1.NOW,
    buckets=(BUCKET,),
)
CONFIGURATION = MessagingConfiguration(SERVICE.sid, "GB", MESSAGING_SERVICE_SID, v1.NOW, v1.NOW)
WEBHOOK = Webhook(
    sid="YW" + "1f4a7c3e" * 4,
    owner=SERVICE.sid,
    key_id=ACCOUNT_SID,
    friendly_name="events",
    event_types=("verification.approved", "message.undelivered"),
    status="enabled",
    version="v2",
    url="https://example.com/twilio-events",
    created_ms=int(v1.NOW * 1000),
    updated_ms=int(v1.NOW * 1000),
    sealed_secret="",
)
SAFELIST_SID: Final = "GN" + "8b0d2f4a" * 4
ATTEMPT = attempts.Attempt(
    sid=services.attempt_sid(VERIFICATION.id, 1),
    service_sid=SERVICE.sid,
    verification_id=VERIFICATION.id,
    number=1,
    at=v1.NOW,
    country="US",
    verification=replace(VERIFICATION, status=APPROVED, approved_at=v1.NOW + 31),
)


def _page(path: str, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A list answer's first page, its envelope made by ``shapes.meta`` for a request to ``path``."""
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "https",
        "server": (HOST, 443),
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", HOST.encode())],
    }
    envelope = shapes.meta(Request(scope), key, 0, 50, previous="", current="", following=None)
    return {key: items, "meta": envelope}


def _template() -> dict[str, Any]:
    sid, found = next(iter(templates.BY_SID.items()))
    texts = {locale: twilio_text(text) for locale, text in list(found.texts.items())[:2]}
    return shapes.template_json(sid, ACCOUNT_SID, found.friendly_name, texts)


def replies() -> dict[str, Any]:
    """operationId → the example of its answer (none for a 204)."""
    service = shapes.service_json(SERVICE, BASE)
    services_path = f"/v2/Services/{SERVICE.sid}"
    verification = shapes.verification_json(VERIFICATION, SERVICE, BASE)
    limit = shapes.rate_limit_json(RATE_LIMIT, SERVICE, BASE)
    bucket = shapes.bucket_json(BUCKET, RATE_LIMIT, SERVICE, BASE)
    configuration = shapes.messaging_configuration_json(CONFIGURATION, ACCOUNT_SID, BASE)
    attempt = shapes.attempt_json(ATTEMPT, ACCOUNT_SID, BASE)
    safe = shapes.safelist_json(SAFELIST_SID, v1.NUMBER, BASE)
    webhook = webhooks.webhook_json(WEBHOOK, SERVICE, BASE)
    return {
        "CreateService": service,
        "ListService": _page("/v2/Services", "services", [service]),
        "FetchService": service,
        "UpdateService": service,
        "CreateVerification": verification,
        "FetchVerification": verification,
        "UpdateVerification": shapes.verification_json(replace(VERIFICATION, status="canceled"), SERVICE, BASE),
        "CreateVerificationCheck": shapes.check_json(ATTEMPT.verification or VERIFICATION, APPROVED, True, SERVICE),
        "CreateRateLimit": limit,
        "ListRateLimit": _page(f"{services_path}/RateLimits", "rate_limits", [limit]),
        "FetchRateLimit": limit,
        "UpdateRateLimit": limit,
        "CreateBucket": bucket,
        "ListBucket": _page(f"{services_path}/RateLimits/{RATE_LIMIT.sid}/Buckets", "buckets", [bucket]),
        "FetchBucket": bucket,
        "UpdateBucket": bucket,
        "CreateMessagingConfiguration": configuration,
        "ListMessagingConfiguration": _page(
            f"{services_path}/MessagingConfigurations", "messaging_configurations", [configuration]
        ),
        "FetchMessagingConfiguration": configuration,
        "UpdateMessagingConfiguration": configuration,
        "ListVerificationAttempt": _page("/v2/Attempts", "attempts", [attempt]),
        "FetchVerificationAttempt": attempt,
        "FetchVerificationAttemptsSummary": shapes.summary_json(
            attempts.Summary(412, 371, int(v1.NOW * 1000) - 86_400_000, int(v1.NOW * 1000), complete=True),
            f"{BASE}/v2/Attempts/Summary",
        ),
        "CreateSafelist": safe,
        "FetchSafelist": safe,
        "ListVerificationTemplate": _page("/v2/Templates", "templates", [_template()]),
        "CreateWebhook": webhook,
        "ListWebhook": _page(f"{services_path}/Webhooks", "webhooks", [webhook]),
        "FetchWebhook": webhook,
        "UpdateWebhook": webhook,
    }


def requests() -> dict[str, dict[str, Any]]:
    """operationId → the example of its form body."""
    return {
        "CreateService": {"FriendlyName": "Acme", "CodeLength": 6},
        "UpdateService": {"FriendlyName": "Acme", "LookupEnabled": True},
        "CreateVerification": {"To": v1.NUMBER, "Channel": "sms", "Locale": "en"},
        "UpdateVerification": {"Status": "canceled"},
        "CreateVerificationCheck": {"To": v1.NUMBER, "Code": "123456"},
        "CreateRateLimit": {"UniqueName": RATE_LIMIT.unique_name, "Description": RATE_LIMIT.description},
        "UpdateRateLimit": {"Description": "Sends per end-user IP address"},
        "CreateBucket": {"Max": 4, "Interval": 3600},
        "UpdateBucket": {"Max": 8},
        "CreateMessagingConfiguration": {"Country": "GB", "MessagingServiceSid": MESSAGING_SERVICE_SID},
        "UpdateMessagingConfiguration": {"MessagingServiceSid": MESSAGING_SERVICE_SID},
        "CreateSafelist": {"PhoneNumber": v1.NUMBER},
        "CreateWebhook": {
            "FriendlyName": WEBHOOK.friendly_name,
            "EventTypes": list(WEBHOOK.event_types),
            "WebhookUrl": WEBHOOK.url,
        },
        "UpdateWebhook": {"Status": "disabled"},
    }
