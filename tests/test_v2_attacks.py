"""Hostile-client review of the newest /v2 surface (review 14): verifications by phone number, the
free first resend, AppHash and Tags, the /v2 Safe List, CustomCode's 60204. Each test is an attack
written as the client would make it (the official SDK, or raw HTTP where the SDK can't), against a
served otp and real Redis; the fixtures are test_twilio_compat's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis.asyncio as aioredis
from conftest import NO_PUMPING, Clock
from test_twilio_compat import RELAXED, V2, new_number, serve, service
from twilio.base.exceptions import TwilioRestException

from otp.storage.safelist import SafeList
from otp.storage.store import Store


@pytest.fixture
def v2(redis_url: str) -> Iterator[V2]:
    with serve(redis_url, limits=RELAXED) as live:
        yield live


def _verifications(v2: V2, who: tuple[str, str] | None = None, **params: Any) -> tuple[str, Any]:
    client = v2.client(who)
    sid = service(client, **params).sid
    return sid, client.verify.v2.services(sid)


def _twilio_error(answer: Any, status: int, code: int, parameter: str) -> None:
    """Twilio's error body, naming the parameter."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) >= {"code", "message", "more_info", "status"}, body
    assert (body["status"], body["code"]) == (status, code), body
    assert parameter in body["message"], body


# -- verifications by phone number ----------------------------------------------------------------


def _spellings(e164: str) -> list[str]:
    """The one number as a client might spell it in the path: encoded, national, spaced, wide."""
    national = e164[2:]
    wide = "".join(chr(ord(c) + 0xFEE0) for c in e164)  # fullwidth ＋１４１５…
    return [
        quote(e164, safe=""),
        e164,
        national,
        "1" + national,
        quote(f"+1 ({national[:3]}) {national[3:6]}-{national[6:]}", safe=""),
        quote(f"00{e164[1:]}", safe=""),
        quote(wide, safe=""),
        quote(e164 + "\u200b", safe=""),  # a zero-width space
    ]


def test_no_spelling_of_a_number_reaches_another_accounts_verification(v2: V2) -> None:
    victim_sid, victim = _verifications(v2, v2.other)
    to = new_number()
    pending = victim.verifications.create(to=to, channel="sms")
    own_sid, _ = _verifications(v2)
    for spelling in _spellings(to):
        for service_sid in (own_sid, victim_sid):  # my service, and theirs named in my path
            path = f"/v2/Services/{service_sid}/Verifications/{spelling}"
            _twilio_error(v2.raw("GET", path, auth=v2.account), 404, 20404, "")
            for status in ("canceled", "approved"):
                answer = v2.raw("POST", path, auth=v2.account, data={"Status": status})
                _twilio_error(answer, 404, 20404, "")
        # Its sid, too, through my own service.
        answer = v2.raw(
            "POST", f"/v2/Services/{own_sid}/Verifications/{pending.sid}", auth=v2.account, data={"Status": "approved"}
        )
        _twilio_error(answer, 404, 20404, "")
    assert victim.verifications(pending.sid).fetch().status == "pending"
    assert victim.verifications(to).fetch().sid == pending.sid


def test_a_number_names_only_its_own_services_verification_within_one_account(v2: V2) -> None:
    client = v2.client()
    first = client.verify.v2.services(service(client, friendly_name="First").sid)
    second_sid = service(client, friendly_name="Second").sid
    to = new_number()
    pending = first.verifications.create(to=to, channel="sms")
    for spelling in _spellings(to):
        path = f"/v2/Services/{second_sid}/Verifications/{spelling}"
        _twilio_error(v2.raw("POST", path, auth=v2.account, data={"Status": "canceled"}), 404, 20404, "")
    assert first.verifications(pending.sid).fetch().status == "pending"


def test_a_path_that_is_not_a_number_is_a_clean_404_never_a_500(v2: V2) -> None:
    sid, _ = _verifications(v2)
    for junk in (
        "%00",
        "%ED%A0%80",
        "%FF",
        "+",
        "%2B" * 40,
        "1" * 5000,
        "+1415555%0A0000",
        "%2E%2E",
        "%20",
        "\u0661\u0664\u0661\u0665",
        quote("+٤١٥٥٥٥٠٠٠٠"),
    ):
        for method in ("GET", "POST"):
            answer = v2.raw(
                method,
                f"/v2/Services/{sid}/Verifications/{junk}",
                auth=v2.account,
                data={"Status": "canceled"} if method == "POST" else None,
            )
            assert answer.status_code in (400, 404), (junk, answer.status_code, answer.text)
            assert {"code", "message", "status"} <= set(answer.json()), answer.text


