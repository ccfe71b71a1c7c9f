"""The OpenAPI document: /v1's route table (``openapi_v1``) plus the schemas of otp/web/models.py
(msgspec's JSON Schema 2020-12, which OpenAPI 3.1 takes as it is), so bodies, answers and query
parameters come from the same Structs the handlers parse and render and the two cannot disagree;
/v2 from Twilio's own document (``otp.web.verify_v2.openapi``); the paths outside both below, each
one entry of ``_others()``.

Every operation has an operationId and a tag; schemas are shared components (``$ref``), and so
are the error answers (``openapi_errors``: one per status, its codes from ``otp.errors.CODES``).
The examples are made by the handlers' own shaping (``openapi_examples``). Served at /openapi.json
and rendered at /docs (``otp.web.docs``).
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from otp import __version__
from otp.web import models, openapi_errors, openapi_examples, openapi_v1
from otp.web.openapi_v1 import error_refs, json_content, schema_ref
from otp.web.verify_v2 import openapi as v2

# The tags outside /v1 and /v2, after theirs on the docs page.
CALLBACKS = "Twilio callbacks"
OPERATIONS_TAG = "Operations"
OTHER_TAGS = {
    CALLBACKS: "Twilio's message status callbacks, checked with X-Twilio-Signature.",
    OPERATIONS_TAG: "Probes, metrics and this document.",
}
DESCRIPTION = """Self-hosted SMS two-factor authentication.

`/v1` is otp's own JSON API: authenticate with an API key (`Authorization: Bearer otpk_<id>_<secret>`,
from `otp keys create NAME`). Every refusal is a 4xx whose body names the field and a stable
`code` (`ErrorDetail` lists every code with its status); 429 and 503 carry `Retry-After`.

