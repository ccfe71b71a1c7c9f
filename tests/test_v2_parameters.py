"""Every parameter of Twilio's CreateVerification is honoured or refused by name, never silently
dropped (issue 14): driven through the official `twilio` SDK against a served app, each answer
held to Twilio's OpenAPI document (``test_twilio_compat.ContractHttpClient``).

Honoured: To, Channel (sms), Locale, CustomFriendlyName, CustomCode, RateLimits, DeviceIp,
RiskCheck, Tags (kept on the record), AppHash (Android's SMS Retriever hash at the end of the SMS);
TemplateSid and TemplateCustomSubstitutions in tests/test_v2_templates.py.
Refused with 400 60200 naming the parameter: CustomMessage, SendDigits, ChannelConfiguration,
Templates, EnableSnaClientToken=true, Amount, Payee.
A parameter that is not Twilio's at all is ignored, as before (and as Twilio does).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from test_twilio_compat import V2, new_number, refused, serve, service

from otp.core import messages
from otp.errors import InvalidInput
from otp.model import Verification
from otp.storage import keys as keyspace
from otp.storage import records

APP_HASH = "FA+9qCX9VSu"  # Google's example hash: 11 characters of the base64 alphabet
WEBOTP_DOMAIN = "example.com"
LONGEST_NAME = "Northwind Traders Secure Login"
LONGEST_CODE = "1234567890"


@pytest.fixture
def v2(redis_url: str) -> Iterator[V2]:
    with serve(redis_url, webotp_domain=WEBOTP_DOMAIN) as live:
        yield live


def _sent_to(v2: V2, to: str) -> list[str]:
    return [m.body for m in v2.stub.messages if m.to == to]


# -- refused parameters ---------------------------------------------------------------------------

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("CustomMessage", {"custom_message": "Your code is {code}"}, "deprecated"),
    ("SendDigits", {"send_digits": "ww1234"}, "voice"),
    ("ChannelConfiguration", {"channel_configuration": {"from": "a@example.com"}}, "email"),
    ("Templates", {"templates": json.dumps([{"sid": "HJ" + "0" * 32}])}, "TemplateSid"),
    ("EnableSnaClientToken", {"enable_sna_client_token": True}, "sna"),
    ("Amount", {"amount": "10.00"}, "PSD2"),
    ("Payee", {"payee": "Acme"}, "PSD2"),
]


@pytest.mark.parametrize(("field", "params", "why"), REFUSED, ids=[r[0] for r in REFUSED])
def test_parameters_otp_does_not_offer_are_60200_naming_them(
    v2: V2, field: str, params: dict[str, Any], why: str
) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    to = new_number()
    error = refused(lambda: verify.verifications.create(to=to, channel="sms", **params))
    assert (error.status, error.code) == (400, 60200), error
    assert f"`{field}`" in error.msg and "otp" in error.msg and why in error.msg, error.msg
    # Nothing was queued: the next start is the number's first send (a refused start that had
    # written a verification would make it a resend, with two send attempts).
    started = verify.verifications.create(to=to, channel="sms")
    assert len(started.send_code_attempts) == 1
    v2.code(to)
    assert len(_sent_to(v2, to)) == 1


def test_sna_client_token_false_asks_for_nothing_otp_would_not_do(v2: V2) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    assert (
        verify.verifications.create(to=new_number(), channel="sms", enable_sna_client_token=False).status == "pending"
    )


def test_a_parameter_twilio_does_not_define_is_ignored_as_before(v2: V2) -> None:
    svc = service(v2.client())
    to = new_number()
    data = {"To": to, "Channel": "sms", "NotATwilioParameter": "x"}
    response = v2.raw("POST", f"/v2/Services/{svc.sid}/Verifications", auth=v2.account, data=data)
    assert response.status_code == 201, response.text
    assert v2.code(to)


# -- AppHash --------------------------------------------------------------------------------------


def test_app_hash_ends_the_sms_and_the_webotp_line_stays(v2: V2) -> None:
    verify = v2.client().verify.v2.services(service(v2.client(), friendly_name="Acme").sid)
    to = new_number()
    assert verify.verifications.create(to=to, channel="sms", app_hash=APP_HASH).status == "pending"
    code = v2.code(to)
    body = v2.sms(to)
    assert body.endswith(APP_HASH), body
    assert body.splitlines()[-1] == f"@{WEBOTP_DOMAIN} #{code} {APP_HASH}", body
    assert body.startswith(f"{code} is your Acme verification code."), body
    assert messages.segments(body) == 1


def test_app_hash_goes_with_its_own_send_only(v2: V2) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    to = new_number()
    verify.verifications.create(to=to, channel="sms", app_hash=APP_HASH)
    assert v2.sms(to, 1).endswith(APP_HASH)
    verify.verifications.create(to=to, channel="sms")  # a resend from the web page: no hash
    assert APP_HASH not in v2.sms(to, 2)


@pytest.mark.parametrize(
    "bad", ["FA+9qCX9VS", "FA+9qCX9VSuu", "FA+9qCX9VS!", "FA+9qCX9 Su", "FA+9qCX9VS\n", "FA-9qCX9VSu", "ÄA+9qCX9VSu"]
)
def test_a_malformed_app_hash_is_60200_naming_app_hash(v2: V2, bad: str) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    to = new_number()
    error = refused(lambda: verify.verifications.create(to=to, channel="sms", app_hash=bad))
    assert (error.status, error.code) == (400, 60200) and "`AppHash`" in error.msg, error.msg


def test_app_hash_with_the_longest_name_and_code_is_one_segment_in_every_locale(v2: V2) -> None:
    client = v2.client()
    verify = client.verify.v2.services(service(client, friendly_name="Acme", code_length=10).sid)
    for locale in sorted(messages.TEMPLATES):
        to = new_number()
        created = verify.verifications.create(
            to=to, channel="sms", locale=locale, custom_friendly_name=LONGEST_NAME, app_hash=APP_HASH
        )
        assert created.status == "pending"
        body = v2.sms(to)
        assert body.endswith(APP_HASH) and LONGEST_NAME in body, body
        assert body.splitlines()[-1].startswith(f"@{WEBOTP_DOMAIN} #"), body
        assert messages.segments(body) == 1, (locale, body)


# -- /v1: the same hash, optional -----------------------------------------------------------------


def _v1_start(v2: V2, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {v2.v1_key}"}
    return httpx.post(v2.base + "/v1/verifications", json=body, headers=headers, timeout=10)


def test_v1_start_takes_an_optional_app_hash(v2: V2) -> None:
    to = new_number()
    response = _v1_start(v2, {"to": to, "app_hash": APP_HASH})
    assert response.status_code == 201, response.text
    assert v2.sms(to).endswith(APP_HASH)
    bad = _v1_start(v2, {"to": new_number(), "app_hash": "short"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "app_hash", bad.text


def test_v1_start_takes_an_optional_template_with_its_substitutions(v2: V2) -> None:
    to = new_number()
    body = {"to": to, "template": "purpose", "substitutions": {"purpose": "confirm your payment"}}
    response = _v1_start(v2, body)
    assert response.status_code == 201, response.text
    code = v2.code(to)
    assert v2.sms(to) == f"{code} is your otp code to confirm your payment.\n\n@{WEBOTP_DOMAIN} #{code}"
    for bad, field in (
        ({"template": "nope"}, "template"),
        ({"template": "purpose"}, "substitutions"),
        ({"template": "purpose", "substitutions": {"purpose": "see evil.com"}}, "substitutions"),
        ({"substitutions": {"purpose": "x"}}, "substitutions"),
    ):
        refused_start = _v1_start(v2, {"to": new_number(), **bad})
        assert refused_start.status_code == 400, refused_start.text
        assert refused_start.json()["error"]["field"] == field, refused_start.text


# -- the text itself ------------------------------------------------------------------------------


def test_render_puts_the_hash_last_with_and_without_webotp() -> None:
    plain = messages.render("123456", app_name="Acme", app_hash=APP_HASH)
    assert plain == f"123456 is your Acme verification code.\n\n{APP_HASH}"
    webotp = messages.render("123456", app_name="Acme", webotp_domain=WEBOTP_DOMAIN, app_hash=APP_HASH)
    assert webotp == f"123456 is your Acme verification code.\n\n@{WEBOTP_DOMAIN} #123456 {APP_HASH}"


@pytest.mark.parametrize("locale", sorted(messages.TEMPLATES))
@pytest.mark.parametrize("domain", ["", WEBOTP_DOMAIN])
def test_render_with_a_hash_is_one_segment_at_the_worst_case(locale: str, domain: str) -> None:
    body = messages.render(LONGEST_CODE, locale=locale, app_name=LONGEST_NAME, webotp_domain=domain, app_hash=APP_HASH)
    assert messages.segments(body) == 1, body
    assert body.endswith(APP_HASH) and LONGEST_NAME in body and LONGEST_CODE in body


def test_a_locale_that_fits_keeps_its_language_with_a_hash() -> None:
    body = messages.render("1234", locale="ja", app_name="Acme", webotp_domain=WEBOTP_DOMAIN, app_hash=APP_HASH)
    assert body.startswith("Acme認証番号1234"), body


@pytest.mark.parametrize("check", [messages.validate_app_hash])
def test_validate_app_hash(check: Callable[[str, str], str]) -> None:
    assert check(APP_HASH, "AppHash") == APP_HASH
    for bad in ("", "FA+9qCX9VS", "FA+9qCX9VSu ", "FA+9qCX9VS=", "FA_9qCX9VSu"):
        with pytest.raises(InvalidInput) as caught:
            check(bad, "AppHash")
        assert caught.value.field == "AppHash"


# -- Tags -----------------------------------------------------------------------------------------


def _stored(v2: V2, verification_id: str) -> Verification:
    """The record as the store keeps it: Verify v2 answers have no place for tags."""

    async def read() -> dict[str, str]:
        client = aioredis.Redis.from_url(str(v2.settings.redis_url))
        try:
            partition = keyspace.partition_of_id(verification_id, v2.settings.partitions)
            raw = await client.hgetall(keyspace.verification(partition, verification_id))
        finally:
            await client.aclose()
        return {records.text(k): records.text(v) for k, v in raw.items()}

    return records.verification(asyncio.run(read()))


def test_tags_are_kept_on_the_verification_and_a_resend_with_tags_replaces_them(v2: V2) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    to = new_number()
    tags = {"flow": "login", "tenant": "ünïcode " + "x" * 240}
    started = verify.verifications.create(to=to, channel="sms", tags=json.dumps(tags))
    assert _stored(v2, started.sid).tags == tags
    verify.verifications.create(to=to, channel="sms")  # a resend without tags keeps them
    assert _stored(v2, started.sid).tags == tags
    verify.verifications.create(to=to, channel="sms", tags=json.dumps({"flow": "resend"}))
    assert _stored(v2, started.sid).tags == {"flow": "resend"}
    assert _stored(v2, verify.verifications.create(to=new_number(), channel="sms").sid).tags == {}


@pytest.mark.parametrize(
    "bad",
    [
        json.dumps({f"k{i}": "v" for i in range(11)}),
        json.dumps({"k": "v" * 257}),
        json.dumps({"k" * 129: "v"}),
        json.dumps({"": "v"}),
        json.dumps({"k": 1}),
        json.dumps(["k"]),
    ],
)
def test_tags_out_of_bounds_are_60200_naming_tags(v2: V2, bad: str) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    error = refused(lambda: verify.verifications.create(to=new_number(), channel="sms", tags=bad))
    assert (error.status, error.code) == (400, 60200) and "`Tags`" in error.msg, error.msg