# -- text smuggled into the SMS -------------------------------------------------------------------


@pytest.mark.parametrize(
    "app_hash",
    [
        "FA+9qCX9VSu\n",
        "\nFA+9qCX9VSu",
        "FA+9qCX9VS ",
        "@evil.co #1",
        "evil.co/xyz",
        "http://x.yz",
        "FA+9qCX9VS\u0301",  # a combining accent: 11 code points, not our alphabet
        "ＦＡ９ｑＣＸ９ＶＳｕ１",  # fullwidth letters (\w would take them)
        "FA+9qCX9VSu" * 2,
        "",
    ],
)
def test_app_hash_carries_nothing_but_an_app_hash(v2: V2, app_hash: str) -> None:
    sid, _ = _verifications(v2)
    to = new_number()
    answer = v2.raw(
        "POST",
        f"/v2/Services/{sid}/Verifications",
        auth=v2.account,
        data={"To": to, "Channel": "sms", "AppHash": app_hash},
    )
    _twilio_error(answer, 400, 60200, "AppHash")
    assert not [m for m in v2.stub.messages if m.to == to]


def test_tags_never_reach_the_sms(v2: V2) -> None:
    _, verify = _verifications(v2)
    to = new_number()
    tags = {"evil": "Call +1 900 555 0100 or visit http://evil.example/"}
    verify.verifications.create(to=to, channel="sms", tags=json.dumps(tags))
    body = v2.sms(to)
    assert "evil" not in body and "900" not in body


@pytest.mark.parametrize(
    ("tags", "parameter"),
    [
        ('{"a": "\\ud800"}', "Tags"),  # a lone surrogate, as JSON escapes it
        ('{"\\udfff": "x"}', "Tags"),
        ('{"a": {"b": "c"}}', "Tags"),
        ('{"a": ["b"]}', "Tags"),
        ('{"a": 1}', "Tags"),
        ('{"a": null}', "Tags"),
        ('["a"]', "Tags"),
        ('"a"', "Tags"),
        ("{", "Tags"),
        ('{"a": "b", "a": "c"}', "Tags"),
        ('{"": "x"}', "Tags"),
        (json.dumps({str(i): "x" for i in range(11)}), "Tags"),
        (json.dumps({"a" * 129: "x"}), "Tags"),
        (json.dumps({"a": "x" * 257}), "Tags"),
        ("[" * 100_000, "body"),  # past the 16 KiB body: refused whole
    ],
)
def test_malformed_or_heavy_tags_are_400_naming_them(v2: V2, tags: str, parameter: str) -> None:
    sid, _ = _verifications(v2)
    to = new_number()
    answer = v2.raw(
        "POST", f"/v2/Services/{sid}/Verifications", auth=v2.account, data={"To": to, "Channel": "sms", "Tags": tags}
    )
    assert answer.status_code in (400, 413), answer.text
    body = answer.json()
    assert {"code", "message", "status"} <= set(body), body
    assert parameter in body["message"] or body["status"] == 413, body


def test_the_heaviest_allowed_tags_keep_the_record_bounded_and_readable(v2: V2, redis_url: str) -> None:
    _, verify = _verifications(v2)
    to = new_number()
    # Ten names of 128 and values of 256 characters: wider or escaped characters cost more in the
    # 16 KiB form body (%F0%9F%92%A9, %5Cu0001) than they do in the record.
    heavy = {f"{i}" + "n" * 127: "v" * 256 for i in range(10)}
    created = verify.verifications.create(to=to, channel="sms", tags=json.dumps(heavy))
    assert verify.verifications(created.sid).fetch().status == "pending"
    assert verify.verifications(to).fetch().sid == created.sid
    for _ in range(3):  # a resend with tags replaces them, never adds
        verify.verifications.create(to=to, channel="sms", tags=json.dumps(heavy))

    async def size() -> dict[str, int]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return {
                # samples=0: every field; the default samples 5 and extrapolates (one big field skews it)
                str(key): int(await client.memory_usage(key, samples=0) or 0)
                async for key in client.scan_iter(match=f"*{created.sid}*")
            }
        finally:
            await client.aclose()

    measured = asyncio.run(size())
    assert sum(measured.values()) < 32 * 1024, measured


