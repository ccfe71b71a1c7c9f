"""The examples of the ``/v1`` operations in the OpenAPI document, by operationId.

Answers are made the way the handlers make them, from sample records: a verification goes through
``v1.verification_model``, the overview through ``core.stats.Overview.as_dict``, and every answer
is converted into its reply Struct (``msgspec.convert``), so an example can't show a field the
answer doesn't have. The same sample verification is the ``/v2`` examples' one
(``otp.web.verify_v2.openapi_examples``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any, Final

import msgspec

from otp.core import stats
from otp.core.audit import iso_ms
from otp.core.verification import APPROVED, CANCELED, PENDING
from otp.core.verification_io import CheckResult
from otp.model import SendAttempt, Verification
from otp.web import models, v1

# 2026-01-15T09:30:00Z, and the sample's ids: Twilio's documentation numbers and 32 hex digits.
NOW: Final = 1_768_469_400.0
NUMBER: Final = "+15017122661"
KEY_ID: Final = "3f1c9a7be2d04a65"
NUMBER_HASH: Final = "e7f0adc0610bbd90"
# An EdDSA JWT of otp.core.tokens' shape (iss, aud, sub, vid, iat, exp, jti; kid in the header),
# signed by a throwaway key: verifying it against a real JWKS fails, as it should.
APPROVAL: Final = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6ImtQcktfcW14VldhWVZBOXd3QkY2SXVvM3ZWeno3VHhIQ1R3WEJ5Z3JTNGsiLCJ0eXAiOiJKV1QifQ"
    ".eyJpc3MiOiJodHRwczovL290cC5leGFtcGxlLmNvbSIsImF1ZCI6ImszSmQ5YVEyIiwic3ViIjoiaDFhMmIzYzRkNWU2ZjcwOCIsInZpZCI6"
    "IlZFMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYiLCJpYXQiOjE3Njg0NjQwMDAsImV4cCI6MTc2ODQ2NDMwMCwianRpIjoiWXAzeD"
    "BkRzlyWlc0dGFXUSJ9.y0enXPJoziEqzjVaQW5qu3f0IAFaL54YN6raijfNjramJR39uJ3oEm7txJ9z-Q1AgXD4bvWtMhDumJIR-ZaKCg"
)
SEND = SendAttempt(
    number=1,
    at=NOW,
    channel="sms",
    delivery={"status": "delivered", "updated_at": int(NOW * 1000) + 2_350},
    message_sid="SM" + "7b2d" * 8,
    segments=1,
    price="0.0079",
    price_unit="USD",
    sent_at=NOW + 0.21,
    tries=1,
    timeline={"sent": int(NOW * 1000) + 640, "delivered": int(NOW * 1000) + 2_350},
    country="US",
    sender="+15005550006",
)
VERIFICATION = Verification(
    id="VE" + "4e12e5fb430a1eb4" * 2,
    to=NUMBER,
    channel="sms",
    locale="en",
    status=PENDING,
    created_at=NOW,
    updated_at=NOW,
    expires_at=NOW + 600,
    attempts=0,
    max_attempts=5,
    sends=1,
    key_id=KEY_ID,
    send_attempts=[SEND],
)
APPROVED_VERIFICATION = replace(VERIFICATION, status=APPROVED, attempts=1, updated_at=NOW + 31, approved_at=NOW + 31)


def _reply(model: Any, value: dict[str, Any]) -> Any:
    """``value`` as ``model`` renders it: decoded as the JSON it is served as (a wrong field is an
    error here), then back."""
    return msgspec.to_builtins(msgspec.json.decode(msgspec.json.encode(value), type=model))


def _shown(reply: models.Reply) -> Any:
    return msgspec.to_builtins(reply)


def _overview() -> Any:
    counts = Counter(
        {
            "started": 412,
            "resent": 23,
            "approved": 371,
            "check_failed": 19,
            "expired": 36,
            "refused:resend_cooldown:resend_too_soon": 14,
            "refused:sms_pumping_prefix:prefix_blocked": 40,
            "delivery:delivered:": 398,
            "delivery:undelivered:30007": 6,
            "country_delivery:delivered:US": 398,
            "country_delivery:undelivered:US": 6,
        }
    )
    hour = int(NOW) // 3600
    buckets = [stats.Bucket(hour, 1, True, counts)]
    figures = stats.Overview(stats.WINDOWS["1h"], int(NOW * 1000), buckets, totals=counts).as_dict()
    return _reply(models.Overview, figures)


def _audit() -> Any:
    ts = int(NOW * 1000)
    started = {
        "id": f"{ts}-0",
        "partition": 14,
        "time": iso_ms(ts),
        "ts": ts,
        "event": "started",
        "to": "+1*********61",
        "country": "US",
        "nh": NUMBER_HASH,
        "key": KEY_ID,
        "ip": "203.0.113.7",
        "vid": VERIFICATION.id,
        "send": "1",
        "decision": "allowed",
    }
    summary = {"events": 1, "refused": 0, "by_event": {"started": 1}, "refused_by_reason": {}}
    return _reply(models.AuditPage, {"events": [started], "next_cursor": None, "summary": summary})


def _webhook() -> Any:
    return _shown(
        models.KeyWebhook(
            url="https://example.com/otp-events",
            event_types=["verification.approved", "message.undelivered"],
            created_at=v1.iso(NOW) or "",
            updated_at=v1.iso(NOW) or "",
        )
    )


def _scope(budget: str | None, left: str | None) -> Any:
    return _shown(models.BudgetScope(scope=f"key:{KEY_ID}", spent="3.2469", budget=budget, left=left, currency="USD"))


def replies() -> dict[str, Any]:
    """operationId → the example of its answer."""
    checked = CheckResult(APPROVED_VERIFICATION, approved=True, token=APPROVAL)
    budgets = models.BudgetStatus(
        day="20260115",
        timezone="UTC",
        resets_at="2026-01-16T00:00:00Z",
        scopes=[msgspec.convert(_scope("25", "21.7531"), models.BudgetScope)],
    )
    return {
        "startVerification": _shown(v1.verification_model(VERIFICATION)),
        "checkVerification": _shown(v1.check_model(checked)),
        "getVerification": _shown(v1.verification_model(VERIFICATION)),
        "cancelVerification": _shown(v1.verification_model(replace(VERIFICATION, status=CANCELED))),
        "verifyToken": _shown(
            models.TokenResult(
                valid=True, verification_id=VERIFICATION.id, number_hash=NUMBER_HASH, approved_at=v1.iso(NOW + 31)
            )
        ),
        "listAuditEvents": _audit(),
        "getOverview": _overview(),
        "listSafeList": _shown(models.SafeList(entries=["+1501712"], numbers=[NUMBER])),
        "addSafeListEntry": _shown(models.SafeEntry(entry="+1501712")),
        "removeSafeListEntry": _shown(models.SafeRemoved(entry="+1501712", removed=True)),
        "getOptOut": _shown(models.OptOut(to="+1*******2661", opted_out=True, since=iso_ms(int(NOW * 1000)))),
        "clearOptOut": _shown(models.OptOut(to="+1*******2661", opted_out=False, cleared=True)),
        "getConversion": _shown(models.Conversion(country="US", since_hours=24, sends=412, approvals=371, rate=0.9)),
        "getBudgets": _shown(budgets),
        "setKeyBudget": _scope("25", "21.7531"),
        "removeKeyBudget": _scope(None, None),
        "getWebhook": _webhook(),
        "setWebhook": _webhook(),
        "removeWebhook": _shown(models.WebhookRemoved(removed=True)),
        "unblock": _shown(models.Unblocked(prefix="+1415555", was_blocked=True)),
    }


def requests() -> dict[str, Any]:
    """operationId → the example of its JSON body."""
    bodies: dict[str, models.Request] = {
        "startVerification": models.StartRequest(to=NUMBER, locale="en", ip="203.0.113.7"),
        "checkVerification": models.CheckRequest(id=VERIFICATION.id, code="123456"),
        "verifyToken": models.TokenVerifyRequest(token=APPROVAL, consume=True),
        "addSafeListEntry": models.SafeEntryRequest(entry="+1501712"),
        "setKeyBudget": models.BudgetRequest(amount="25.00"),
        "setWebhook": models.WebhookRequest(
            url="https://example.com/otp-events", event_types=["verification.approved", "message.undelivered"]
        ),
    }
    return {op: {k: v for k, v in msgspec.to_builtins(body).items() if v is not None} for op, body in bodies.items()}
