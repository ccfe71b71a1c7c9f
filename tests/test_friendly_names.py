"""The name in the SMS ("… is your <name> verification code.") is not a phishing vector and never
costs a second segment: one validator (`otp.core.messages.validate_app_name`) for every way a name
reaches the SMS -- /v2 Service FriendlyName, /v2 CustomFriendlyName, OTP_APP_NAME.

Issue 11 found ``CustomFriendlyName=secure-paypal.com`` sent as is, and 30 × ``𝐀`` sent as 2 segments.
"""

from __future__ import annotations

import itertools

import httpx
import pytest
from conftest import Service
from hypothesis import example, given, settings
from hypothesis import strategies as st

from otp.core import apikeys, messages, services
from otp.errors import ConfigError, InvalidInput
from otp.settings import Settings

LONGEST_CODE = "9" * 10  # OTP_CODE_LENGTH and a service's CodeLength go up to 10
WEBOTP_DOMAIN = "example.com"
LATIN_SCRIPT_LOCALES = ["en", "es", "fr", "de", "pt", "it", "nl"]

LINKS = [
    "secure-paypal.com",
    "paypal.com",
    "PAYPAL.COM",
    "login.paypal",
    "bit.ly",
    "paypal .com",
    "Acme..com",
    "10.0.0.1",
    "www paypal",
    "Secure WWW",
    "https://paypal",
    "paypal:/x",
    "paypal/login",
]
OUTSIDE_GSM7_OR_TRICKY = [
    "𝐀" * 30,  # mathematical bold capital A: UCS-2, two UTF-16 units each
    "𝐀",
    "Ａcme",  # fullwidth A
    "Açme",  # the capital "Ç" is GSM-7, the lowercase "ç" is not
    "Acmú",  # "ù" is GSM-7, "ú" is not
    "Ωmega",  # Greek capitals are GSM-7, but not letters the name alphabet allows (homoglyph room)
    "Acme\u200b",  # zero-width space
    "Acme\nBank",
    "Acme\tBank",
    "Acme\u00a0Bank",  # no-break space
    "Acme {EU}",  # extension table: two septets each
    "Acme €",
    "Acme ~",
    "@example.com #123456",  # would forge a WebOTP line
    "Acme #1",
    "Acme @home",
    'Acme "Bank"',
    "Acme <b>",
    "Acme;drop",
    "Acme*",
]
ACCEPTED = [
    ("Acme", "Acme"),
    ("  Acme  ", "Acme"),
    ("Acme Inc.", "Acme Inc."),
    ("Acme, Inc. EU", "Acme, Inc. EU"),
    ("O'Reilly & Sons", "O'Reilly & Sons"),
    ("Acme (EU)", "Acme (EU)"),
    ("Acme-Shop_2024", "Acme-Shop_2024"),
    ("Zürich Bank", "Zürich Bank"),
    ("Ñandù Øre Åsa Æbler Straße É", "Ñandù Øre Åsa Æbler Straße É"),
    ("ÇA ÄÖÜ äöü àèéìò", "ÇA ÄÖÜ äöü àèéìò"),
    ("Go!", "Go!"),
    ("Northwind Traders Secure Login", "Northwind Traders Secure Login"),
]


@pytest.mark.parametrize("name", LINKS)
def test_names_that_look_like_links_or_domains_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as error:
        messages.validate_app_name(name, "CustomFriendlyName")
    assert error.value.field == "CustomFriendlyName"
    assert error.value.status == 400


@pytest.mark.parametrize("name", OUTSIDE_GSM7_OR_TRICKY)
def test_names_outside_the_allowed_gsm7_alphabet_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as error:
        messages.validate_app_name(name, "FriendlyName")
    assert error.value.field == "FriendlyName"


@pytest.mark.parametrize("name", ["", "   ", "x" * 31, "Call 0800 123 456", "12345"])
def test_empty_long_and_number_like_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as error:
        messages.validate_app_name(name, "OTP_APP_NAME")
    assert error.value.field == "OTP_APP_NAME"