# -- CustomCode -----------------------------------------------------------------------------------


def test_custom_code_refusal_is_403_60204_before_it_validates_or_sends(v2: V2) -> None:
    sid, _ = _verifications(v2)
    to = new_number()
    for code in ("123456", "", "x" * 10_000, "%00"):
        answer = v2.raw(
            "POST",
            f"/v2/Services/{sid}/Verifications",
            auth=v2.account,
            data={"To": to, "Channel": "sms", "CustomCode": code},
        )
        _twilio_error(answer, 403, 60204, "CustomCode")
    assert not [m for m in v2.stub.messages if m.to == to]


# -- the free first resend ------------------------------------------------------------------------


def test_the_free_resend_never_lets_alternating_services_past_the_hourly_cap(redis_url: str) -> None:
    """Two services of one account and a second account, each starting, resending at once (free),
    canceling and starting again as soon as the cooldown lets them, for an hour: the number gets
    at most its hourly cap, and never two sends within the cooldown except a free resend."""
    clock = Clock()
    limits = {**NO_PUMPING, "resend_cooldown": 10, "number_sends_per_hour": 10}
    with serve(redis_url, limits=limits, clock=clock) as v2:
        to = new_number()
        tenants = [
            _verifications(v2)[1],
            _verifications(v2, friendly_name="Second")[1],
            _verifications(v2, v2.other)[1],
        ]
        sent_at: list[float] = []
        elapsed = 0.0
        while elapsed < 3600:
            for verify in tenants:
                v = None
                for _ in range(2):  # start, then Resend at once
                    try:
                        v = verify.verifications.create(to=to, channel="sms")
                    except TwilioRestException as exc:  # a refusal is the point
                        assert exc.status == 429, exc
                        break  # a refused start has nothing to resend; asking again now is the same ask
                    else:
                        sent_at.append(elapsed)
                if v is not None:
                    verify.verifications(v.sid).update(status="canceled")
            # Every 5 s until the cap is reached, then every minute for the rest of the hour: the
            # refusals after the cap need no finer steps, and the loop stays a few seconds long.
            step = 5 if len(sent_at) < 10 else 60
            clock.advance(step)
            elapsed += step
        assert len(sent_at) == 10, sent_at  # the cap, reached: the loop did all it could


# -- the Safe List --------------------------------------------------------------------------------


def _covers(redis_url: str, e164: str) -> bool:
    async def read() -> bool:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await SafeList(Store(client, partitions=16)).covers(e164)
        finally:
            await client.aclose()

    return asyncio.run(read())


def test_safe_listing_one_number_never_lists_a_range(v2: V2, redis_url: str) -> None:
    admin = v2.client(v2.admin).verify.v2
    # +49 30 1234 is a valid Berlin number, and so is every +49 30 1234x…
    created = admin.safelist.create(phone_number="+49301234")
    assert created.phone_number == "+49301234"
    assert _covers(redis_url, "+49301234")
    assert not _covers(redis_url, "+493012345678")
    # An ordinary Finnish mobile number is one too: it covers +3584012345670 … 9 and longer.
    admin.safelist.create(phone_number="+358401234567")
    assert not _covers(redis_url, "+3584012345670")
    # Fetch and delete still take the entry as it was made.
    assert admin.safelist("+49301234").fetch().phone_number == "+49301234"
    assert admin.safelist("+49301234").delete() is True
    assert not _covers(redis_url, "+49301234")


