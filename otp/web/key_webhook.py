"""/v1/webhook: the calling API key's one webhook (otp.core.webhooks), set, read and removed by the
key itself. Its posts are signed like Twilio's (X-Twilio-Signature) with the whole API key
(``otpk_<id>_<secret>``) as the token: ``RequestValidator(api_key).validate(...)``. The key is
taken from the request that sets the webhook and kept sealed; revoking the key removes it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from otp.core import apikeys, urlguard
from otp.core import webhooks as hooks
from otp.core.verification import Verifier
from otp.errors import NotFound
from otp.storage.store import Store
from otp.web import models
from otp.web.body import read_model
from otp.web.v1 import iso


def _verifier(request: Request) -> Verifier:
    found: Verifier = request.app.state.verifier
    return found


def _store(request: Request) -> Store:
    found: Store = request.app.state.store
    return found


def _model(webhook: hooks.Webhook) -> models.KeyWebhook:
    return models.KeyWebhook(
        url=webhook.url,
        event_types=list(webhook.event_types),
        created_at=iso(webhook.created_ms / 1000) or "",
        updated_at=iso(webhook.updated_ms / 1000) or "",
    )


async def put_webhook(request: Request) -> Response:
    header = request.headers.get("authorization")
    key = await request.app.state.keys.authenticate(header)
    body = await read_model(request, models.WebhookRequest)
    allow_private = bool(request.app.state.settings.webhook_allow_private)
    url = await urlguard.check(body.url, "url", allow_private=allow_private)
    types = hooks.event_types(body.event_types, "event_types")
    key_id, secret = apikeys.credentials_from_header(header)
    now = _verifier(request).clock.now_ms()
    old = await hooks.get(_store(request), key.key_id, hooks.V1_SID)
    webhook = hooks.Webhook(
        sid=hooks.V1_SID,
        owner=key.key_id,
        key_id=key.key_id,
        friendly_name="",
        event_types=types,
        status="enabled",
        version="v2",
        url=url,
        created_ms=old.created_ms if old else now,
        updated_ms=now,
        # The token the tenant holds: the whole key (a Basic pair is the same id and secret).
        sealed_secret=hooks.seal_secret(_verifier(request).keyring, f"{apikeys.PREFIX}_{key_id}_{secret}"),
    )
    await hooks.save(_store(request), webhook, cap=1)
    return models.render(_model(webhook))


async def get_webhook(request: Request) -> Response:
    key = await request.app.state.keys.authenticate(request.headers.get("authorization"))
    webhook = await hooks.get(_store(request), key.key_id, hooks.V1_SID)
    if webhook is None:
        raise NotFound("this key has no webhook", field="webhook")
    return models.render(_model(webhook))


async def delete_webhook(request: Request) -> Response:
    key = await request.app.state.keys.authenticate(request.headers.get("authorization"))
    removed = await hooks.delete(_store(request), key.key_id, hooks.V1_SID)
    return models.render(models.WebhookRemoved(removed=removed))


async def webhook(request: Request) -> Response:
    # One route for the three methods, so a fourth gets a 405 whose Allow header names all three.
    handler = {"PUT": put_webhook, "GET": get_webhook, "DELETE": delete_webhook}[request.method]
    return await handler(request)


routes = [Route("/v1/webhook", webhook, methods=["GET", "PUT", "DELETE"])]
