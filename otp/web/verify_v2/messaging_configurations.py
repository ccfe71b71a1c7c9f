"""/v2/Services/{ServiceSid}/MessagingConfigurations: the Messaging Service (``MG…``) a service's
SMS to a country go out with, or to every other country (``all``); over
``otp.core.messaging_configs``. The service must be the caller's own (another account's is 404),
and so its configurations are invisible to every other account."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otp.core import messaging_configs
from otp.core.apikeys import ApiKey
from otp.core.services import Service
from otp.errors import InvalidInput
from otp.web.verify_v2 import context, forms
from otp.web.verify_v2.shapes import messaging_configuration_json, meta


def _now(request: Request) -> float:
    return context.verifier(request).clock()


async def _owned(request: Request) -> tuple[ApiKey, Service]:
    account = await context.account(request)
    return account, await context.service(request, account)


def _sender(request: Request, form: dict[str, str]) -> str:
    allowed: frozenset[str] = request.app.state.settings.twilio_messaging_services
    return messaging_configs.messaging_service_sid(forms.required(form, "MessagingServiceSid"), allowed)


def _path_country(request: Request) -> str:
    return messaging_configs.country(str(request.path_params["Country"]))


async def create_configuration(request: Request) -> Response:
    account, service = await _owned(request)
    form = await forms.form(request)
    country = messaging_configs.country(forms.required(form, "Country"))
    sid = _sender(request, form)
    config = await messaging_configs.create(context.store(request), service.sid, country, sid, now=_now(request))
    return JSONResponse(messaging_configuration_json(config, account.key_id, context.base(request)), status_code=201)


async def fetch_configuration(request: Request) -> Response:
    account, service = await _owned(request)
    config = await messaging_configs.fetch(context.store(request), service.sid, _path_country(request))
    return JSONResponse(messaging_configuration_json(config, account.key_id, context.base(request)))


async def update_configuration(request: Request) -> Response:
    account, service = await _owned(request)
    country = _path_country(request)
    sid = _sender(request, await forms.form(request))
    config = await messaging_configs.update(context.store(request), service.sid, country, sid, now=_now(request))
    return JSONResponse(messaging_configuration_json(config, account.key_id, context.base(request)))


async def delete_configuration(request: Request) -> Response:
    _, service = await _owned(request)
    await messaging_configs.delete(context.store(request), service.sid, _path_country(request))
    return Response(status_code=204)


async def list_configurations(request: Request) -> Response:
    account, service = await _owned(request)
    params = request.query_params
    page_size, page = forms.paging(params)
    if params.get("PageToken", "").strip():
        raise InvalidInput("is not a token from a previous page", field="PageToken")
    # At most one per country and `all`: the whole set is one bounded read, paged here.
    found = await messaging_configs.list_all(context.store(request), service.sid)
    shown = found[page * page_size : (page + 1) * page_size]
    base = context.base(request)
    more = (page + 1) * page_size < len(found)
    envelope = meta(
        request, "messaging_configurations", page, page_size, previous="", current="", following="" if more else None
    )
    return JSONResponse(
        {
            "messaging_configurations": [messaging_configuration_json(c, account.key_id, base) for c in shown],
            "meta": envelope,
        }
    )
