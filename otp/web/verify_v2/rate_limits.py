"""/v2/Services/{ServiceSid}/RateLimits and their Buckets (``otp.core.rate_limits``): a service's
own send limits, seen and edited only through the account that owns the service (another
account's service is a 404). ``{Sid}`` of a rate limit is its ``RK…`` sid or its unique name."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otp.core import rate_limits
from otp.core.services import Service
from otp.storage.store import Store
from otp.web.verify_v2 import context, forms
from otp.web.verify_v2.shapes import bucket_json, meta, rate_limit_json


async def _scope(request: Request) -> tuple[Store, Service, float]:
    account = await context.account(request)
    service = await context.service(request, account)
    return context.store(request), service, context.verifier(request).clock()


def _ref(request: Request) -> str:
    return str(request.path_params["RateLimitSid"])


def _bucket_sid(request: Request) -> str:
    return str(request.path_params["Sid"])


async def create_rate_limit(request: Request) -> Response:
    store, service, now = await _scope(request)
    form = await forms.form(request)
    name, text = rate_limits.unique_name(form), rate_limits.description(form)
    limit = await rate_limits.create(store, service, name, text, now=now)
    return JSONResponse(rate_limit_json(limit, service, context.base(request)), status_code=201)


async def list_rate_limits(request: Request) -> Response:
    store, service, _ = await _scope(request)
    page_size, page = forms.paging(request.query_params)
    found, total = await rate_limits.page(store, service, offset=page * page_size, count=page_size)
    more = (page + 1) * page_size < total
    envelope = meta(request, "rate_limits", page, page_size, previous="", current="", following="" if more else None)
    base = context.base(request)
    return JSONResponse({"rate_limits": [rate_limit_json(r, service, base) for r in found], "meta": envelope})


async def fetch_rate_limit(request: Request) -> Response:
    store, service, now = await _scope(request)
    limit = await rate_limits.get(store, service, _ref(request), now=now)
    return JSONResponse(rate_limit_json(limit, service, context.base(request)))


async def update_rate_limit(request: Request) -> Response:
    store, service, now = await _scope(request)
    text = rate_limits.description(await forms.form(request))
    limit = await rate_limits.update(store, service, _ref(request), text, now=now)
    return JSONResponse(rate_limit_json(limit, service, context.base(request)))


async def delete_rate_limit(request: Request) -> Response:
    store, service, now = await _scope(request)
    await rate_limits.delete(store, service, _ref(request), now=now)
    return Response(status_code=204)


async def create_bucket(request: Request) -> Response:
    store, service, now = await _scope(request)
    params = rate_limits.bucket_params(await forms.form(request), creating=True)
    limit, bucket = await rate_limits.create_bucket(store, service, _ref(request), params, now=now)
    return JSONResponse(bucket_json(bucket, limit, service, context.base(request)), status_code=201)


async def list_buckets(request: Request) -> Response:
    store, service, now = await _scope(request)
    page_size, page = forms.paging(request.query_params)
    limit = await rate_limits.get(store, service, _ref(request), now=now)
    found = limit.buckets[page * page_size : (page + 1) * page_size]
    more = (page + 1) * page_size < len(limit.buckets)
    envelope = meta(request, "buckets", page, page_size, previous="", current="", following="" if more else None)
    base = context.base(request)
    return JSONResponse({"buckets": [bucket_json(b, limit, service, base) for b in found], "meta": envelope})


async def fetch_bucket(request: Request) -> Response:
    store, service, now = await _scope(request)
    limit, bucket = await rate_limits.get_bucket(store, service, _ref(request), _bucket_sid(request), now=now)
    return JSONResponse(bucket_json(bucket, limit, service, context.base(request)))


async def update_bucket(request: Request) -> Response:
    store, service, now = await _scope(request)
    params = rate_limits.bucket_params(await forms.form(request), creating=False)
    limit, bucket = await rate_limits.update_bucket(
        store, service, _ref(request), _bucket_sid(request), params, now=now
    )
    return JSONResponse(bucket_json(bucket, limit, service, context.base(request)))


async def delete_bucket(request: Request) -> Response:
    store, service, now = await _scope(request)
    await rate_limits.delete_bucket(store, service, _ref(request), _bucket_sid(request), now=now)
    return Response(status_code=204)
