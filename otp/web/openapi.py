"""The OpenAPI document for every endpoint, request and response."""

from __future__ import annotations

from typing import Any

from otp import __version__
from otp.web import stats as stats_api

VE_PATTERN = "^VE[0-9a-f]{32}$"

ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "example": "invalid_parameter"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
                "retry_after": {"type": "integer"},
                "rule": {"type": "string", "description": "the policy rule that refused the request"},
            },
            "required": ["code", "message"],
        }
    },
}

DELIVERY = {
    "type": "object",
    "properties": {
        "status": {
            "type": "string",
            "enum": ["queued", "sending", "sent", "delivered", "undelivered", "failed", "canceled"],
        },
        "updated_at": {"type": "string", "format": "date-time"},
        "error_code": {"type": "integer"},
        "error_message": {"type": "string"},
    },
}

STATUS = {"type": "string", "enum": ["pending", "approved", "canceled", "expired", "max_attempts_reached"]}

VERIFICATION = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^VE[0-9a-f]{32}$"},
        "status": STATUS,
        "to": {"type": "string", "description": "masked", "example": "+1*******2661"},
        "channel": {"type": "string", "enum": ["sms"]},
        "locale": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": "string", "format": "date-time"},
        "approved_at": {"type": ["string", "null"], "format": "date-time"},
        "attempts": {"type": "integer"},
        "attempts_left": {"type": "integer"},
        "max_attempts": {"type": "integer"},
        "send_attempts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "at": {"type": "string", "format": "date-time"},
                    "channel": {"type": "string"},
                    "sent_at": {"type": ["string", "null"], "format": "date-time"},
                    "tries": {"type": "integer"},
                    "last_error": {"type": ["string", "null"]},
                    "message_sid": {"type": ["string", "null"]},
                    "segments": {"type": ["integer", "null"]},
                    "price": {"type": ["string", "null"]},
                    "price_unit": {"type": ["string", "null"]},
                    "delivery": DELIVERY,
                },
            },
        },
    },
}

START = {
    "type": "object",
    "additionalProperties": False,
    "required": ["to"],
    "properties": {
        "to": {"type": "string", "description": "E.164, or national format in OTP_DEFAULT_REGION"},
        "channel": {"type": ["string", "null"], "enum": ["sms", None], "default": "sms"},
        "locale": {"type": ["string", "null"], "pattern": "^[a-z]{2}(-[A-Za-z]{2,4})?$", "example": "en"},
        "ip": {
            "type": ["string", "null"],
            "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}, {"type": "null"}],
            "description": "the end user's IP address, for per-IP limits",
        },
        "risk_check": {
            "type": "string",
            "enum": ["enable", "disable"],
            "default": "enable",
            "description": "disable skips the SMS-pumping rules for this request (admin keys only)",
        },
    },
}

CHECK = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code"],
    "properties": {
        "id": {"type": ["string", "null"], "pattern": VE_PATTERN},
        "to": {"type": ["string", "null"]},
        "code": {"type": "string", "pattern": "^[0-9]{4,10}$"},
    },
}

CHECK_RESULT = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "status": STATUS,
        "approved": {"type": "boolean"},
        "attempts_left": {"type": "integer"},
        "delivery": DELIVERY,
        "token": {"type": "string", "description": "signed approval token, only when approved"},
    },
}

TOKEN_VERIFY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["token"],
    "properties": {
        "token": {"type": "string"},
        "max_age": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": 86400,
            "description": "seconds; default and upper bound OTP_TOKEN_MAX_AGE (a larger value is a 400)",
        },
        "consume": {
            "type": ["boolean", "null"],
            "description": "mark the token used (atomically): every later verify answers token_used",
        },
    },
}

TOKEN_RESULT = {
    "type": "object",
    "properties": {
        "valid": {"type": "boolean"},
        "reason": {
            "type": "string",
            "enum": ["token_expired", "token_invalid", "token_used"],
            "description": "token_invalid also for a token another API key earned (admin keys verify any)",
        },
        "verification_id": {"type": "string"},
        "number_hash": {"type": "string"},
        "approved_at": {"type": "string", "format": "date-time"},
    },
}