def test_safe_list_changes_and_reads_by_a_tenant_change_nothing(v2: V2, redis_url: str) -> None:
    number = new_number()
    for who in (v2.account, v2.other, None):
        for method, path, data in (
            ("POST", "/v2/SafeList/Numbers", {"PhoneNumber": number}),
            ("POST", "/v2/SafeList/Numbers", {"PhoneNumber": "+1"}),
            ("GET", f"/v2/SafeList/Numbers/{quote(number, safe='')}", None),
            ("DELETE", f"/v2/SafeList/Numbers/{quote(number, safe='')}", None),
            ("GET", "/v2/SafeList/Numbers", None),
        ):
            answer = v2.raw(method, path, auth=who, data=data)
            assert answer.status_code in (401, 403, 405), (who, method, path, answer.text)
            assert {"code", "message", "status"} <= set(answer.json())
    assert not _covers(redis_url, number)


def test_racing_starts_of_two_tenants_get_one_free_resend_between_them(redis_url: str) -> None:
    """Twenty concurrent starts from each of two accounts to one number, at one instant: one
    verification is created and resent once (the free resend); every other start is refused."""
    from concurrent.futures import ThreadPoolExecutor

    clock = Clock()
    with serve(redis_url, limits={**NO_PUMPING, "resend_cooldown": 10}, clock=clock) as v2:
        to = new_number()
        paths = [(who, f"/v2/Services/{_verifications(v2, who)[0]}/Verifications") for who in (v2.account, v2.other)]

        def start(i: int) -> int:
            who, path = paths[i % 2]
            return v2.raw("POST", path, auth=who, data={"To": to, "Channel": "sms"}).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(start, range(40)))
        assert sorted(statuses).count(201) == 2, statuses
        assert set(statuses) == {201, 429}, statuses
        v2.code(to, nth=2)
        assert len([m for m in v2.stub.messages if m.to == to]) == 2


def test_templates_and_not_offered_paths_need_no_secrets_and_leak_nothing(v2: V2) -> None:
    answer = v2.raw("GET", "/v2/Templates")
    assert answer.status_code == 401 and answer.json()["code"] == 20003
    to = new_number()
    other_sid, _ = _verifications(v2, v2.other)
    # Another account's service named under a resource otp doesn't offer: the same 404 as any sid.
    mine = v2.raw("GET", f"/v2/Services/{other_sid}/Webhooks", auth=v2.account).json()
    made_up = v2.raw("GET", "/v2/Services/VA" + "0" * 32 + "/Webhooks", auth=v2.account).json()
    assert mine["code"] == made_up["code"] == 20404
    assert mine["message"].replace(other_sid, "X") == made_up["message"].replace("VA" + "0" * 32, "X")
    long = v2.raw("GET", "/v2/Services/" + "a/" * 4000 + to, auth=v2.account)
    assert long.status_code in (404, 414) and {"code", "message"} <= set(long.json())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Locale", "x" * 300),
        ("CustomFriendlyName", "paypal.com"),
        ("CustomFriendlyName", "\U0001d400" * 30),
        ("DeviceIp", "fe80::1%eth0"),
        ("RiskCheck", "maybe"),
        ("RateLimits", '{"a\\n": 1}'),
        ("RateLimits", '{"a": true}'),
        ("EnableSnaClientToken", "TRUE"),
        ("Amount", ""),
        ("Payee", "x"),
        ("SendDigits", ""),
        ("ChannelConfiguration", "{}"),
        ("TemplateSid", "HJ" + "0" * 32),
        ("TemplateSid", "HJ123"),
        ("TemplateCustomSubstitutions", '{"purpose": "confirm"}'),  # the default template has no variables
        ("TemplateCustomSubstitutions", "[]"),
        ("Templates", "x"),
        ("CustomMessage", "Your code"),
        ("Channel", "call"),
        ("To", "+1900555010"),
        ("To", "+19005550100"),  # premium rate
    ],
)
def test_every_refused_start_parameter_is_a_twilio_error_naming_it(v2: V2, name: str, value: str) -> None:
    sid, _ = _verifications(v2)
    to = new_number()
    data = {"To": to, "Channel": "sms", name: value}
    answer = v2.raw("POST", f"/v2/Services/{sid}/Verifications", auth=v2.account, data=data)
    assert 400 <= answer.status_code < 500, answer.text
    body = answer.json()
    assert {"code", "message", "more_info", "status"} <= set(body), body
    assert f"`{name}`" in body["message"] or answer.status_code == 403, body
    assert not [m for m in v2.stub.messages if m.to == to]


