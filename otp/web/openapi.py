"""The OpenAPI document: the route table below plus the schemas of otp/web/models.py (msgspec's
JSON Schema 2020-12, which OpenAPI 3.1 takes as it is). Bodies, answers and query parameters
come from the same Structs the handlers parse and render, so the two cannot disagree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from otp import __version__
from otp.web import models

REF = "#/components/schemas/{name}"
REASONS = {
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
BODY_ERRORS = (400, 413, 415)


@dataclass(frozen=True)
class Op:
    """One operation of the API: ``reply`` answers with status ``ok``; ``query`` documents the
    query string; ``path`` the path parameters (name → schema)."""

    method: str
    path: str
    summary: str
    reply: Any
    ok: int = 200
    body: type[models.Request] | None = None
    errors: Sequence[int] = (400, 401, 503)
    query: type[models.Request] | None = None
    path_params: Sequence[tuple[str, dict[str, Any]]] = ()


ID = (("id", {"type": "string", "pattern": f"^{models.VERIFICATION_ID}$"}),)
ADMIN = (400, 401, 403, 503)

OPERATIONS = (
    Op(
        "post",
        "/v1/verifications",
        "Start (or resend) a verification",
        models.Verification,
        201,
        models.StartRequest,
        (*BODY_ERRORS, 401, 403, 429, 503),
    ),
    Op(
        "post",
        "/v1/verifications/check",
        "Check a code",
        models.CheckResult,
        body=models.CheckRequest,
        errors=(*BODY_ERRORS, 401, 404, 409, 429, 503),
    ),
    Op(
        "get",
        "/v1/verifications/{id}",
        "Read a verification",
        models.Verification,
        errors=(400, 401, 404, 503),
        path_params=ID,
    ),
    Op(
        "post",
        "/v1/verifications/{id}/cancel",
        "Cancel a pending verification",
        models.Verification,
        errors=(400, 401, 404, 409, 503),
        path_params=ID,
    ),
    Op(
        "post",
        "/v1/tokens/verify",
        "Verify an approval token",
        models.TokenResult,
        body=models.TokenVerifyRequest,
        errors=(*BODY_ERRORS, 401, 503),
    ),
    Op(
        "get",
        "/v1/audit",
        "Read the audit log, newest first (admin)",
        models.AuditPage,
        errors=ADMIN,
        query=models.AuditQuery,
    ),
    Op(
        "get",
        "/v1/stats/overview",
        "Dashboard overview: verifications, delivery funnel, refusals (admin)",
        models.Overview,
        errors=ADMIN,
        query=models.OverviewQuery,
    ),
    Op("get", "/v1/safelist", "List the safe list (admin)", models.SafeList, errors=(401, 403, 503)),
    Op(
        "post",
        "/v1/safelist",
        "Add a number or prefix to the safe list (admin)",
        models.SafeEntry,
        201,
        models.SafeEntryRequest,
        (*BODY_ERRORS, 401, 403, 503),
    ),
    Op(
        "delete",
        "/v1/safelist/{entry}",
        "Remove a safe-list entry (admin)",
        models.SafeRemoved,
        errors=(401, 403, 404, 503),
        path_params=(("entry", {"type": "string"}),),
    ),
    Op(
        "get",
        "/v1/optouts/{number}",
        "Whether a number replied STOP and its starts are refused (admin)",
        models.OptOut,
        errors=(400, 401, 403, 503),
        path_params=(("number", {"type": "string"}),),
        query=models.OptOutQuery,
    ),
    Op(
        "delete",
        "/v1/optouts/{number}",
        "Clear a number's opt-out once it texted START (admin)",
        models.OptOut,
        errors=(400, 401, 403, 404, 503),
        path_params=(("number", {"type": "string"}),),
        query=models.OptOutQuery,
    ),
    Op(
        "get",
        "/v1/stats/conversion",
        "Sends, approvals and conversion of a country or prefix (admin)",
        models.Conversion,
        errors=ADMIN,
        query=models.ConversionQuery,
    ),
    Op("get", "/v1/budgets", "Today's spend per budget scope (admin)", models.BudgetStatus, errors=(401, 403, 503)),
    Op(
        "put",
        "/v1/budgets/keys/{key_id}",
        "Set an API key's daily spend budget (admin)",
        models.BudgetScope,
        body=models.BudgetRequest,
        errors=(*BODY_ERRORS, 401, 403, 404, 503),
        path_params=(("key_id", {"type": "string"}),),
    ),
    Op(
        "delete",
        "/v1/budgets/keys/{key_id}",
        "Remove an API key's own daily budget (admin)",
        models.BudgetScope,
        errors=(401, 403, 404, 503),
        path_params=(("key_id", {"type": "string"}),),
    ),
    Op("get", "/v1/webhook", "The calling key's webhook", models.KeyWebhook, errors=(401, 404, 503)),
    Op(
        "put",
        "/v1/webhook",
        "Set the calling key's webhook (its events, signed with the key)",
        models.KeyWebhook,
        body=models.WebhookRequest,
        errors=(*BODY_ERRORS, 401, 503),
    ),
    Op("delete", "/v1/webhook", "Remove the calling key's webhook", models.WebhookRemoved, errors=(401, 503)),
    Op(
        "delete",
        "/v1/blocks",
        "Lift the SMS-pumping block of a country or prefix (admin)",
        models.Unblocked,
        errors=ADMIN,
        query=models.ScopeQuery,
    ),
)

# Outside /v1: a Twilio form, plain text, and the probes.
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
                    "properties": {name: {"type": "string"} for name in ("MessageSid", "MessageStatus", "ErrorCode")},
                }
            }
        },
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _ref(model: Any) -> dict[str, Any]:
    return {"$ref": REF.format(name=model.__name__)}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": REASONS[c], **_json(_ref(models.Error))} for c in codes}


def _query(model: type[models.Request], components: dict[str, Any]) -> list[dict[str, Any]]:
    """A query-string Struct as parameters: each field, its null branch dropped (absent is null)."""
    out = []
    for name, prop in components[model.__name__]["properties"].items():
        (schema,) = (s for s in prop.get("anyOf", [prop]) if s.get("type") != "null")
        schema = dict(schema)
        param = {"name": name, "in": "query", "schema": schema}
        if "description" in schema:
            param["description"] = schema.pop("description")
        out.append(param)
    return out


def _operation(op: Op, components: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "summary": op.summary,
        "security": [{"bearer": []}, {"basic": []}],
        "responses": {str(op.ok): {"description": "ok", **_json(_ref(op.reply))}, **_errors(*op.errors)},
    }
    if op.body is not None:
        doc["requestBody"] = {"required": True, **_json(_ref(op.body))}
    params = [{"name": n, "in": "path", "required": True, "schema": s} for n, s in op.path_params]
    if op.query is not None:
        params += _query(op.query, components)
    if params:
        doc["parameters"] = params
    return doc


def _others() -> dict[str, Any]:
    health = _json(_ref(models.Health))
    return {
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
                    "200": {"description": "text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    **_errors(401, 404),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Process alive (under `otp serve`'s embedded Redis, that Redis too: checks.embedded_redis; "
                "otherwise checks is {})",
                "security": [],
                "responses": {"200": {"description": "ok", **health}, "503": {"description": "not alive", **health}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Every Redis primary answers (Cluster: each one, cluster ok) and its configuration keeps "
                "otp's guarantees (checks.redis, checks.redis_config); workers are not part of it "
                "(otp_worker_last_seen_seconds in /metrics)",
                "security": [],
                "responses": {"200": {"description": "ready", **health}, "503": {"description": "not ready", **health}},
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "security": [], "responses": {"200": {"description": "ok"}}}
        },
    }


def spec() -> dict[str, Any]:
    used = {models.Error, models.Health}
    used |= {m for op in OPERATIONS for m in (op.reply, op.body, op.query) if m is not None}
    _, schemas = msgspec.json.schema_components(sorted(used, key=lambda m: m.__name__), ref_template=REF)
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, schemas)
    # The query Structs document parameters, not bodies: they are not components of their own.
    for op in OPERATIONS:
        if op.query is not None:
            schemas.pop(op.query.__name__, None)
    return {
        "openapi": "3.1.0",
        "info": {"title": "otp", "version": __version__, "description": "Self-hosted SMS two-factor authentication."},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "otpk_<id>_<secret>"},
                "basic": {"type": "http", "scheme": "basic", "description": "key id : secret"},
                "metrics": {"type": "http", "scheme": "bearer", "description": "OTP_METRICS_TOKEN"},
            },
        },
        "paths": {**paths, **_others()},
    }
