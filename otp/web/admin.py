"""Admin endpoints (admin API keys only): the safe list, pumping blocks, conversion stats."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from otp.core.apikeys import ApiKey
from otp.core.policy import Policy
from otp.errors import Forbidden, InvalidInput, NotFound
from otp.settings import parse_duration
from otp.web.body import Field, json_body

SAFE_ENTRY = re.compile(r"^\+[1-9][0-9]{0,14}$")
COUNTRY = re.compile(r"^[A-Z]{2}$")


async def admin(request: Request) -> ApiKey:
    key: ApiKey = await request.app.state.keys.authenticate(request.headers.get("authorization"))
    if not key.admin:
        raise Forbidden("needs an admin API key (otp keys create NAME --admin)", field="Authorization")
    return key


def _policy(request: Request) -> Policy:
    policy: Policy = request.app.state.policy
    return policy


def _now_ms(request: Request) -> int:
    return int(request.app.state.verifier.clock() * 1000)


async def _audit_admin_action(request: Request, key: ApiKey, action: str, entry: str) -> None:
    store = request.app.state.store
    await store.audit_event(
        0,
        _now_ms(request),
        {"event": "admin", "action": action, "entry": entry, "key": key.key_id, "key_name": key.name},
    )


async def list_safe(request: Request) -> JSONResponse:
    await admin(request)
    return JSONResponse({"entries": sorted(await _policy(request).safe_list.entries())})


async def add_safe(request: Request) -> JSONResponse:
    key = await admin(request)
    data = await json_body(request, {"entry": Field(str, required=True, max_length=16)})
    entry = data["entry"]
    if not SAFE_ENTRY.match(entry):
        raise InvalidInput("must be an E.164 number or a prefix of one, like +1501712", field="entry")
    await _policy(request).safe_list.add(entry)
    await _audit_admin_action(request, key, "safelist_add", entry)
    return JSONResponse({"entry": entry}, status_code=201)


async def remove_safe(request: Request) -> JSONResponse:
    key = await admin(request)
    entry = request.path_params["entry"]
    if not await _policy(request).safe_list.remove(entry):
        raise NotFound("not on the safe list", field="entry")
    await _audit_admin_action(request, key, "safelist_remove", entry)
    return JSONResponse({"entry": entry, "removed": True})


def _scope(request: Request) -> tuple[str, str, dict[str, str]]:
    prefix = request.query_params.get("prefix", "")
    country = request.query_params.get("country", "").upper()
    if bool(prefix) == bool(country):
        raise InvalidInput("give exactly one of country (ISO code) or prefix (+1415555)", field="country")
    if prefix and not SAFE_ENTRY.match(prefix):
        raise InvalidInput("must be a number prefix like +1415555", field="prefix")
    if country and not COUNTRY.match(country):
        raise InvalidInput("must be a two-letter ISO country code", field="country")
    return ("pfx", prefix, {"prefix": prefix}) if prefix else ("cc", country, {"country": country})


async def conversion(request: Request) -> JSONResponse:
    await admin(request)
    _, _, scope = _scope(request)
    raw_since = request.query_params.get("since", "24h")
    try:
        hours = max(1, round(parse_duration(raw_since) / 3600))
    except ValueError as exc:
        raise InvalidInput(str(exc), field="since") from None
    limit = 25 if "prefix" in scope else 24 * 7
    if hours > limit:
        raise InvalidInput(f"can reach back at most {limit} hours for this scope", field="since")
    stats: dict[str, Any] = await _policy(request).conversion(
        country=scope.get("country", ""), prefix=scope.get("prefix", ""), since_hours=hours, now_ms=_now_ms(request)
    )
    return JSONResponse(stats)


async def unblock(request: Request) -> JSONResponse:
    key = await admin(request)
    kind, value, scope = _scope(request)
    removed = await _policy(request).unblock(kind, value)
    await _audit_admin_action(request, key, "unblock", value)
    return JSONResponse({**scope, "was_blocked": removed})


async def safelist(request: Request) -> JSONResponse:
    # One route per path, so a wrong method gets a 405 whose Allow header names every method.
    return await (add_safe(request) if request.method == "POST" else list_safe(request))


routes = [
    Route("/v1/safelist", safelist, methods=["GET", "POST"]),
    Route("/v1/safelist/{entry}", remove_safe, methods=["DELETE"]),
    Route("/v1/stats/conversion", conversion, methods=["GET"]),
    Route("/v1/blocks", unblock, methods=["DELETE"]),
]
