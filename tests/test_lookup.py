"""Line types from Twilio Lookup (OTP_LOOKUP): the service served by uvicorn asks Lookup v2 through
the official SDK, redirected to the Twilio stand-in, which answers per number in Twilio's shape,
fails or stalls on request, and counts the calls (what the starts cost)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from test_twilio_compat import RELAXED, V2, new_number, refused, serve, service
from twilio.rest import Client

from otp.clock import SettableClock
from otp.core import audit
from otp.core.audit_events import AuditFilter
from otp.core.line_types import LookupConfig
from otp.core.phone import DEFAULT_BLOCKED_TYPES
from otp.devtools.twilio_stub import TwilioStub
from otp.edge.twilio_sender import RedirectingHttpClient
from otp.errors import ConfigError
from otp.settings import LOOKUP_DEFAULTS, Settings
from otp.storage.store import Store

GB_MOBILE = "+447911123456"  # phonenumbers knows it is a mobile


def lookup(**changes: Any) -> LookupConfig:
    return replace(LOOKUP_DEFAULTS, **{"mode": "line_type", **changes})


@pytest.fixture
def live(redis_url: str) -> Iterator[V2]:
    with serve(redis_url, lookup=lookup()) as v2:
        yield v2


def start_v1(v2: V2, to: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{v2.base}/v1/verifications",
        json={"to": to, **body},
        headers={"Authorization": f"Bearer {v2.v1_key}"},
        timeout=10,
    )


def started_events(url: str, event: str = "started") -> list[dict[str, Any]]:
    """The audit events of one kind, oldest first."""

    async def read() -> list[dict[str, Any]]:
        client = aioredis.Redis.from_url(url)
        try:
            events, _ = await audit.read(Store(client, partitions=16), AuditFilter(event=event))
        finally:
            await client.aclose()
        return [dict(e.fields) for e in reversed(events)]

    return asyncio.run(read())


def redis_strings(url: str, pattern: str) -> dict[str, str]:
    async def read() -> dict[str, str]:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            return {k: str(await client.get(k)) async for k in client.scan_iter(pattern)}
        finally:
            await client.aclose()

    return asyncio.run(read())


# -- the policy on Lookup's types -------------------------------------------------------------------


def test_a_landline_by_lookup_is_refused_403_on_v1_and_60205_on_v2_and_a_mobile_goes_through(live: V2) -> None:
    landline, mobile = new_number("212"), new_number("646")
    live.stub.lookups.answer(landline, "landline", carrier="Verizon")
    live.stub.lookups.answer(mobile, "mobile", carrier="T-Mobile USA, Inc.")

    v1 = start_v1(live, landline)
    assert v1.status_code == 403, v1.text
    assert v1.json()["error"]["code"] == "number_type_not_allowed"
    verify = live.client().verify.v2.services(service(live.client()).sid)
    v2 = refused(lambda: verify.verifications.create(to=landline, channel="sms"))
    assert (v2.status, v2.code) == (403, 60205)
    assert verify.verifications.create(to=mobile, channel="sms").status == "pending"
    live.code(mobile)  # the mobile got its SMS …
    assert not [m for m in live.stub.messages if m.to == landline]  # … the landline none

    refusal = started_events(live.settings.redis_url or "", "refused")[-1]
    assert (refusal["rule"], refusal["reason"]) == ("number_type", "number_type_not_allowed")
    assert (refusal["lookup"], refusal["line_type"]) == ("cached", "fixed_line")  # /v2 met /v1's answer


def test_fixed_voip_is_refused_by_default_and_non_fixed_voip_only_when_the_operator_says(redis_url: str) -> None:
    assert "fixed_voip" in DEFAULT_BLOCKED_TYPES and "non_fixed_voip" not in DEFAULT_BLOCKED_TYPES
    fixed, app_number = new_number("305"), new_number("305")
    with serve(redis_url, lookup=lookup()) as v2:
        v2.stub.lookups.answer(fixed, "fixedVoip", carrier="Comcast")
        v2.stub.lookups.answer(app_number, "nonFixedVoip", carrier="Google (Grand Central) - SVR")
        assert start_v1(v2, fixed).json()["error"]["code"] == "number_type_not_allowed"
        assert start_v1(v2, app_number).status_code == 201
    # ``voip`` refuses both of Lookup's VoIP types (and phonenumbers' own VoIP ranges).
    blocked = {**RELAXED, "blocked_number_types": DEFAULT_BLOCKED_TYPES | {"voip"}}
    with serve(redis_url, limits=blocked, lookup=lookup()) as v2:
        other = new_number("305")
        v2.stub.lookups.answer(other, "nonFixedVoip")
        refusal = start_v1(v2, other)
        assert refusal.status_code == 403 and refusal.json()["error"]["code"] == "number_type_not_allowed"


def test_a_lookup_refusal_counts_in_the_limits_only_when_paid_and_safe_listed_numbers_are_never_looked_up(
    redis_url: str,
) -> None:
    with serve(redis_url, limits={**RELAXED, "ip_sends_per_hour": 2}, lookup=lookup()) as v2:
        landline, mobile = new_number("212"), new_number("212")
        v2.stub.lookups.answer(landline, "landline")
        # A paid Lookup counts in the IP's (and key's) limit: else fresh landlines buy Lookups unbounded.
        assert start_v1(v2, landline, ip="203.0.113.7").status_code == 403
        # Its cached answer costs nothing: that refusal leaves the IP's other send an hour unspent.
        assert start_v1(v2, landline, ip="203.0.113.7").status_code == 403
        assert start_v1(v2, mobile, ip="203.0.113.7").status_code == 201
        assert start_v1(v2, new_number("212"), ip="203.0.113.7").status_code == 429

        safe = new_number("212")
        v2.stub.lookups.answer(safe, "landline")
        v2.client(v2.admin).verify.v2.safelist.create(phone_number=safe)
        assert start_v1(v2, safe).status_code == 201
        assert safe not in v2.stub.lookups.calls


# -- cost: the cache, and which numbers are looked up -----------------------------------------------


def test_two_starts_for_one_number_pay_for_one_lookup_cached_by_keyed_hash(redis_url: str) -> None:
    clock = SettableClock()
    to = new_number("415")
    with serve(redis_url, clock=clock, lookup=lookup()) as v2:
        v2.stub.lookups.answer(to, "mobile", carrier="Verizon Wireless")
        assert start_v1(v2, to).status_code == 201
        assert start_v1(v2, to).status_code == 201  # a resend of the same verification
        assert v2.stub.lookups.calls == [to]
        first, second = started_events(redis_url, "started")[-1], started_events(redis_url, "resent")[-1]
        assert (first["lookup"], first["line_type"], first["lookup_price"]) == ("lookup", "mobile", "0.008")
        assert second["lookup"] == "cached" and "lookup_price" not in second  # nothing paid
        cached = redis_strings(redis_url, "otp:{lt:*")
        assert len(cached) == 1
        ((key, value),) = cached.items()
        assert to not in key and to[2:] not in key and to[-7:] not in value
        assert value.endswith("|mobile|Verizon Wireless")

        # 30 days on, the answer is looked up again.
        clock.advance(30 * 86400 + 1)
        assert start_v1(v2, to).status_code == 201
        assert v2.stub.lookups.calls == [to, to]


def test_line_type_mode_looks_up_only_what_phonenumbers_cannot_tell(redis_url: str) -> None:
    us = new_number("646")
    with serve(redis_url, lookup=lookup()) as v2:
        assert start_v1(v2, GB_MOBILE).status_code == 201
        assert start_v1(v2, us).status_code == 201
        assert v2.stub.lookups.calls == [us]  # the GB 07 number is a mobile: no Lookup, no cost
        assert started_events(redis_url)[0]["lookup"] == "phonenumbers"
    with serve(redis_url, lookup=lookup(mode="always")) as v2:
        assert start_v1(v2, "+447911123457").status_code == 201
        assert v2.stub.lookups.calls == ["+447911123457"]


def test_lookup_off_asks_nothing(redis_url: str) -> None:
    with serve(redis_url) as v2:
        assert start_v1(v2, new_number("646")).status_code == 201
        assert v2.stub.lookups.calls == []
        assert "lookup" not in started_events(redis_url)[-1]


# -- failures -----------------------------------------------------------------------------------------


def test_a_failed_or_slow_lookup_falls_back_to_phonenumbers_and_the_audit_says_so(redis_url: str) -> None:
    failing, slow = new_number("718"), new_number("718")
    with serve(redis_url, lookup=lookup(timeout=0.2)) as v2:
        v2.stub.lookups.fail_next(1, 503)
        assert start_v1(v2, failing).status_code == 201
        v2.stub.lookups.slow_next(1, 1.0)
        assert start_v1(v2, slow).status_code == 201
        v2.code(failing)
        events = started_events(redis_url)
        assert [(e["lookup"], e["lookup_error"], e["line_type"]) for e in events] == [
            ("fallback", "http_503", "fixed_line_or_mobile"),
            ("fallback", "timeout", "fixed_line_or_mobile"),
        ]
        assert all("lookup_price" not in e for e in events)
        # Nothing was cached: the next start asks again (and pays).
        v2.stub.lookups.answer(failing, "landline")
        assert start_v1(v2, failing).status_code == 403
        assert v2.stub.lookups.calls == [failing, slow, failing]


def test_fail_closed_refuses_503_with_the_reason_when_lookup_fails(redis_url: str) -> None:
    with serve(redis_url, lookup=lookup(fail_closed=True, timeout=0.2)) as v2:
        to = new_number("917")
        v2.stub.lookups.fail_next(2, 500)
        v1 = start_v1(v2, to)
        assert v1.status_code == 503
        assert v1.json()["error"]["code"] == "lookup_unavailable" and v1.json()["error"]["field"] == "to"
        assert "Lookup" in v1.json()["error"]["message"] and v1.headers["Retry-After"] == "5"
        verify = v2.client().verify.v2.services(service(v2.client()).sid)
        error = refused(lambda: verify.verifications.create(to=to, channel="sms"))
        assert (error.status, error.code) == (503, 20503)
        refusal = started_events(redis_url, "refused")[-1]
        assert (refusal["rule"], refusal["reason"], refusal["lookup"]) == (
            "line_type_lookup",
            "lookup_unavailable",
            "failed",
        )
        assert not v2.stub.messages
        # Lookup back: the start goes through.
        assert verify.verifications.create(to=to, channel="sms").status == "pending"


# -- /v2's lookup field ---------------------------------------------------------------------------------


def test_v2_lookup_field_carries_lookups_carrier_and_type(live: V2) -> None:
    app_number = new_number("415")
    live.stub.lookups.answer(app_number, "nonFixedVoip", carrier="Google (Grand Central) BWI - Bandwidth.com - SVR")
    client = live.client()
    verify = client.verify.v2.services(service(client, lookup_enabled=True).sid)
    started = verify.verifications.create(to=app_number, channel="sms")
    carrier = {
        "error_code": None,
        "name": "Google (Grand Central) BWI - Bandwidth.com - SVR",
        "mobile_country_code": None,
        "mobile_network_code": None,
        "type": "voip",
    }
    assert started.lookup == {"carrier": carrier}
    assert verify.verifications(started.sid).fetch().lookup == {"carrier": carrier}
    # Without Lookup's answer (a number phonenumbers decides): its type, no carrier.
    offline = verify.verifications.create(to=GB_MOBILE, channel="sms").lookup
    assert offline == {"carrier": {**carrier, "name": None, "type": "mobile"}}
    # A service without LookupEnabled gets none, as at Twilio.
    plain = client.verify.v2.services(service(client).sid)
    assert plain.verifications.create(to=new_number("415"), channel="sms").lookup == {}


# -- the stand-in and the settings ------------------------------------------------------------------


def test_the_stand_in_answers_lookup_v2_in_twilios_shape_through_the_sdk() -> None:
    with TwilioStub("AC" + "1" * 32, "token") as stub:
        client = Client("AC" + "1" * 32, "token", http_client=RedirectingHttpClient(stub.url, 5))
        stub.lookups.answer("+14155550100", None, carrier=None, error_code=60600)
        found = client.lookups.v2.phone_numbers("+15017122661").fetch(fields="line_type_intelligence")
        assert (found.country_code, found.valid, found.calling_country_code) == ("US", True, "1")
        assert found.line_type_intelligence == {
            "carrier_name": "Stub Wireless",
            "error_code": None,
            "mobile_country_code": "310",
            "mobile_network_code": "260",
            "type": "mobile",
        }
        none = client.lookups.v2.phone_numbers("+14155550100").fetch(fields="line_type_intelligence")
        assert none.line_type_intelligence["type"] is None and none.line_type_intelligence["error_code"] == 60600
        basic = client.lookups.v2.phone_numbers("+15017122661").fetch()
        assert basic.line_type_intelligence is None  # a package not asked for
        assert stub.lookups.calls == ["+15017122661", "+14155550100", "+15017122661"]


def test_lookup_settings_are_validated() -> None:
    twilio = {
        "OTP_TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "OTP_TWILIO_AUTH_TOKEN": "token",
        "OTP_TWILIO_FROM": "+15005550006",
        "OTP_PUBLIC_URL": "https://otp.example",
    }
    defaults = Settings.from_env({}).lookup
    assert (defaults.mode, defaults.fail_closed, defaults.timeout) == ("off", False, 2.0)
    assert defaults.price == Decimal("0.008")
    chosen = Settings.from_env(
        {**twilio, "OTP_LOOKUP": "always", "OTP_LOOKUP_FAIL": "closed", "OTP_LOOKUP_TIMEOUT": "500ms"}
    ).lookup
    assert (chosen.mode, chosen.fail_closed, chosen.timeout) == ("always", True, 0.5)
    assert Settings.from_env({**twilio, "OTP_LOOKUP_PRICE": "0.01"}).lookup.price == Decimal("0.01")
    for env, message in (
        ({"OTP_LOOKUP": "line_type"}, "needs Twilio"),
        ({**twilio, "OTP_LOOKUP": "sometimes"}, "OTP_LOOKUP='sometimes' must be one of"),
        ({**twilio, "OTP_LOOKUP_FAIL": "shut"}, "OTP_LOOKUP_FAIL='shut' must be one of"),
        ({**twilio, "OTP_LOOKUP_TIMEOUT": "5m"}, "OTP_LOOKUP_TIMEOUT='5m' is out of range"),
        ({**twilio, "OTP_LOOKUP_PRICE": "-1"}, "OTP_LOOKUP_PRICE='-1' is not a price"),
        ({**twilio, "OTP_LOOKUP_PRICE": "cheap"}, "is not a number"),
    ):
        with pytest.raises(ConfigError, match=message):
            Settings.from_env(env)