@pytest.mark.parametrize(("name", "kept"), ACCEPTED)
def test_plain_names_are_accepted_trimmed(name: str, kept: str) -> None:
    assert messages.validate_app_name(name, "FriendlyName") == kept


def test_every_allowed_character_costs_one_unit_in_either_encoding() -> None:
    """The segment proof below rests on this: each character of an allowed name is one GSM-7
    septet (basic set, not the two-septet extension table) and one UTF-16 code unit, so a name of
    the longest allowed length is the worst case, whatever its characters."""
    for ch in messages.APP_NAME_ALPHABET:
        assert messages.encoding(ch) == messages.GSM7, repr(ch)
        assert messages.segments(ch * 160) == 1, repr(ch)  # one septet: 160 of them fit
        assert len(ch.encode("utf-16-le")) == 2, repr(ch)
    assert "@" not in messages.APP_NAME_ALPHABET and "#" not in messages.APP_NAME_ALPHABET
    assert "\n" not in messages.APP_NAME_ALPHABET and ":" not in messages.APP_NAME_ALPHABET


def _assert_one_segment_everywhere(name: str) -> None:
    for locale in messages.TEMPLATES:
        for domain in ("", WEBOTP_DOMAIN):
            body = messages.render(LONGEST_CODE, locale=locale, app_name=name, webotp_domain=domain)
            assert messages.segments(body) == 1, f"{locale}: {messages.encoding(body)} {body!r}"
            if locale in LATIN_SCRIPT_LOCALES:
                assert messages.encoding(body) == messages.GSM7, f"{locale}: {body!r}"


@pytest.mark.parametrize("ch", sorted(messages.APP_NAME_ALPHABET))
def test_the_longest_name_of_each_allowed_character_is_one_segment_in_every_locale(ch: str) -> None:
    # Digits are capped (a name must not read like a code), so they pad a name of letters.
    name = ("A" * (messages.APP_NAME_MAX - 1) + ch) if ch.isdigit() else ch * messages.APP_NAME_MAX
    try:
        accepted = messages.validate_app_name(name, "FriendlyName")
    except InvalidInput:
        accepted = messages.validate_app_name("A" * (messages.APP_NAME_MAX - 1) + ch, "FriendlyName")
    assert len(accepted) <= messages.APP_NAME_MAX
    _assert_one_segment_everywhere(accepted)


# A mixed alphabet: every allowed character, and characters that must never get through.
_CANDIDATES = sorted(messages.APP_NAME_ALPHABET) + list('@#:/\n\t{}[]~|€^\\çΩΔ\u00a0\u200b𝐀Ａ<>";*+=%$')


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(_CANDIDATES), min_size=0, max_size=40))
@example("secure-paypal.com")
@example("𝐀" * 30)
@example("Northwind Traders Secure Login")
@example("x" * 30)
def test_every_accepted_name_keeps_every_template_at_one_segment(name: str) -> None:
    _check_property(name)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(sorted(messages.APP_NAME_ALPHABET)), min_size=25, max_size=31))
def test_every_accepted_name_of_allowed_characters_keeps_every_template_at_one_segment(name: str) -> None:
    """The same property where most names are accepted: long ones, of allowed characters only."""
    _check_property(name)


def _check_property(name: str) -> None:
    try:
        accepted = messages.validate_app_name(name, "CustomFriendlyName")
    except InvalidInput as error:
        assert error.field == "CustomFriendlyName" and error.status == 400
        return
    assert 1 <= len(accepted) <= messages.APP_NAME_MAX
    assert set(accepted) <= messages.APP_NAME_ALPHABET
    assert "www" not in accepted.lower() and "://" not in accepted
    assert not any(a == "." and b.isalnum() for a, b in itertools.pairwise(accepted))
    _assert_one_segment_everywhere(accepted)


# -- OTP_APP_NAME -------------------------------------------------------------------------------