`/v2` is the Twilio Verify v2-compatible API: Twilio's SDKs work unchanged against it, with an
account SID and auth token from `otp keys create NAME --twilio` (HTTP Basic) and Twilio's error
codes."""


# Outside /v1: a Twilio form, plain text, and the probes.
CALLBACK_EXAMPLE = {"MessageSid": openapi_examples.SEND.message_sid, "MessageStatus": "delivered", "ErrorCode": ""}
CALLBACK = {
    "operationId": "twilioStatusCallback",
    "tags": [CALLBACKS],
    "summary": "Twilio message status callback (checked with X-Twilio-Signature)",
    "security": [],
    "parameters": [
        {
            "name": "v",
            "in": "query",
            "required": True,
            "schema": {"type": "string"},
            "example": openapi_examples.VERIFICATION.id,
        },
        {"name": "n", "in": "query", "required": True, "schema": {"type": "string"}, "example": "1"},
        {"name": "X-Twilio-Signature", "in": "header", "required": True, "schema": {"type": "string"}},
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {name: {"type": "string"} for name in ("MessageSid", "MessageStatus", "ErrorCode")},
                },
                "examples": {"delivered": {"value": CALLBACK_EXAMPLE}},
            }
        },
    },
}


def _get(operation_id: str, summary: str, responses: dict[str, Any], security: Any = ()) -> dict[str, Any]:
    """An operation outside /v1 and /v2: a GET of the Operations tag."""
    found = {"operationId": operation_id, "tags": [OPERATIONS_TAG], "summary": summary}
    return {"get": {**found, "security": list(security), "responses": responses}}


def _others() -> dict[str, Any]:
    health = schema_ref(models.Health)
    ok = {"status": "ok", "checks": {"redis": "ok", "redis_config": "ok"}}
    metrics = "# HELP otp_verifications_started_total Verifications started\n"
    return {
        "/webhooks/twilio/status": {
            "post": {
                **CALLBACK,
                "responses": {
                    "200": {"description": "applied", **json_content({"type": "object"}, {"status": "delivered"})},
                    **error_refs(400, 403, 413, 503),
                },
            }
        },
        "/metrics": _get(
            "getMetrics",
            "Prometheus metrics: Authorization: Bearer <OTP_METRICS_TOKEN>; 404 while that is unset",
            {
                "200": {
                    "description": "text format",
                    "content": {
                        "text/plain": {"schema": {"type": "string"}, "examples": {"example": {"value": metrics}}}
                    },
                },
                **error_refs(401, 404),
            },
            [{"metrics": []}],
        ),
        "/healthz": _get(
            "getHealth",
            "Process alive (under `otp serve`'s embedded Redis, that Redis too: checks.embedded_redis; otherwise "
            "checks is {})",
            {
                "200": {"description": "ok", **json_content(health, {"status": "ok", "checks": {}})},
                "503": {
                    "description": "not alive",
                    **json_content(health, {"status": "unavailable", "checks": {"embedded_redis": "failed"}}),
                },
            },
        ),
        "/readyz": _get(
            "getReadiness",
            "Every Redis primary answers (Cluster: each one, cluster ok) and its configuration keeps otp's "
            "guarantees (checks.redis, checks.redis_config); workers are not part of it "
            "(otp_worker_last_seen_seconds in /metrics)",
            {
                "200": {"description": "ready", **json_content(health, ok)},
                "503": {
                    "description": "not ready",
                    **json_content(
                        health,
                        {
                            "status": "unavailable",
                            "checks": {"redis": "ok", "redis_config": "failed: redis eviction policy (primary)"},
                        },
                    ),
                },
            },
        ),
        "/openapi.json": _get(
            "getOpenApi",
            "This document",
            {
                "200": {
                    "description": "ok",
                    **json_content({"type": "object"}, {"openapi": "3.1.0", "info": {"title": "otp"}}),
                }
            },
        ),
        "/.well-known/jwks.json": _get(
            "getJwks",
            "The public keys approval tokens (EdDSA JWTs) are signed with, to verify them offline",
            {
                "200": {
                    "description": "a JWK Set (RFC 7517); Cache-Control: public, max-age=300",
                    **json_content(JWKS, JWKS_EXAMPLE),
                }
            },
        ),
        "/docs": _get(
            "getDocs",
            "This document, rendered (Redoc)",
            {
                "200": {
                    "description": "the page",
                    "content": {
                        "text/html": {"schema": {"type": "string"}, "examples": {"page": {"value": "<!doctype html>"}}}
                    },
                }
            },
        ),
    }


def _tags() -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    described = {**openapi_v1.TAGS, **v2.TAGS, **OTHER_TAGS}
    groups = [
        {"name": "/v1: otp's API", "tags": list(openapi_v1.TAGS)},
        {"name": "/v2: Twilio Verify compatible", "tags": list(v2.TAGS)},
        {"name": "Operations", "tags": list(OTHER_TAGS)},
    ]
    return [{"name": name, "description": line} for name, line in described.items()], groups


# The approval tokens' public keys (otp.core.tokens.Tokens.jwks): Ed25519 JWKs, the newest first.
JWKS: dict[str, Any] = {
    "type": "object",
    "required": ["keys"],
    "properties": {
        "keys": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kty", "crv", "x", "kid", "alg", "use"],
                "properties": {
                    "kty": {"const": "OKP"},
                    "crv": {"const": "Ed25519"},
                    "x": {"type": "string", "description": "the public key, base64url"},
                    "kid": {"type": "string", "description": "RFC 7638 thumbprint"},
                    "alg": {"const": "EdDSA"},
                    "use": {"const": "sig"},
                },
            },
        }
    },
}
JWKS_EXAMPLE = {
    "keys": [
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
            "alg": "EdDSA",
            "use": "sig",
        }
    ]
}


def spec() -> dict[str, Any]:
    used = {models.Error, models.Health, *openapi_v1.models_used()}
    _, schemas = msgspec.json.schema_components(sorted(used, key=lambda m: m.__name__), ref_template=openapi_v1.REF)
    openapi_errors.describe_v1_codes(schemas)
    paths = openapi_v1.paths(schemas)
    # The query Structs document parameters, not bodies: they are not components of their own.
    for op in openapi_v1.OPERATIONS:
        if op.query is not None:
            schemas.pop(op.query.__name__, None)
    v2_paths, v2_schemas = v2.paths()
    schemas |= v2_schemas
    schemas[openapi_errors.TWILIO_ERROR] = openapi_errors.twilio_error_schema()
    paths |= v2_paths
    paths |= _others()
    tags, groups = _tags()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "otp",
            "version": __version__,
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        # Relative: the document describes the server that serves it, wherever that is.
        "servers": [{"url": "/"}],
        "tags": tags,
        "x-tagGroups": groups,
        "components": {
            "schemas": schemas,
            "responses": openapi_errors.responses(
                _statuses(paths, openapi_errors.v1_name), _statuses(paths, openapi_errors.v2_name)
            ),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "/v1: an API key, otpk_<id>_<secret>"},
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "/v2: account SID and auth token (otp keys create NAME --twilio); "
                    "/v1 also takes an API key's id and secret",
                },
                "metrics": {"type": "http", "scheme": "bearer", "description": "/metrics: OTP_METRICS_TOKEN"},
            },
        },
        "paths": paths,
    }


def _statuses(paths: dict[str, Any], name: Any) -> set[int]:
    """The error statuses whose shared response (named by ``name``) some operation refers to."""
    refs = {
        response.get("$ref", "")
        for item in paths.values()
        for operation in item.values()
        for response in operation["responses"].values()
    }
    return {status for status in openapi_errors.REASONS if openapi_errors.ref(name(status))["$ref"] in refs}


@functools.cache
def encoded() -> bytes:
    """The document as served: built once per process (it only changes with the code)."""
    return msgspec.json.encode(spec())
