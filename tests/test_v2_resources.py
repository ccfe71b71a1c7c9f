"""/v2 resources beyond verifications, driven by the official `twilio` SDK against a served otp
and held to Twilio's OpenAPI document (``test_twilio_compat``'s contract): the Safe List, on otp's
one safe list, the Templates list from otp's own SMS text, and Twilio's 404 that names each
resource otp doesn't offer."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from test_twilio_compat import RELAXED, V2, new_number, refused, serve, service
from twilio.base.exceptions import TwilioException, TwilioRestException

from otp.core import audit, messages
from otp.core.audit_events import AuditFilter
from otp.core.phone import mask_in_record
from otp.storage.safelist import SafeList
from otp.storage.store import Store

GN_SID = re.compile(r"GN[0-9a-f]{32}")


@pytest.fixture
def v2(redis_url: str) -> Iterator[V2]:
    # France outside the allowed countries: a safe-listed number must get through anyway.
    with serve(redis_url, limits={**RELAXED, "allowed_countries": frozenset({"US"})}) as live:
        yield live


def _admin_events(url: str) -> list[tuple[str | None, str | None, str | None]]:
    async def read() -> list[tuple[str | None, str | None, str | None]]:
        client = aioredis.Redis.from_url(url)
        try:
            events, _ = await audit.read(Store(client, partitions=16), AuditFilter(event="admin"))
        finally:
            await client.aclose()
        return [(e.get("action"), e.get("entry"), e.get("key")) for e in reversed(events)]

    return asyncio.run(read())


def _entries(url: str) -> frozenset[str]:
    async def read() -> frozenset[str]:
        client = aioredis.Redis.from_url(url)
        try:
            # The whole safe list as /v1/safelist and `otp safelist list` show it: prefixes and numbers.
            safe_list = SafeList(Store(client, partitions=16))
            return await safe_list.entries() | await safe_list.numbers()
        finally:
            await client.aclose()

    return asyncio.run(read())


# -- the safe list --------------------------------------------------------------------------------


def test_safe_list_create_fetch_delete_on_otps_one_safe_list(v2: V2, redis_url: str) -> None:
    admin = v2.client(v2.admin).verify.v2
    number = "+33612345678"
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    geo = refused(lambda: verify.verifications.create(to=number, channel="sms"))
    assert (geo.status, geo.code) == (403, 60605)

    created = admin.safelist.create(phone_number=number)
    assert GN_SID.fullmatch(created.sid) and created.phone_number == number
    assert created.url == f"{v2.base}/v2/SafeList/Numbers/{number}"
    assert number in _entries(redis_url)  # the list /v1/safelist and `otp safelist` show
    # The safe list lifts the geo permission, as Twilio's does.
    assert verify.verifications.create(to=number, channel="sms").status == "pending"

    fetched = admin.safelist(number).fetch()
    assert (fetched.sid, fetched.phone_number, fetched.url) == (created.sid, number, created.url)
    again = refused(lambda: admin.safelist.create(phone_number=number))
    assert (again.status, again.code) == (400, 60411)

    assert admin.safelist(number).delete() is True
    assert number not in _entries(redis_url)
    for call in (lambda: admin.safelist(number).fetch(), lambda: admin.safelist(number).delete()):
        gone = refused(call)
        assert (gone.status, gone.code) == (404, 20404)

    # Audited by the admin account, the whole number masked as every audit record masks one.
    assert _admin_events(redis_url) == [
        ("safelist_add", mask_in_record(number), v2.admin[0]),
        ("safelist_remove", mask_in_record(number), v2.admin[0]),
    ]


def test_safe_list_sees_entries_made_through_v1(v2: V2, redis_url: str) -> None:
    async def add() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await SafeList(Store(client, partitions=16)).add("+1415555")
        await client.aclose()

    asyncio.run(add())
    admin = v2.client(v2.admin).verify.v2
    assert admin.safelist("+1415555").fetch().phone_number == "+1415555"
    # A prefix is /v1's to add: /v2 takes a whole number, so a truncated one can't list a range.
    error = refused(lambda: admin.safelist.create(phone_number="+1415"))
    assert (error.status, error.code) == (400, 60200) and "`PhoneNumber`" in error.msg


def test_safe_list_is_for_admin_accounts_only(v2: V2) -> None:
    number = new_number()
    for who in (v2.account, v2.other):
        safelist = v2.client(who).verify.v2.safelist
        for call in (
            lambda s=safelist: s.create(phone_number=number),
            lambda s=safelist: s(number).fetch(),
            lambda s=safelist: s(number).delete(),
        ):
            error = refused(call)
            assert (error.status, error.code) == (403, 20403)
    unauthenticated = v2.raw("GET", f"/v2/SafeList/Numbers/{number}")
    assert (unauthenticated.status_code, unauthenticated.json()["code"]) == (401, 20003)


def test_safe_list_refuses_bad_numbers_naming_the_parameter(v2: V2) -> None:
    admin = v2.client(v2.admin).verify.v2
    for bad in ("", "hello", "+1", "0033612345678", "+1415555012", "+" + "1" * 20):
        error = refused(lambda bad=bad: admin.safelist.create(phone_number=bad))
        assert (error.status, error.code) == (400, 60200), bad
        assert "`PhoneNumber`" in error.msg, error.msg
    for bad in ("hello", "+", "+0123"):
        error = refused(lambda bad=bad: admin.safelist(bad).fetch())
        assert (error.status, error.code) == (400, 60200), bad
        assert "`PhoneNumber`" in error.msg, error.msg
    wrong_method = v2.raw("PUT", "/v2/SafeList/Numbers", auth=v2.admin)
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, 20004)


# -- resources otp doesn't offer ------------------------------------------------------------------


def _sdk_error(call: Callable[[], Any]) -> tuple[int, int, str]:
    """The SDK raises TwilioRestException for a failed call, but a failed list page is a plain
    TwilioException holding the response."""
    with pytest.raises(TwilioException) as caught:
        call()
    error = caught.value
    if isinstance(error, TwilioRestException):
        return error.status, error.code, error.msg
    body = json.loads(error.args[1].text)
    return int(body["status"]), int(body["code"]), str(body["message"])


def test_resources_otp_does_not_offer_say_so(v2: V2) -> None:
    client = v2.client()
    sid = service(client).sid
    verify = client.verify.v2
    svc = verify.services(sid)
    for call in (
        lambda: svc.access_tokens.create(identity="u1", factor_type="push"),
        lambda: svc.entities.create(identity="u1"),
        lambda: svc.entities("u1").factors.list(),
        lambda: svc.entities("u1").challenges.list(),
        lambda: verify.forms("form-push").fetch(),
    ):
        status, code, message = _sdk_error(call)
        assert (status, code) == (404, 20404)
        assert "not offered by otp" in message, message
    # Any method: it is the resource that is missing, not the method.
    for method in ("GET", "POST", "DELETE"):
        answer = v2.raw(method, f"/v2/Services/{sid}/Entities/u1/Factors/YF" + "0" * 32, auth=v2.account)
        assert (answer.status_code, answer.json()["code"]) == (404, 20404)
        assert "Entities" in answer.json()["message"]
    # A path that is nothing at Twilio keeps the generic answer.
    nothing = v2.raw("GET", "/v2/Nothing", auth=v2.account).json()
    assert nothing["code"] == 20404 and "not offered" not in nothing["message"]


# -- templates ------------------------------------------------------------------------------------


def test_templates_list_otps_template_in_each_locale(v2: V2) -> None:
    verify = v2.client().verify.v2
    listed = verify.templates.list()
    assert len(listed) == len(messages.CATALOGUE)  # the others: tests/test_v2_templates.py
    [template] = [t for t in listed if t.friendly_name == "otp verification code"]
    assert re.fullmatch(r"HJ[0-9a-f]{32}", template.sid) and template.account_sid == v2.account[0]
    assert template.channels == ["sms"]
    assert set(template.translations) == set(messages.TEMPLATES)
    english = template.translations["en"]
    assert english["text"] == "{{code}} is your {{friendly_name}} verification code."
    assert (english["is_default_translation"], english["status"], english["locale"]) == (True, "approved", "en")
    assert not template.translations["fr"]["is_default_translation"]
    # The SMS a start sends is the template's text.
    to = new_number()
    verify.services(service(v2.client(), friendly_name="Acme").sid).verifications.create(to=to, channel="sms")
    code = v2.code(to)
    assert v2.sms(to).startswith(english["text"].replace("{{code}}", code).replace("{{friendly_name}}", "Acme"))

    assert [t.sid for t in verify.templates.list(friendly_name=template.friendly_name.upper())] == [template.sid]
    assert verify.templates.list(friendly_name="Base Verification Template 2") == []
    # Every account sees the same template: it is otp's, not the account's.
    assert [t.sid for t in v2.client(v2.other).verify.v2.templates.list()] == [t.sid for t in listed]
    for query, field in (("PageSize=0", "PageSize"), ("Page=-1", "Page"), ("PageToken=abc", "PageToken")):
        answer = v2.raw("GET", f"/v2/Templates?{query}", auth=v2.account).json()
        assert answer["code"] == 60200 and f"`{field}`" in answer["message"], answer
    assert v2.raw("GET", "/v2/Templates").status_code == 401
    assert v2.raw("POST", "/v2/Templates", auth=v2.account).json()["code"] == 20004