def test_a_tenant_cannot_remove_an_admins_safe_list_entry(v2: V2, redis_url: str) -> None:
    number = new_number()
    v2.client(v2.admin).verify.v2.safelist.create(phone_number=number)
    for who in (v2.account, v2.other):
        for spelling in (number, quote(number, safe=""), number[1:], quote(number + " ", safe="")):
            answer = v2.raw("DELETE", f"/v2/SafeList/Numbers/{spelling}", auth=who)
            assert answer.status_code == 403 and answer.json()["code"] == 20403, answer.text
    assert _covers(redis_url, number)


@pytest.mark.parametrize(
    "query",
    [
        "PageSize=abc",
        "PageSize=" + "9" * 5000,
        "Page=-1",
        "FriendlyName=%ED%A0%80",
        "FriendlyName=" + "x" * 8000,
        "PageToken=%00",
    ],
)
def test_templates_list_refuses_odd_queries_in_twilios_shape(v2: V2, query: str) -> None:
    answer = v2.raw("GET", f"/v2/Templates?{query}", auth=v2.account)
    assert answer.status_code < 500, answer.text
    assert answer.status_code == 200 or {"code", "message", "status"} <= set(answer.json()), answer.text


# -- one account, many services -------------------------------------------------------------------


def test_a_new_service_does_not_refill_the_accounts_pumping_budget(redis_url: str) -> None:
    limits = {**NO_PUMPING, "prefix_hourly_floor": 1, "prefix_daily_floor": 1, "resend_cooldown": 0}
    with serve(redis_url, limits=limits) as v2:
        numbers = iter(f"+1305555{1000 + i}" for i in range(100))

        def sends_until_refused(verify: Any) -> int:
            for sent in range(20):
                try:
                    verify.verifications.create(to=next(numbers), channel="sms")
                except TwilioRestException as exc:
                    assert (exc.status, exc.code) == (403, 60410), exc
                    return sent
            return 20

        first = sends_until_refused(_verifications(v2)[1])
        assert 0 < first < 20
        # The same account, the same prefix, a service created a second later.
        more = [sends_until_refused(_verifications(v2, friendly_name=f"Acme {i}")[1]) for i in range(3)]
        assert sum(more) == 0, (first, more)


def test_an_account_cannot_create_services_without_end(v2: V2, redis_url: str) -> None:
    from otp.core import apikeys
    from otp.core.services import MAX_SERVICES_PER_ACCOUNT
    from otp.storage import keys as keyspace

    async def account_with_services(count: int) -> tuple[str, str]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            key, token = await apikeys.create(Store(client, partitions=16), "many", twilio=True)
            await client.zadd(keyspace.v2_services_of(key.key_id), {f"VA{i:032x}": i for i in range(count)})
            return key.key_id, token.split("_")[2]
        finally:
            await client.aclose()

    who = asyncio.run(account_with_services(MAX_SERVICES_PER_ACCOUNT - 1))
    services = v2.client(who).verify.v2.services
    assert services.create(friendly_name="Last one").sid.startswith("VA")
    try:
        services.create(friendly_name="One more")
    except TwilioRestException as exc:
        assert (exc.status, exc.code) == (403, 20403), exc
        assert f"at most {MAX_SERVICES_PER_ACCOUNT} services" in str(exc.msg)
    else:
        raise AssertionError("a service past the cap was created")


def test_a_spent_unproven_budget_is_twilios_fraud_block_on_v2(redis_url: str) -> None:
    """Every pumping block is 60410 on /v2, as Twilio's Fraud Guard answers; the budget a new
    tenant meets first included, and its message says what grows it."""
    limits = {**NO_PUMPING, "unproven_country_floor": 2, "resend_cooldown": 0}
    with serve(redis_url, limits=limits) as v2:
        verify = _verifications(v2)[1]
        numbers = iter(f"+1786555{1000 + i}" for i in range(0, 400, 37))
        refused = None
        for _ in range(8):
            try:
                verify.verifications.create(to=next(numbers), channel="sms")
            except TwilioRestException as exc:
                refused = exc
                break
        assert refused is not None, "the unproven budget never ran out"
        assert (refused.status, refused.code) == (403, 60410), refused
        assert "each code your users confirm adds to it" in str(refused.msg)