SAFE_ENTRY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["entry"],
    "properties": {"entry": {"type": "string", "pattern": r"^\+[1-9][0-9]{0,14}$", "example": "+1501712"}},
}
SAFE_REMOVED = {"type": "object", "properties": {"entry": {"type": "string"}, "removed": {"type": "boolean"}}}
AUDIT_PAGE = {
    "type": "object",
    "properties": {
        "events": {"type": "array", "items": {"type": "object"}},
        "next_cursor": {"type": ["string", "null"]},
        "summary": {"type": "object"},
    },
}
AUDIT_PARAMS = [
    {"name": name, "in": "query", "schema": {"type": "string"}, "description": description}
    for name, description in (
        ("since", "a duration back from now (30m, 1h, 2d) or an ISO-8601 time; default: the 24 h before until, or now"),
        ("until", "a duration back from now or an ISO-8601 time"),
        ("reason", "refusal reason, e.g. resend_too_soon"),
        ("rule", "rule that decided, e.g. sms_pumping_prefix"),
        ("country", "ISO country of the number"),
        ("number", "a phone number; matched through its keyed hash"),
        ("ip", "end-user IP"),
        ("key", "API key id"),
        ("decision", "allowed or refused"),
        ("event", "started, resent, refused, approved, check_failed, max_attempts, expired, canceled, delivery, admin"),
        ("cursor", "next_cursor of the previous page"),
    )
] + [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}]
SAFE_LIST = {"type": "object", "properties": {"entries": {"type": "array", "items": {"type": "string"}}}}
CONVERSION = {
    "type": "object",
    "properties": {
        "country": {"type": "string"},
        "prefix": {"type": "string"},
        "since_hours": {"type": "integer"},
        "sends": {"type": "integer"},
        "approvals": {"type": "integer"},
        "rate": {"type": ["number", "null"]},
    },
}
SCOPE_PARAMS = [
    {
        "name": "country",
        "in": "query",
        "schema": {"type": "string", "pattern": "^[A-Za-z]{2}$", "example": "US"},
        "description": "give exactly one of country and prefix",
    },
    {
        "name": "prefix",
        "in": "query",
        "schema": {"type": "string", "pattern": r"^\+[1-9][0-9]{0,14}$", "example": "+1415555"},
    },
]
SINCE_PARAM = {
    "name": "since",
    "in": "query",
    "schema": {"type": "string", "pattern": r"^\d{1,3}(h|d)$", "default": "24h"},
}
CALLBACK = {
    "summary": "Twilio message status callback (checked with X-Twilio-Signature)",
    "security": [],
    "parameters": [
        {"name": "v", "in": "query", "required": True, "schema": {"type": "string"}},
        {"name": "n", "in": "query", "required": True, "schema": {"type": "string"}},
        {"name": "X-Twilio-Signature", "in": "header", "required": True, "schema": {"type": "string"}},
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "MessageSid": {"type": "string"},
                        "MessageStatus": {"type": "string"},
                        "ErrorCode": {"type": "string"},
                    },
                }
            }
        },
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "invalid input",
        401: "missing or bad API key",
        403: "refused by a permission rule, or not an admin key",
        404: "not found",
        409: "not pending",
        413: "body over 16 KiB",
        415: "not JSON",
        429: "rate limited",
        503: "storage unavailable",
    }
    return {str(c): {"description": reasons[c], **_json(ERROR)} for c in codes}


def _op(summary: str, ok: int, response: dict[str, Any], body: dict[str, Any] | None, *errors: int) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}, {"basic": []}],
        "responses": {str(ok): {"description": "ok", **_json(response)}, **_errors(*errors)},
    }
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    return op


ID_PARAM = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": VE_PATTERN}}]


