"""``GET /v1/stats/overview?since=1h|24h|7d`` (admin keys): the dashboard's overview as JSON.

The same ``aggregates.overview`` the dashboard page renders, so a script and the page always
agree: verifications started / approved / expired…, the conversion rate, the delivery funnel
with Twilio error codes, refusals by rule and reason, and the chart's buckets.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from otp import audit_fields, delivery
from otp.core import stats as aggregates
from otp.errors import InvalidInput
from otp.storage.store import Store
from otp.web.admin import admin

PARAMS = frozenset({"since"})

# For otp/openapi.py: the response body and the query parameter of GET /v1/stats/overview.
_COUNT: dict[str, Any] = {"type": "integer"}
_RATE: dict[str, Any] = {"type": ["number", "null"], "description": "approved ÷ started; null when nothing started"}
_EVENT_COUNTS = audit_fields.VERIFICATION_EVENTS
_TOTALS: dict[str, Any] = {
    "type": "object",
    "required": [*_EVENT_COUNTS, "refused", "flagged", "conversion_rate"],
    "properties": {**dict.fromkeys((*_EVENT_COUNTS, "refused", "flagged"), _COUNT), "conversion_rate": _RATE},
}
_FUNNEL_STATES = delivery.FUNNEL


def _rows(*names: str) -> dict[str, Any]:
    fields = {name: _COUNT if name == "count" else {"type": "string"} for name in names}
    return {"type": "array", "items": {"type": "object", "required": list(names), "properties": fields}}


OVERVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["since", "window_hours", "from", "until", "totals", "delivery", "refusals", "flagged", "series"],
    "properties": {
        "since": {"type": "string", "enum": list(aggregates.WINDOWS)},
        "window_hours": _COUNT,
        "from": {"type": "string", "format": "date-time", "description": "start of the window's first hour"},
        "until": {"type": "string", "format": "date-time"},
        "totals": _TOTALS,
        "delivery": {
            "type": "object",
            "required": ["funnel", "other_states", "errors"],
            "properties": {
                "funnel": {
                    "type": "object",
                    "required": list(_FUNNEL_STATES),
                    "properties": dict.fromkeys(_FUNNEL_STATES, _COUNT),
                },
                "other_states": {"type": "object", "additionalProperties": _COUNT},
                "errors": _rows("status", "error_code", "count"),
            },
        },
        "refusals": _rows("rule", "reason", "count"),
        "flagged": _rows("scope", "reason", "count"),
        "series": {
            "type": "object",
            "required": ["bucket_hours", "buckets"],
            "properties": {
                "bucket_hours": _COUNT,
                "buckets": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["start", "hours", "in_window", *_FUNNEL_STATES, *_TOTALS["required"]],
                        "properties": {
                            "start": {"type": "string", "format": "date-time"},
                            "hours": _COUNT,
                            "in_window": {"type": "boolean"},
                            **dict.fromkeys(_FUNNEL_STATES, _COUNT),
                            **_TOTALS["properties"],
                        },
                    },
                },
            },
        },
    },
}
SINCE_PARAM: dict[str, Any] = {
    "name": "since",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": list(aggregates.WINDOWS), "default": aggregates.DEFAULT_WINDOW},
}


async def overview(request: Request) -> JSONResponse:
    await admin(request)
    unknown = sorted(set(request.query_params) - PARAMS)
    if unknown:
        # A misspelt parameter would otherwise be ignored and answer for the default window.
        raise InvalidInput("is not a parameter of this endpoint; known: since", field=unknown[0])
    since = request.query_params.get("since")
    if since is not None and since not in aggregates.WINDOWS:
        raise InvalidInput(f"must be one of {', '.join(aggregates.WINDOWS)}", field="since")
    store: Store = request.app.state.store
    now_ms = int(request.app.state.verifier.clock() * 1000)
    figures = await aggregates.overview(store, since, now_ms)
    return JSONResponse(figures.as_dict(), headers={"Cache-Control": "no-store"})


routes = [Route("/v1/stats/overview", overview, methods=["GET"])]
