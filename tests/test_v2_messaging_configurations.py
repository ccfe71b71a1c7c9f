"""/v2/Services/{sid}/MessagingConfigurations through the official `twilio` SDK against a served
otp (each answer held to Twilio's OpenAPI document by ``test_twilio_compat``'s contract): the
Messaging Service a service's SMS to a country goes out with, seen at the Twilio stand-in; ``all``
for the other countries, else the operator's sender; private to the service's account."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from test_twilio_compat import DATE, V2, new_number, refused, serve, service
from twilio.base.exceptions import TwilioException, TwilioRestException

from otp.storage import keys as keyspace
from otp.storage import records

MG_GB = "MG" + "1" * 32
MG_GB_NEXT = "MG" + "2" * 32
MG_ALL = "MG" + "a" * 32
_GB_SUFFIXES = itertools.count(secrets.randbelow(500_000))


@pytest.fixture
def v2(redis_url: str) -> Iterator[V2]:
    with serve(redis_url) as live:
        yield live


def gb_number() -> str:
    """A UK mobile (07400: GB's; 07911 would be Guernsey's)."""
    return f"+447400{next(_GB_SUFFIXES) % 1_000_000:06d}"


def _sent_with(v2: V2, to: str, nth: int = 1) -> str | None:
    """The Messaging Service the stand-in got the nth SMS to ``to`` with (None: a From number)."""
    v2.code(to, nth)
    return [m.messaging_service_sid for m in v2.stub.messages if m.to == to][nth - 1]


def _sdk_error(call: Any) -> tuple[int, int]:
    """(status, code) of a failed SDK call: a failed list page is a plain TwilioException holding
    the response, the others a TwilioRestException."""
    with pytest.raises(TwilioException) as caught:
        call()
    error = caught.value
    if isinstance(error, TwilioRestException):
        return error.status, error.code
    body = json.loads(error.args[1].text)
    return int(body["status"]), int(body["code"])


def _configs(v2: V2, who: tuple[str, str] | None = None, **params: Any) -> tuple[str, Any]:
    client = v2.client(who)
    sid = service(client, **params).sid
    return sid, client.verify.v2.services(sid)


def test_create_fetch_list_update_delete_in_twilios_shape(v2: V2) -> None:
    sid, svc = _configs(v2)
    created = svc.messaging_configurations.create(country="GB", messaging_service_sid=MG_GB)
    assert (created.country, created.messaging_service_sid) == ("GB", MG_GB)
    assert (created.account_sid, created.service_sid) == (v2.account[0], sid)
    assert created.url == f"{v2.base}/v2/Services/{sid}/MessagingConfigurations/GB"
    assert created.date_created and created.date_updated
    svc.messaging_configurations.create(country="all", messaging_service_sid=MG_ALL)
    svc.messaging_configurations.create(country="fr", messaging_service_sid=MG_ALL)  # upper-cased

    fetched = svc.messaging_configurations("GB").fetch()
    assert (fetched.country, fetched.messaging_service_sid, fetched.url) == ("GB", MG_GB, created.url)
    # Paged: the SDK follows next_page_url across pages of one.
    listed = svc.messaging_configurations.list(page_size=1)
    assert [(c.country, c.messaging_service_sid) for c in listed] == [("all", MG_ALL), ("FR", MG_ALL), ("GB", MG_GB)]

    updated = svc.messaging_configurations("GB").update(messaging_service_sid=MG_GB_NEXT)
    assert (updated.country, updated.messaging_service_sid) == ("GB", MG_GB_NEXT)
    assert updated.date_created == created.date_created
    assert svc.messaging_configurations("gb").fetch().messaging_service_sid == MG_GB_NEXT

    assert svc.messaging_configurations("GB").delete() is True
    for call in (
        lambda: svc.messaging_configurations("GB").fetch(),
        lambda: svc.messaging_configurations("GB").update(messaging_service_sid=MG_GB),
        lambda: svc.messaging_configurations("GB").delete(),
    ):
        error = refused(call)
        assert (error.status, error.code) == (404, 20404)
    assert [c.country for c in svc.messaging_configurations.list()] == ["all", "FR"]
    raw = v2.raw("GET", f"/v2/Services/{sid}/MessagingConfigurations/FR", auth=v2.account).json()
    assert re.fullmatch(DATE, raw["date_created"]), raw


def test_the_destinations_country_picks_the_messaging_service_else_all_else_the_default(v2: V2) -> None:
    _, svc = _configs(v2)
    uk, us = gb_number(), new_number()
    # No configuration: the operator's sender (OTP_TWILIO_FROM here).
    svc.verifications.create(to=uk, channel="sms")
    assert _sent_with(v2, uk) is None
    assert [m.from_ for m in v2.stub.messages if m.to == uk] == ["+15005550006"]

    svc.messaging_configurations.create(country="GB", messaging_service_sid=MG_GB)
    svc.verifications.create(to=uk, channel="sms")  # a resend: each send asks again
    assert _sent_with(v2, uk, 2) == MG_GB
    svc.verifications.create(to=us, channel="sms")
    assert _sent_with(v2, us) is None  # GB's is GB's only

    svc.messaging_configurations.create(country="all", messaging_service_sid=MG_ALL)
    us2 = new_number()
    svc.verifications.create(to=us2, channel="sms")
    assert _sent_with(v2, us2) == MG_ALL
    uk2 = gb_number()
    svc.verifications.create(to=uk2, channel="sms")
    assert _sent_with(v2, uk2) == MG_GB  # the country's own wins over all


def test_update_and_delete_change_the_next_send(v2: V2) -> None:
    _, svc = _configs(v2)
    uk = gb_number()
    svc.messaging_configurations.create(country="GB", messaging_service_sid=MG_GB)
    svc.messaging_configurations.create(country="all", messaging_service_sid=MG_ALL)
    svc.verifications.create(to=uk, channel="sms")
    assert _sent_with(v2, uk, 1) == MG_GB
    svc.messaging_configurations("GB").update(messaging_service_sid=MG_GB_NEXT)
    svc.verifications.create(to=uk, channel="sms")
    assert _sent_with(v2, uk, 2) == MG_GB_NEXT
    svc.messaging_configurations("GB").delete()
    svc.verifications.create(to=uk, channel="sms")
    assert _sent_with(v2, uk, 3) == MG_ALL
    svc.messaging_configurations("all").delete()
    svc.verifications.create(to=uk, channel="sms")
    assert _sent_with(v2, uk, 4) is None


def test_another_account_can_neither_see_nor_change_a_services_configurations(v2: V2) -> None:
    sid, svc = _configs(v2)
    svc.messaging_configurations.create(country="GB", messaging_service_sid=MG_GB)
    theirs = v2.client(v2.other).verify.v2.services(sid)
    for call in (
        lambda: theirs.messaging_configurations.create(country="US", messaging_service_sid=MG_ALL),
        lambda: theirs.messaging_configurations.list(),
        lambda: theirs.messaging_configurations("GB").fetch(),
        lambda: theirs.messaging_configurations("GB").update(messaging_service_sid=MG_ALL),
        lambda: theirs.messaging_configurations("GB").delete(),
    ):
        assert _sdk_error(call) == (404, 20404)
    # Its own service of the same name space sees nothing of ours either.
    _, own = _configs(v2, v2.other)
    assert own.messaging_configurations.list() == []
    assert [(c.country, c.messaging_service_sid) for c in svc.messaging_configurations.list()] == [("GB", MG_GB)]
    uk = gb_number()
    svc.verifications.create(to=uk, channel="sms")
    assert _sent_with(v2, uk) == MG_GB


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"country": "XX", "messaging_service_sid": MG_GB}, "Country"),
        ({"country": "GBR", "messaging_service_sid": MG_GB}, "Country"),
        ({"country": "", "messaging_service_sid": MG_GB}, "Country"),
        ({"country": "ß", "messaging_service_sid": MG_GB}, "Country"),
        ({"country": "GB", "messaging_service_sid": "MG123"}, "MessagingServiceSid"),
        ({"country": "GB", "messaging_service_sid": "PN" + "1" * 32}, "MessagingServiceSid"),
        ({"country": "GB", "messaging_service_sid": ""}, "MessagingServiceSid"),
    ],
)
def test_bad_input_is_60200_naming_the_parameter(v2: V2, params: dict[str, str], field: str) -> None:
    _, svc = _configs(v2)
    error = refused(lambda: svc.messaging_configurations.create(**params))
    assert (error.status, error.code) == (400, 60200) and f"`{field}`" in error.msg, error.msg


def test_a_country_configured_twice_is_a_conflict_and_the_first_stays(v2: V2) -> None:
    _, svc = _configs(v2)
    svc.messaging_configurations.create(country="GB", messaging_service_sid=MG_GB)
    error = refused(lambda: svc.messaging_configurations.create(country="gb", messaging_service_sid=MG_ALL))
    assert (error.status, error.code) == (409, 20409), error.msg
    assert svc.messaging_configurations("GB").fetch().messaging_service_sid == MG_GB
    bad = refused(lambda: svc.messaging_configurations("GB").update(messaging_service_sid="MG0"))
    assert (bad.status, bad.code) == (400, 60200) and "`MessagingServiceSid`" in bad.msg
    unknown = refused(lambda: svc.messaging_configurations("XX").fetch())
    assert (unknown.status, unknown.code) == (400, 60200) and "`Country`" in unknown.msg


def test_the_operator_can_list_the_messaging_services_tenants_may_name(redis_url: str) -> None:
    with serve(redis_url, twilio_messaging_services=frozenset({MG_GB})) as v2:
        _, svc = _configs(v2)
        assert svc.messaging_configurations.create(country="GB", messaging_service_sid=MG_GB).country == "GB"
        error = refused(lambda: svc.messaging_configurations.create(country="all", messaging_service_sid=MG_ALL))
        assert (error.status, error.code) == (400, 60200) and "`MessagingServiceSid`" in error.msg, error.msg
        again = refused(lambda: svc.messaging_configurations("GB").update(messaging_service_sid=MG_ALL))
        assert (again.status, again.code) == (400, 60200)
        assert svc.messaging_configurations("GB").fetch().messaging_service_sid == MG_GB


def _redis(v2: V2, call: Any) -> Any:
    async def run() -> Any:
        client = aioredis.Redis.from_url(str(v2.settings.redis_url))
        try:
            return await call(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_deleting_the_service_deletes_its_configurations(v2: V2) -> None:
    sid, svc = _configs(v2)
    svc.messaging_configurations.create(country="GB", messaging_service_sid=MG_GB)
    key = keyspace.v2_messaging_configurations(sid)
    assert _redis(v2, lambda c: c.exists(key)) == 1
    assert v2.client().verify.v2.services(sid).delete() is True
    assert _redis(v2, lambda c: c.exists(key)) == 0
    gone = refused(lambda: svc.messaging_configurations.create(country="GB", messaging_service_sid=MG_GB))
    assert (gone.status, gone.code) == (404, 20404)
    assert _redis(v2, lambda c: c.exists(key)) == 0


def _job_fields(v2: V2, verification_id: str) -> dict[str, str]:
    partition = keyspace.partition_of_id(verification_id, v2.settings.partitions)
    raw = _redis(v2, lambda c: c.hgetall(keyspace.job(partition, f"{verification_id}:1")))
    return {records.text(k): records.text(v) for k, v in raw.items()}


def test_a_pending_job_holds_a_messaging_service_only_when_one_is_configured(redis_url: str) -> None:
    # No worker: the jobs stay queued, to be read.
    with serve(redis_url, worker=False) as v2:
        _, svc = _configs(v2)
        plain = _job_fields(v2, svc.verifications.create(to=gb_number(), channel="sms").sid)
        assert plain and not {"mg", "tp", "sb"} & set(plain), plain
        svc.messaging_configurations.create(country="GB", messaging_service_sid=MG_GB)
        routed = _job_fields(v2, svc.verifications.create(to=gb_number(), channel="sms").sid)
        assert routed["mg"] == MG_GB
        assert set(routed) - set(plain) == {"mg"}