def spec() -> dict[str, Any]:
    health = {"type": "object", "properties": {"status": {"type": "string"}, "checks": {"type": "object"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "otp",
            "version": __version__,
            "description": "Self-hosted SMS two-factor authentication.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "otpk_<id>_<secret>"},
                "basic": {"type": "http", "scheme": "basic", "description": "key id : secret"},
                "metrics": {"type": "http", "scheme": "bearer", "description": "OTP_METRICS_TOKEN"},
            }
        },
        "paths": {
            "/v1/verifications": {
                "post": _op(
                    "Start (or resend) a verification", 201, VERIFICATION, START, 400, 401, 403, 413, 415, 429, 503
                )
            },
            "/v1/verifications/check": {
                "post": _op("Check a code", 200, CHECK_RESULT, CHECK, 400, 401, 404, 409, 413, 415, 429, 503)
            },
            "/v1/verifications/{id}": {
                "get": {
                    **_op("Read a verification", 200, VERIFICATION, None, 400, 401, 404, 503),
                    "parameters": ID_PARAM,
                }
            },
            "/v1/verifications/{id}/cancel": {
                "post": {
                    **_op("Cancel a pending verification", 200, VERIFICATION, None, 400, 401, 404, 409, 503),
                    "parameters": ID_PARAM,
                }
            },
            "/v1/tokens/verify": {
                "post": _op("Verify an approval token", 200, TOKEN_RESULT, TOKEN_VERIFY, 400, 401, 413, 415, 503)
            },
            "/v1/audit": {
                "get": {
                    **_op("Read the audit log, newest first (admin)", 200, AUDIT_PAGE, None, 400, 401, 403, 503),
                    "parameters": AUDIT_PARAMS,
                }
            },
            "/v1/stats/overview": {
                "get": {
                    **_op(
                        "Dashboard overview: verifications, delivery funnel, refusals (admin)",
                        200,
                        stats_api.OVERVIEW_SCHEMA,
                        None,
                        400,
                        401,
                        403,
                        503,
                    ),
                    "parameters": [stats_api.SINCE_PARAM],
                }
            },
            "/v1/safelist": {
                "get": _op("List the safe list (admin)", 200, SAFE_LIST, None, 401, 403, 503),
                "post": _op(
                    "Add a number or prefix to the safe list (admin)",
                    201,
                    SAFE_ENTRY,
                    SAFE_ENTRY,
                    400,
                    401,
                    403,
                    413,
                    415,
                    503,
                ),
            },
            "/v1/safelist/{entry}": {
                "delete": {
                    **_op("Remove a safe-list entry (admin)", 200, SAFE_REMOVED, None, 401, 403, 404, 503),
                    "parameters": [{"name": "entry", "in": "path", "required": True, "schema": {"type": "string"}}],
                }
            },
            "/v1/stats/conversion": {
                "get": {
                    **_op(
                        "Sends, approvals and conversion of a country or prefix (admin)",
                        200,
                        CONVERSION,
                        None,
                        400,
                        401,
                        403,
                        503,
                    ),
                    "parameters": [*SCOPE_PARAMS, SINCE_PARAM],
                }
            },
            "/v1/blocks": {
                "delete": {
                    **_op(
                        "Lift the SMS-pumping block of a country or prefix (admin)",
                        200,
                        {"type": "object"},
                        None,
                        400,
                        401,
                        403,
                        503,
                    ),
                    "parameters": SCOPE_PARAMS,
                }
            },
            "/webhooks/twilio/status": {
                "post": {
                    **CALLBACK,
                    "responses": {
                        "200": {"description": "applied", **_json({"type": "object"})},
                        **_errors(400, 403, 413, 503),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics: Authorization: Bearer <OTP_METRICS_TOKEN>; 404 while that is unset",
                    "security": [{"metrics": []}],
                    "responses": {
                        "200": {
                            "description": "text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(401, 404),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Process alive",
                    "security": [],
                    "responses": {"200": {"description": "ok", **_json(health)}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Redis reachable and a worker heartbeat fresh",
                    "security": [],
                    "responses": {
                        "200": {"description": "ready", **_json(health)},
                        "503": {"description": "not ready", **_json(health)},
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "ok"}},
                }
            },
        },
    }
