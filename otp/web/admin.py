"""Admin endpoints (admin API keys only): the safe list, pumping blocks, conversion stats."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from otp.audit_fields import AdminAction
from otp.core import admin_audit, optouts, validators
from otp.core.admin_audit import VIA_API, Actor
from otp.core.apikeys import ApiKey
from otp.core.audit import iso_ms
from otp.core.messaging_configs import MESSAGING_SERVICE_SID
from otp.core.phone import Phone, mask, parse
from otp.core.policy import Policy
from otp.core.validators import parse_duration
from otp.errors import Forbidden, InvalidInput, NotFound
from otp.web import models
from otp.web.body import check_query, read_model
from otp.web.models import render

# Still imported by the dashboard's fraud page, which matches upper-cased text with .match.
SAFE_ENTRY = validators.NUMBER_PREFIX
COUNTRY = re.compile(r"[A-Z]{2}\Z")


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


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


async def _audit_admin_action(
    request: Request, key: ApiKey | None, action: AdminAction, entry: str, *, via: str = VIA_API, **details: str
) -> None:
    """An admin action of this request's ``key`` (None: no key was recognised), through the one
    writer of admin events (otp.core.admin_audit), on the service's clock."""
    actor = Actor.of_key(key, via=via, address=client_address(request))
    clock = request.app.state.verifier.clock
    await admin_audit.record(request.app.state.store, action, actor=actor, target=entry, clock=clock, details=details)


async def list_safe(request: Request) -> Response:
    await admin(request)
    safe_list = _policy(request).safe_list
    return render(models.SafeList(entries=sorted(await safe_list.entries()), numbers=sorted(await safe_list.numbers())))


async def add_safe(request: Request) -> Response:
    key = await admin(request)
    body = await read_model(request, models.SafeEntryRequest)
    entry = validators.safe_entry(body.entry, "entry", whole_country=bool(body.country), confirm='send "country": true')
    await _policy(request).safe_list.add(entry)
    await _audit_admin_action(request, key, AdminAction.SAFELIST_ADD, entry)
    return render(models.SafeEntry(entry=entry), status_code=201)


async def remove_safe(request: Request) -> Response:
    key = await admin(request)
    entry = request.path_params["entry"]
    if not await _policy(request).safe_list.remove(entry):
        raise NotFound("not on the safe list", field="entry")
    await _audit_admin_action(request, key, AdminAction.SAFELIST_REMOVE, entry)
    return render(models.SafeRemoved(entry=entry, removed=True))


def _opt_out_number(request: Request) -> tuple[Phone, str]:
    """The number, and the sender scope: ``messaging_service_sid`` for a STOP to a /v2 service's
    MessagingConfiguration's Messaging Service, none for the operator's own sender."""
    check_query(request.query_params, models.OptOutQuery)
    scope = request.query_params.get("messaging_service_sid", "")
    if scope and not MESSAGING_SERVICE_SID.fullmatch(scope):
        raise InvalidInput(
            "must be a Messaging Service sid: MG followed by 32 hex digits", field="messaging_service_sid"
        )
    return parse(request.path_params["number"], default_region="", field="number"), scope


async def opt_out_status(request: Request) -> Response:
    await admin(request)
    phone, scope = _opt_out_number(request)
    verifier = request.app.state.verifier
    since = await optouts.marked_at(request.app.state.store, verifier.keyring, phone.e164, scope)
    return render(
        models.OptOut(to=mask(phone.e164), opted_out=since is not None, since=iso_ms(since) if since else None)
    )


async def clear_opt_out(request: Request) -> Response:
    """The user texted START to the sender: sends to them may go out again."""
    key = await admin(request)
    phone, scope = _opt_out_number(request)
    if not await optouts.clear(request.app.state.store, request.app.state.verifier.keyring, phone.e164, scope):
        raise NotFound("this number is not opted out", field="number")
    await _audit_admin_action(request, key, AdminAction.OPT_OUT_CLEAR, phone.e164)
    return render(models.OptOut(to=mask(phone.e164), opted_out=False, cleared=True))


async def opt_out(request: Request) -> Response:
    return await (opt_out_status if request.method == "GET" else clear_opt_out)(request)


def _scope(request: Request) -> tuple[str, str, dict[str, str]]:
    prefix = request.query_params.get("prefix", "")
    country = request.query_params.get("country", "")
    if bool(prefix) == bool(country):
        raise InvalidInput("give exactly one of country (ISO code) or prefix (+1415555)", field="country")
    if prefix:
        return "pfx", validators.number_prefix(prefix, "prefix"), {"prefix": prefix}
    country = validators.country(country, "country")
    return "cc", country, {"country": country}


async def conversion(request: Request) -> Response:
    await admin(request)
    # A misspelt parameter (sinse=7d) would otherwise be ignored and the answer be for 24 h.
    check_query(request.query_params, models.ConversionQuery)
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
    return render(models.Conversion(**stats))


async def unblock(request: Request) -> Response:
    key = await admin(request)
    check_query(request.query_params, models.ScopeQuery)
    kind, value, scope = _scope(request)
    removed = await _policy(request).unblock(kind, value)
    await _audit_admin_action(request, key, AdminAction.UNBLOCK, value)
    return render(models.Unblocked(**scope, was_blocked=bool(removed)))


async def safelist(request: Request) -> Response:
    # One route per path, so a wrong method gets a 405 whose Allow header names every method.
    return await (add_safe(request) if request.method == "POST" else list_safe(request))


routes = [
    Route("/v1/safelist", safelist, methods=["GET", "POST"]),
    Route("/v1/safelist/{entry}", remove_safe, methods=["DELETE"]),
    Route("/v1/stats/conversion", conversion, methods=["GET"]),
    Route("/v1/blocks", unblock, methods=["DELETE"]),
    Route("/v1/optouts/{number}", opt_out, methods=["GET", "DELETE"]),
]
