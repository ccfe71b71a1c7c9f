"""/v2/Services/{ServiceSid}/Webhooks: where a service's Verify events are posted (otp.core.webhooks).

Twilio's Webhook resource, with otp's events (otp.audit_fields.WEBHOOK_EVENTS) as its EventTypes.
Each webhook is signed with the auth token of the request that created it (or last updated it),
kept sealed: the account's own RequestValidator checks otp's posts as it checks Twilio's. A
service's webhooks are its account's alone: another account's requests find no service (404).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otp.core import apikeys, urlguard
from otp.core import webhooks as hooks
from otp.core.services import Service
from otp.core.webhooks import Webhook
from otp.errors import NotFound
from otp.web.v1 import iso
from otp.web.verify_v2 import context, forms
from otp.web.verify_v2.shapes import meta

EVENT_TYPES = "EventTypes"
LISTS = frozenset({EVENT_TYPES})


def webhook_json(webhook: Webhook, service: Service, base: str) -> dict[str, Any]:
    return {
        "sid": webhook.sid,
        "service_sid": service.sid,
        "account_sid": service.account_sid,
        "friendly_name": webhook.friendly_name,
        "event_types": list(webhook.event_types),
        "status": webhook.status,
        "version": webhook.version,
        "webhook_url": webhook.url,
        "webhook_method": hooks.METHOD,
        "date_created": iso(webhook.created_ms / 1000),
        "date_updated": iso(webhook.updated_ms / 1000),
        "url": f"{base}/v2/Services/{service.sid}/Webhooks/{webhook.sid}",
    }


async def checked_url(request: Request, raw: str, field: str) -> str:
    """The SSRF rule (otp.core.urlguard), with the operator's OTP_WEBHOOK_ALLOW_PRIVATE."""
    allow_private = bool(request.app.state.settings.webhook_allow_private)
    return await urlguard.check(raw, field, allow_private=allow_private)


def sealed_secret(request: Request) -> str:
    """The secret of the request's own credentials, sealed: it signs the webhook's posts. The
    request was authenticated with it just before, so it is the key's current secret."""
    _, secret = apikeys.credentials_from_header(request.headers.get("authorization"))
    return hooks.seal_secret(context.verifier(request).keyring, secret)


async def _found(request: Request, service: Service) -> Webhook:
    sid = str(request.path_params["Sid"])
    webhook = await hooks.get(context.store(request), service.sid, sid)
    if webhook is None:
        raise NotFound(f"no webhook {sid} in this service", field="Sid")
    return webhook


def _now_ms(request: Request) -> int:
    return context.verifier(request).clock.now_ms()


async def create_webhook(request: Request) -> Response:
    account = await context.account(request)
    service = await context.service(request, account)
    form, lists = await forms.form_with_lists(request, LISTS)
    now = _now_ms(request)
    webhook = Webhook(
        sid=hooks.new_sid(),
        owner=service.sid,
        key_id=account.key_id,
        friendly_name=hooks.friendly_name(forms.required(form, "FriendlyName"), "FriendlyName"),
        event_types=hooks.event_types(lists.get(EVENT_TYPES, []), EVENT_TYPES),
        status=hooks.choice(form.get("Status"), "Status", hooks.STATUSES, "enabled"),
        version=hooks.choice(form.get("Version"), "Version", hooks.VERSIONS, "v2"),
        url=await checked_url(request, forms.required(form, "WebhookUrl"), "WebhookUrl"),
        created_ms=now,
        updated_ms=now,
        sealed_secret=sealed_secret(request),
    )
    await hooks.save(context.store(request), webhook)
    return JSONResponse(webhook_json(webhook, service, context.base(request)), status_code=201)


async def list_webhooks(request: Request) -> Response:
    account = await context.account(request)
    service = await context.service(request, account)
    page_size, page = forms.paging(request.query_params)
    found = await hooks.list_for(context.store(request), service.sid)  # a handful: MAX_PER_SERVICE
    shown = found[page * page_size : (page + 1) * page_size]
    more = (page + 1) * page_size < len(found)
    envelope = meta(request, "webhooks", page, page_size, previous="", current="", following="" if more else None)
    base = context.base(request)
    return JSONResponse({"webhooks": [webhook_json(w, service, base) for w in shown], "meta": envelope})


async def fetch_webhook(request: Request) -> Response:
    account = await context.account(request)
    service = await context.service(request, account)
    return JSONResponse(webhook_json(await _found(request, service), service, context.base(request)))


async def update_webhook(request: Request) -> Response:
    account = await context.account(request)
    service = await context.service(request, account)
    webhook = await _found(request, service)
    form, lists = await forms.form_with_lists(request, LISTS)
    changes: dict[str, Any] = {}
    if "FriendlyName" in form:
        changes["friendly_name"] = hooks.friendly_name(form["FriendlyName"], "FriendlyName")
    if EVENT_TYPES in lists:
        changes["event_types"] = hooks.event_types(lists[EVENT_TYPES], EVENT_TYPES)
    if "Status" in form:
        changes["status"] = hooks.choice(form["Status"], "Status", hooks.STATUSES, "enabled")
    if "Version" in form:
        changes["version"] = hooks.choice(form["Version"], "Version", hooks.VERSIONS, "v2")
    if "WebhookUrl" in form:
        changes["url"] = await checked_url(request, form["WebhookUrl"], "WebhookUrl")
    # Signed from now on with the secret of whoever updated it (the account's current auth token).
    changes.update(sealed_secret=sealed_secret(request), key_id=account.key_id)
    webhook = hooks.updated(webhook, _now_ms(request), **changes)
    await hooks.save(context.store(request), webhook)
    return JSONResponse(webhook_json(webhook, service, context.base(request)))


async def delete_webhook(request: Request) -> Response:
    account = await context.account(request)
    service = await context.service(request, account)
    webhook = await _found(request, service)
    if not await hooks.delete(context.store(request), service.sid, webhook.sid):
        raise NotFound(f"no webhook {webhook.sid} in this service", field="Sid")
    return Response(status_code=204)
