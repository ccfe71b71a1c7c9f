"""What every /v2 handler reads from the request: the Verifier, the Store, the calling account
(HTTP Basic, an account SID) and the service it names, which must be the account's own."""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.requests import Request

from otp.core import rate_limits
from otp.core import services as service_records
from otp.core.apikeys import ApiKey
from otp.core.rate_limits import RateLimit
from otp.core.services import Service
from otp.core.verification import Verifier
from otp.errors import NotFound, Unauthorized
from otp.storage.store import Store

ACCOUNT_SID = re.compile(r"^AC[0-9a-f]{32}$")


def verifier(request: Request) -> Verifier:
    found: Verifier = request.app.state.verifier
    return found


def store(request: Request) -> Store:
    found: Store = request.app.state.store
    return found


def base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def default_region(request: Request) -> str:
    return str(request.app.state.settings.default_region)


async def account(request: Request) -> ApiKey:
    try:
        key: ApiKey = await request.app.state.keys.authenticate(request.headers.get("authorization"))
    except Unauthorized as exc:
        # The key checker speaks /v1 ("send Bearer otpk_…"); a Twilio client needs Basic.
        raise Unauthorized(
            f"send HTTP Basic credentials: an account SID and its auth token ({exc.message})", field="Authorization"
        ) from None
    if not ACCOUNT_SID.match(key.key_id):
        # An otpk_ key of /v1 has no account SID to own services with.
        raise Unauthorized("use an account SID and auth token (otp keys create NAME --twilio)", field="Authorization")
    return key


def _owned(found: Service | None, owner: ApiKey, sid: str, param: str) -> Service:
    # Another account's service answers exactly like a missing one.
    if found is None or found.account_sid != owner.key_id:
        raise NotFound(f"no service {sid} in this account", field=param)
    return found


async def service(request: Request, owner: ApiKey, param: str = "ServiceSid") -> Service:
    sid = request.path_params[param]
    return _owned(await service_records.get(store(request), sid), owner, sid, param)


async def service_with_rate_limits(
    request: Request, owner: ApiKey, names: Iterable[str]
) -> tuple[Service, dict[str, RateLimit]]:
    """The service of the path and those of its Rate Limits ``names`` names, in one read."""
    sid = request.path_params["ServiceSid"]
    found, defined = await rate_limits.service_with(store(request), sid, names)
    return _owned(found, owner, sid, "ServiceSid"), defined
