"""/v2/SafeList/Numbers: Twilio's Safe List on otp's one safe list (``otp.storage.safelist``), the
set ``/v1/safelist``, the dashboard and ``otp safelist`` edit. Admin accounts only, as /v1's is
for admin keys: an entry lifts the fraud rules and geo permissions for every tenant. Each change
goes to the audit log as /v1's do.

Twilio's list holds whole numbers, so a create takes exactly one valid E.164 number and keeps it
as a whole number, matched exactly (``SafeList.add(exact=True)``): neither a truncated number nor
a whole number that starts longer ones lists a range. Prefixes stay /v1's to add; fetch and delete
take them too, so an admin sees and removes the entries /v1 made.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otp.audit_fields import AdminAction
from otp.core import validators
from otp.core.apikeys import ApiKey
from otp.core.phone import parse
from otp.core.policy import Policy
from otp.errors import Forbidden, InvalidInput, NotFound
from otp.storage.safelist import SafeList
from otp.web.admin import _audit_admin_action
from otp.web.verify_v2 import context, forms
from otp.web.verify_v2.errors import ALREADY_SAFE_LISTED
from otp.web.verify_v2.shapes import safelist_json

E164 = re.compile(r"\+[1-9][0-9]{1,14}\Z")
FIELD = "PhoneNumber"


def _safe_list(request: Request) -> SafeList:
    # The policy's own instance: an edit here reaches this process's next send at once.
    policy: Policy = request.app.state.policy
    return policy.safe_list


async def _admin(request: Request) -> ApiKey:
    account = await context.account(request)
    if not account.admin:
        raise Forbidden(
            "the Safe List is for admin accounts (otp keys create NAME --twilio --admin)", field="Authorization"
        )
    return account


def _sid(request: Request, entry: str) -> str:
    """``GN`` + 32 hex, derived from the entry: the same in every process and for entries /v1
    made, with nothing stored. Keyed, so a sid doesn't give the number away to a guesser."""
    key = context.verifier(request).keyring.current("safelist-sid")
    return "GN" + hmac.new(key, entry.encode(), hashlib.sha256).hexdigest()[:32]


def _answer(request: Request, entry: str, status_code: int = 200) -> Response:
    return JSONResponse(safelist_json(_sid(request, entry), entry, context.base(request)), status_code=status_code)


def _new_number(raw: str) -> str:
    if not E164.match(raw):
        raise InvalidInput("must be one phone number in E.164 format, like +15017122661", field=FIELD)
    # Whole and valid: parsing an E.164 number gives it back unchanged, or refuses it.
    return parse(raw, default_region="ZZ", field=FIELD).e164


def _entry(request: Request) -> str:
    raw = str(request.path_params[FIELD])
    return validators.number_prefix(raw, FIELD, what="an E.164 phone number, like +15017122661")


async def create_safelist(request: Request) -> Response:
    account = await _admin(request)
    number = _new_number(forms.required(await forms.form(request), FIELD))
    if not await _safe_list(request).add(number, exact=True):
        raise InvalidInput(f"{number} is already on the safe list", field=FIELD, code=ALREADY_SAFE_LISTED)
    await _audit_admin_action(request, account, AdminAction.SAFELIST_ADD, number)
    return _answer(request, number, status_code=201)


async def fetch_safelist(request: Request) -> Response:
    await _admin(request)
    entry = _entry(request)
    safe_list = _safe_list(request)
    # Fresh, not the sends' 5 s cache: an entry another process just made or removed shows.
    safe_list.invalidate()
    # Exactly the entry, as a delete would take it; covered by a prefix is not "on the list".
    if entry not in await safe_list.numbers() and entry not in await safe_list.entries():
        raise NotFound(f"{entry} is not on the safe list", field=FIELD)
    return _answer(request, entry)


async def delete_safelist(request: Request) -> Response:
    account = await _admin(request)
    entry = _entry(request)
    if not await _safe_list(request).remove(entry):
        raise NotFound(f"{entry} is not on the safe list", field=FIELD)
    await _audit_admin_action(request, account, AdminAction.SAFELIST_REMOVE, entry)
    return Response(status_code=204)
