"""The ``/v1`` operations of the OpenAPI document: the route table of otp's own API, each operation
with its operationId, tag, models (otp/web/models.py: bodies, answers, query strings) and error
statuses. ``paths()`` makes their part of the document; ``otp.web.openapi`` assembles the whole."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from otp.web import models, openapi_errors, openapi_examples

REF = openapi_errors.SCHEMA_REF
BODY_ERRORS = (400, 408, 413, 415)
JSON = "application/json"

# The tags, in the order the docs page lists them, each with its line there.
VERIFICATIONS = "Verifications"
TOKENS = "Approval tokens"
WEBHOOK = "Webhook"
SAFE_LIST = "Safe list"
OPT_OUTS = "Opt-outs"
FRAUD = "Fraud"
BUDGETS = "Budgets"
AUDIT = "Audit"
STATS = "Stats"
TAGS = {
    VERIFICATIONS: "Send a code by SMS, check what the user typed, read or cancel a verification.",
    TOKENS: "The signed approval token a successful check returns: verify it (once, with consume).",
    WEBHOOK: "The calling key's webhook: verification and message events, signed with the key.",
    SAFE_LIST: "Numbers and prefixes the fraud rules let through (admin keys).",
    OPT_OUTS: "Numbers that replied STOP, and clearing them once they texted START (admin keys).",
    FRAUD: "SMS-pumping blocks and the conversion of a destination (admin keys).",
    BUDGETS: "Daily SMS spend, and each API key's budget (admin keys).",
    AUDIT: "The audit log, newest first (admin keys).",
    STATS: "The dashboard's figures as JSON (admin keys).",
}
V1_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]


@dataclass(frozen=True)
class Op:
    """One operation of the API: ``reply`` answers with status ``ok``; ``query`` documents the
    query string; ``path_params`` the path parameters (name → schema, example)."""

    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    reply: Any
    ok: int = 200
    body: type[models.Request] | None = None
    errors: Sequence[int] = (400, 401, 503)
    query: type[models.Request] | None = None
    path_params: Sequence[tuple[str, dict[str, Any], str]] = ()


ID = (("id", {"type": "string", "pattern": f"^{models.VERIFICATION_ID}$"}, openapi_examples.VERIFICATION.id),)
NUMBER = (("number", {"type": "string"}, openapi_examples.NUMBER),)
KEY_ID = (("key_id", {"type": "string"}, openapi_examples.KEY_ID),)
ADMIN = (400, 401, 403, 503)

OPERATIONS = (
    Op(
        "post",
        "/v1/verifications",
        "startVerification",
        VERIFICATIONS,
        "Start (or resend) a verification",
        models.Verification,
        201,
        models.StartRequest,
        (*BODY_ERRORS, 401, 403, 429, 503),
    ),
    Op(
        "post",
        "/v1/verifications/check",
        "checkVerification",
        VERIFICATIONS,
        "Check a code",
        models.CheckResult,
        body=models.CheckRequest,
        errors=(*BODY_ERRORS, 401, 404, 409, 429, 503),
    ),
    Op(
        "get",
        "/v1/verifications/{id}",
        "getVerification",
        VERIFICATIONS,
        "Read a verification",
        models.Verification,
        errors=(400, 401, 404, 503),
        path_params=ID,
    ),
    Op(
        "post",
        "/v1/verifications/{id}/cancel",
        "cancelVerification",
        VERIFICATIONS,
        "Cancel a pending verification",
        models.Verification,
        errors=(400, 401, 404, 409, 503),
        path_params=ID,
    ),
    Op(
        "post",
        "/v1/tokens/verify",
        "verifyToken",
        TOKENS,
        "Verify an approval token",
        models.TokenResult,
        body=models.TokenVerifyRequest,
        errors=(*BODY_ERRORS, 401, 503),
    ),
    Op(
        "get",
        "/v1/audit",
        "listAuditEvents",
        AUDIT,
        "Read the audit log, newest first (admin)",
        models.AuditPage,
        errors=ADMIN,
        query=models.AuditQuery,
    ),
    Op(
        "get",
        "/v1/stats/overview",
        "getOverview",
        STATS,
        "Dashboard overview: verifications, delivery funnel, refusals (admin)",
        models.Overview,
        errors=ADMIN,
        query=models.OverviewQuery,
    ),
    Op(
        "get",
        "/v1/safelist",
        "listSafeList",
        SAFE_LIST,
        "List the safe list (admin)",
        models.SafeList,
        errors=(401, 403, 503),
    ),
    Op(
        "post",
        "/v1/safelist",
        "addSafeListEntry",
        SAFE_LIST,
        "Add a number or prefix to the safe list (admin)",
        models.SafeEntry,
        201,
        models.SafeEntryRequest,
        (*BODY_ERRORS, 401, 403, 503),
    ),
    Op(
        "delete",
        "/v1/safelist/{entry}",
        "removeSafeListEntry",
        SAFE_LIST,
        "Remove a safe-list entry (admin)",
        models.SafeRemoved,
        errors=(401, 403, 404, 503),
        path_params=(("entry", {"type": "string"}, "+1501712"),),
    ),
    Op(
        "get",
        "/v1/optouts/{number}",
        "getOptOut",
        OPT_OUTS,
        "Whether a number replied STOP and its starts are refused (admin)",
        models.OptOut,
        errors=(400, 401, 403, 503),
        path_params=NUMBER,
        query=models.OptOutQuery,
    ),
    Op(
        "delete",
        "/v1/optouts/{number}",
        "clearOptOut",
        OPT_OUTS,
        "Clear a number's opt-out once it texted START (admin)",
        models.OptOut,
        errors=(400, 401, 403, 404, 503),
        path_params=NUMBER,
        query=models.OptOutQuery,
    ),
    Op(
        "get",
        "/v1/stats/conversion",
        "getConversion",
        FRAUD,
        "Sends, approvals and conversion of a country or prefix (admin)",
        models.Conversion,
        errors=ADMIN,
        query=models.ConversionQuery,
    ),
    Op(
        "get",
        "/v1/budgets",
        "getBudgets",
        BUDGETS,
        "Today's spend per budget scope (admin)",
        models.BudgetStatus,
        errors=(401, 403, 503),
    ),
    Op(
        "put",
        "/v1/budgets/keys/{key_id}",
        "setKeyBudget",
        BUDGETS,
        "Set an API key's daily spend budget (admin)",
        models.BudgetScope,
        body=models.BudgetRequest,
        errors=(*BODY_ERRORS, 401, 403, 404, 503),
        path_params=KEY_ID,
    ),
    Op(
        "delete",
        "/v1/budgets/keys/{key_id}",
        "removeKeyBudget",
        BUDGETS,
        "Remove an API key's own daily budget (admin)",
        models.BudgetScope,
        errors=(401, 403, 404, 503),
        path_params=KEY_ID,
    ),
    Op(
        "get",
        "/v1/webhook",
        "getWebhook",
        WEBHOOK,
        "The calling key's webhook",
        models.KeyWebhook,
        errors=(401, 404, 503),
    ),
    Op(
        "put",
        "/v1/webhook",
        "setWebhook",
        WEBHOOK,
        "Set the calling key's webhook (its events, signed with the key)",
        models.KeyWebhook,
        body=models.WebhookRequest,
        errors=(*BODY_ERRORS, 401, 503),
    ),
    Op(
        "delete",
        "/v1/webhook",
        "removeWebhook",
        WEBHOOK,
        "Remove the calling key's webhook",
        models.WebhookRemoved,
        errors=(401, 503),
    ),
    Op(
        "delete",
        "/v1/blocks",
        "unblock",
        FRAUD,
        "Lift the SMS-pumping block of a country or prefix (admin)",
        models.Unblocked,
        errors=ADMIN,
        query=models.ScopeQuery,
    ),
)


def json_content(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["examples"] = {"example": {"value": example}}
    return {"content": {JSON: media}}


def schema_ref(model: Any) -> dict[str, Any]:
    return {"$ref": REF.format(name=model.__name__)}


def error_refs(*statuses: int) -> dict[str, Any]:
    return {str(status): openapi_errors.ref(openapi_errors.v1_name(status)) for status in statuses}


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


def _operation(op: Op, components: dict[str, Any], examples: dict[str, dict[str, Any]]) -> dict[str, Any]:
    reply = examples["replies"][op.operation_id]
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "tags": [op.tag],
        "summary": op.summary,
        "security": V1_SECURITY,
        "responses": {
            str(op.ok): {"description": "ok", **json_content(schema_ref(op.reply), reply)},
            **error_refs(*op.errors),
        },
    }
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            **json_content(schema_ref(op.body), examples["requests"][op.operation_id]),
        }
    params = [{"name": n, "in": "path", "required": True, "schema": s, "example": e} for n, s, e in op.path_params]
    if op.query is not None:
        params += _query(op.query, components)
    if params:
        doc["parameters"] = params
    return doc


def paths(components: dict[str, Any]) -> dict[str, Any]:
    """The /v1 paths; ``components`` holds the models' schemas (the query Structs' among them)."""
    examples = {"replies": openapi_examples.replies(), "requests": openapi_examples.requests()}
    found: dict[str, Any] = {}
    for op in OPERATIONS:
        found.setdefault(op.path, {})[op.method] = _operation(op, components, examples)
    return found


def models_used() -> set[Any]:
    return {m for op in OPERATIONS for m in (op.reply, op.body, op.query) if m is not None}
