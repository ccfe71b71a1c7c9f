"""The ``/v2`` part of the OpenAPI document: Twilio's own description of the routes otp serves,
with otp's errors, examples, security and tags added.

``twilio_openapi.json`` beside this file is derived from Twilio's OpenAPI document for Verify v2
(github.com/twilio/twilio-oai, spec/json/twilio_verify_v2.json, MIT; the commit is in its
``x-source``) by ``scripts/twilio-openapi-subset``: the operations of ``routes.routes`` (``served()``)
with their form bodies and success answers, and the schemas those reference, in OpenAPI 3.1.
tests/test_api_docs.py checks the file is what the script makes of today's route table. What
otp adds here: Twilio's error body with the codes otp answers (``openapi_errors``), answers made
by otp's own shaping (``openapi_examples``), HTTP Basic, and what otp refuses that Twilio takes.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from otp.web import openapi_errors
from otp.web.verify_v2 import openapi_examples, routes, verifications

SUBSET = Path(str(resources.files("otp.web.verify_v2") / "twilio_openapi.json"))
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
SECURITY: list[dict[str, list[str]]] = [{"basic": []}]

# The tags by the path's resource (its last literal segment that names one), each with its line on
# the docs page.
RESOURCES = {
    "VerificationCheck": "v2 Verifications",
    "Verifications": "v2 Verifications",
    "Buckets": "v2 Rate limits",
    "RateLimits": "v2 Rate limits",
    "MessagingConfigurations": "v2 Messaging configurations",
    "Webhooks": "v2 Webhooks",
    "Services": "v2 Services",
    "Attempts": "v2 Attempts",
    "SafeList": "v2 Safe list",
    "Templates": "v2 Templates",
}
TAGS = {
    "v2 Services": "Verify services: each is a tenant with its own verifications and limits.",
    "v2 Verifications": "Send a code by SMS and check it, as Twilio Verify does (sms only).",
    "v2 Rate limits": "Programmable Rate Limits and their Buckets.",
    "v2 Messaging configurations": "The Messaging Service a service's SMS go out with, per country.",
    "v2 Webhooks": "Verify events posted to the service's URLs.",
    "v2 Attempts": "Every send, its delivery and conversion, and their summary.",
    "v2 Safe list": "Numbers the fraud rules let through (admin accounts).",
    "v2 Templates": "otp's SMS templates, as Verification Templates.",
}
# Error statuses: what every operation may answer, what a body adds, and what some operations add.
ERRORS = (400, 401, 404, 503)
BODY_ERRORS = (408, 413, 415)
MORE_ERRORS = {
    "CreateService": (403,),
    "CreateVerification": (403, 429),
    "UpdateVerification": (403, 409),
    "CreateVerificationCheck": (429,),
    "CreateMessagingConfiguration": (409,),
    "CreateSafelist": (403,),
    "FetchSafelist": (403,),
    "DeleteSafelist": (403,),
}
NOT_OFFERED = ", ".join(f"`{name}`" for name in [*verifications.NOT_OFFERED, "Amount", "Payee"])
NOTES = {
    "CreateVerification": "otp sends SMS only (`Channel=sms`). It refuses, naming them, the parameters it doesn't "
    f"carry out: {NOT_OFFERED}, and `EnableSnaClientToken=true`.",
    "FetchVerification": "`Sid` is a `VE…` sid or, as at Twilio, the number the pending verification was sent to.",
}


def served() -> list[tuple[str, str]]:
    """(method, path) of every /v2 route, in the route table's order (its catch-all aside)."""
    found = []
    for route in routes.routes:
        if "{rest:path}" in route.path:
            continue
        found += [(method.lower(), route.path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


def tag(path: str) -> str:
    segments = [s for s in path.split("/") if s and not s.startswith("{")]
    return next(RESOURCES[s] for s in reversed(segments) if s in RESOURCES)


def _examples(media: dict[str, Any], example: Any) -> None:
    if example is not None:
        media["examples"] = {"example": {"value": example}}


def _operation(method: str, path: str, operation: dict[str, Any], examples: dict[str, Any]) -> dict[str, Any]:
    op_id = operation["operationId"]
    doc = {"operationId": op_id, "tags": [tag(path)], **operation, "security": SECURITY}
    # Twilio leaves one summary empty (UpdateWebhook): its operationId in words.
    doc["summary"] = doc.get("summary") or re.sub(r"(?<=[a-z])(?=[A-Z])", " ", op_id).capitalize()
    if op_id in NOTES:
        doc["description"] = f"{doc.get('description', '')}\n\n{NOTES[op_id]}".strip()
    if "requestBody" in doc:
        body = json.loads(json.dumps(doc["requestBody"]))
        _examples(body["content"][FORM], examples["requests"].get(op_id))
        doc["requestBody"] = body
    responses = {}
    for status, answer in doc["responses"].items():
        answer = json.loads(json.dumps(answer))
        if JSON in answer.get("content", {}):
            _examples(answer["content"][JSON], examples["replies"].get(op_id))
        responses[status] = answer
    statuses = (*ERRORS, *(BODY_ERRORS if method == "post" else ()), *MORE_ERRORS.get(op_id, ()))
    for status in sorted(statuses):
        responses[str(status)] = openapi_errors.ref(openapi_errors.v2_name(status))
    doc["responses"] = responses
    return doc


def paths() -> tuple[dict[str, Any], dict[str, Any]]:
    """The /v2 paths and the component schemas they reference."""
    subset = json.loads(SUBSET.read_text())
    examples = {"replies": openapi_examples.replies(), "requests": openapi_examples.requests()}
    found: dict[str, Any] = {}
    for method, path in served():
        found.setdefault(path, {})[method] = _operation(method, path, subset["paths"][path][method], examples)
    return found, subset["schemas"]