def test_otp_app_name_is_validated_at_startup() -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"OTP_APP_NAME": "secure-paypal.com"})
    assert "OTP_APP_NAME" in str(error.value)
    with pytest.raises(ConfigError, match="OTP_APP_NAME"):
        Settings.from_env({"OTP_APP_NAME": "𝐀" * 30})
    assert Settings.from_env({"OTP_APP_NAME": " Acme Login "}).app_name == "Acme Login"
    assert Settings.from_env({}).app_name == "otp"


# -- /v2: Service FriendlyName and CustomFriendlyName ---------------------------------------------


async def twilio_account(service: Service) -> tuple[str, httpx.BasicAuth]:
    key, token = await apikeys.create(service.app.state.store, "twilio-account", twilio=True)
    return key.key_id, httpx.BasicAuth(key.key_id, token.split("_")[2])


async def post(service: Service, auth: httpx.BasicAuth, path: str, data: dict[str, str]) -> httpx.Response:
    return await service.http.post(path, data=data, auth=auth)


def assert_twilio_400(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 60200
    assert f"`{field}`" in response.json()["message"]


@pytest.mark.parametrize("name", ["secure-paypal.com", "𝐀" * 30, "www secure", "@example.com #123456"])
async def test_v2_service_friendly_name_is_refused_at_create_and_update(service: Service, name: str) -> None:
    _, auth = await twilio_account(service)
    assert_twilio_400(await post(service, auth, "/v2/Services", {"FriendlyName": name}), "FriendlyName")
    created = await post(service, auth, "/v2/Services", {"FriendlyName": "Acme"})
    assert created.status_code == 201
    sid = created.json()["sid"]
    assert_twilio_400(await post(service, auth, f"/v2/Services/{sid}", {"FriendlyName": name}), "FriendlyName")
    fetched = await service.http.get(f"/v2/Services/{sid}", auth=auth)
    assert fetched.json()["friendly_name"] == "Acme"


@pytest.mark.parametrize("name", ["secure-paypal.com", "𝐀" * 30, "paypal .com", "Acme\nBank"])
async def test_v2_custom_friendly_name_is_refused(service: Service, name: str) -> None:
    _, auth = await twilio_account(service)
    sid = (await post(service, auth, "/v2/Services", {"FriendlyName": "Acme"})).json()["sid"]
    data = {"To": "+15017122661", "Channel": "sms", "CustomFriendlyName": name}
    response = await post(service, auth, f"/v2/Services/{sid}/Verifications", data)
    assert_twilio_400(response, "CustomFriendlyName")
    assert await service.deliver() == 0  # nothing was queued


async def test_v2_longest_custom_friendly_name_and_code_make_a_one_segment_sms(no_cooldown: Service) -> None:
    service, sender = no_cooldown, no_cooldown.sender
    _, auth = await twilio_account(service)
    params = {"FriendlyName": "Acme", "CodeLength": "10"}
    sid = (await post(service, auth, "/v2/Services", params)).json()["sid"]
    name = "Ñandù Øre Åsa Æbler Straße (E)"
    assert len(name) == messages.APP_NAME_MAX
    for locale in sorted(messages.TEMPLATES):
        to = f"+1501712{len(sender.messages):04d}"
        data = {"To": to, "Channel": "sms", "CustomFriendlyName": name, "Locale": locale}
        assert (await post(service, auth, f"/v2/Services/{sid}/Verifications", data)).status_code == 201
        await service.deliver()
        body = sender.messages[-1].body
        assert name in body and messages.segments(body) == 1, body


async def test_a_stored_service_name_that_is_no_longer_allowed_is_not_sent(service: Service) -> None:
    """A service saved before the rule (or written around the API) cannot put its name in an SMS:
    the verification is refused naming FriendlyName, so the owner knows to rename it."""
    account, auth = await twilio_account(service)
    legacy = await services.create(
        service.app.state.store, account, {"FriendlyName": "secure-paypal.com"}, now=service.clock()
    )
    data = {"To": "+15017122661", "Channel": "sms"}
    response = await post(service, auth, f"/v2/Services/{legacy.sid}/Verifications", data)
    assert_twilio_400(response, "FriendlyName")
    assert await service.deliver() == 0
