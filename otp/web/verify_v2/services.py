"""/v2/Services: a Verify service is a tenant (``otp.core.services``), owned by the account that
created it and invisible (404) to every other."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otp.core import services as service_records
from otp.core import services as service_rules
from otp.web.verify_v2 import context, forms
from otp.web.verify_v2.shapes import meta, service_json


def _now(request: Request) -> float:
    return context.verifier(request).clock()


async def create_service(request: Request) -> Response:
    account = await context.account(request)
    params = service_rules.validate(await forms.form(request), creating=True)
    service = await service_records.create(context.store(request), account.key_id, params, now=_now(request))
    return JSONResponse(service_json(service, context.base(request)), status_code=201)


async def fetch_service(request: Request) -> Response:
    account = await context.account(request)
    service = await context.service(request, account, "Sid")
    return JSONResponse(service_json(service, context.base(request)))


async def update_service(request: Request) -> Response:
    account = await context.account(request)
    service = await context.service(request, account, "Sid")
    params = service_rules.validate(await forms.form(request), creating=False)
    service = await service_records.update(context.store(request), service, params, now=_now(request))
    return JSONResponse(service_json(service, context.base(request)))


async def delete_service(request: Request) -> Response:
    account = await context.account(request)
    service = await context.service(request, account, "Sid")
    await service_records.delete(context.store(request), service)
    return Response(status_code=204)


async def list_services(request: Request) -> Response:
    account = await context.account(request)
    page_size, page = forms.paging(request.query_params)
    found, total = await service_records.list_for_account(
        context.store(request), account.key_id, offset=page * page_size, count=page_size
    )
    more = (page + 1) * page_size < total
    envelope = meta(request, "services", page, page_size, previous="", current="", following="" if more else None)
    base = context.base(request)
    return JSONResponse({"services": [service_json(s, base) for s in found], "meta": envelope})
