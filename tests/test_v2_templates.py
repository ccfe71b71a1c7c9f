"""TemplateSid, the service's DefaultTemplateSid and TemplateCustomSubstitutions pick and fill one
of otp's templates (otp.core.messages.CATALOGUE, listed by GET /v2/Templates), and Tags come back
on the attempts: through the official `twilio` SDK against a served otp, the SMS read at the Twilio
stand-in, every answer held to Twilio's OpenAPI document (``test_twilio_compat``'s contract)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from test_twilio_compat import V2, new_number, refused, serve, service

from otp.core import messages, templates

SIGN_IN = templates.sid_of("sign_in")
DO_NOT_SHARE = templates.sid_of("do_not_share")
PURPOSE = templates.sid_of("purpose")
VERIFICATION = templates.sid_of(messages.VERIFICATION)


@pytest.fixture
def v2(redis_url: str) -> Iterator[V2]:
    with serve(redis_url) as live:
        yield live


def _filled(text: str, code: str, name: str, **values: str) -> str:
    """A listed translation with Twilio's placeholders filled in, as the SMS should read."""
    filled = text.replace("{{code}}", code).replace("{{friendly_name}}", name)
    for variable, value in values.items():
        filled = filled.replace("{{" + variable + "}}", value)
    return filled


def _listed(v2: V2) -> dict[str, Any]:
    return {t.sid: t for t in v2.client().verify.v2.templates.list()}


def test_templates_lists_each_of_otps_templates_with_its_translations(v2: V2) -> None:
    listed = _listed(v2)
    assert set(listed) == {VERIFICATION, SIGN_IN, DO_NOT_SHARE, PURPOSE}
    assert set(listed[VERIFICATION].translations) == set(messages.TEMPLATES)
    assert listed[SIGN_IN].translations["en"]["text"] == "{{code}} is your {{friendly_name}} sign-in code."
    assert listed[PURPOSE].translations["en"]["text"] == "{{code}} is your {{friendly_name}} code to {{purpose}}."
    for template in listed.values():
        assert template.channels == ["sms"] and template.translations["en"]["is_default_translation"]
    by_name = v2.client().verify.v2.templates.list(friendly_name=listed[SIGN_IN].friendly_name)
    assert [t.sid for t in by_name] == [SIGN_IN]
    paged = v2.client().verify.v2.templates.list(page_size=1)
    assert [t.sid for t in paged] == list(listed)


@pytest.mark.parametrize(
    ("sid", "locale"), [(SIGN_IN, "en"), (SIGN_IN, "es"), (DO_NOT_SHARE, "fr"), (VERIFICATION, "de")]
)
def test_template_sid_picks_the_sms_text_in_the_locale(v2: V2, sid: str, locale: str) -> None:
    verify = v2.client().verify.v2.services(service(v2.client(), friendly_name="Acme").sid)
    to = new_number()
    assert verify.verifications.create(to=to, channel="sms", template_sid=sid, locale=locale).status == "pending"
    code = v2.code(to)
    assert v2.sms(to) == _filled(_listed(v2)[sid].translations[locale]["text"], code, "Acme")


def test_a_template_not_written_in_the_locale_is_sent_in_english(v2: V2) -> None:
    verify = v2.client().verify.v2.services(service(v2.client(), friendly_name="Acme").sid)
    to = new_number()
    verify.verifications.create(to=to, channel="sms", template_sid=DO_NOT_SHARE, locale="ja")
    code = v2.code(to)
    assert v2.sms(to) == f"{code} is your Acme verification code. Don't share it with anyone."


def test_the_services_default_template_is_used_unless_the_start_names_another(v2: V2) -> None:
    client = v2.client()
    svc = service(client, friendly_name="Acme", default_template_sid=SIGN_IN)
    assert svc.default_template_sid == SIGN_IN
    verify = client.verify.v2.services(svc.sid)
    first, second = new_number(), new_number()
    verify.verifications.create(to=first, channel="sms")
    assert v2.sms(first) == f"{v2.code(first)} is your Acme sign-in code."
    verify.verifications.create(to=second, channel="sms", template_sid=VERIFICATION)
    assert v2.sms(second) == f"{v2.code(second)} is your Acme verification code."
    # Each send its own: a resend with another template sends that one.
    verify.verifications.create(to=first, channel="sms", template_sid=DO_NOT_SHARE)
    assert "Don't share it" in v2.sms(first, 2)


def test_custom_substitutions_fill_the_templates_variables(v2: V2) -> None:
    verify = v2.client().verify.v2.services(service(v2.client(), friendly_name="Acme").sid)
    to = new_number()
    verify.verifications.create(
        to=to,
        channel="sms",
        template_sid=PURPOSE,
        template_custom_substitutions=json.dumps({"purpose": "confirm your payment"}),
    )
    code = v2.code(to)
    text = _listed(v2)[PURPOSE].translations["en"]["text"]
    assert v2.sms(to) == _filled(text, code, "Acme", purpose="confirm your payment")
    assert v2.sms(to) == f"{code} is your Acme code to confirm your payment."
    assert messages.segments(v2.sms(to)) == 1


@pytest.mark.parametrize(
    ("sid", "substitutions", "why"),
    [
        (PURPOSE, {"purpose": "log in at evil.com"}, "link"),
        (PURPOSE, {"purpose": "visit www now"}, "link"),
        (PURPOSE, {"purpose": "https://x"}, "link"),
        (PURPOSE, {"purpose": "x" * 31}, "30"),
        (PURPOSE, {"purpose": "pay 123456"}, "digits"),
        (PURPOSE, {"purpose": "смс"}, "GSM-7"),
        (PURPOSE, {"purpose": 5}, "string"),
        (PURPOSE, {}, "purpose"),
        (PURPOSE, {"purpose": "pay", "amount": "5"}, "amount"),
        (SIGN_IN, {"purpose": "pay"}, "none"),
    ],
)
def test_bad_substitutions_are_60200_naming_the_parameter(
    v2: V2, sid: str, substitutions: dict[str, Any], why: str
) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    to = new_number()
    error = refused(
        lambda: verify.verifications.create(
            to=to, channel="sms", template_sid=sid, template_custom_substitutions=json.dumps(substitutions)
        )
    )
    assert (error.status, error.code) == (400, 60200), error.msg
    assert "`TemplateCustomSubstitutions`" in error.msg and why in error.msg, error.msg
    assert not [m for m in v2.stub.messages if m.to == to]


def test_a_template_with_variables_needs_them_and_non_json_is_refused(v2: V2) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    missing = refused(lambda: verify.verifications.create(to=new_number(), channel="sms", template_sid=PURPOSE))
    assert (missing.status, missing.code) == (400, 60200) and "`TemplateCustomSubstitutions`" in missing.msg
    for raw in ("{purpose: 1}", "[]", '{"purpose": "a", "purpose": "b"}'):
        error = refused(
            lambda r=raw: verify.verifications.create(
                to=new_number(), channel="sms", template_sid=PURPOSE, template_custom_substitutions=r
            )
        )
        assert (error.status, error.code) == (400, 60200) and "TemplateCustomSubstitutions" in error.msg, error.msg


def test_an_unknown_template_sid_is_twilios_60228_and_a_malformed_one_60200(v2: V2) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    to = new_number()
    unknown = refused(lambda: verify.verifications.create(to=to, channel="sms", template_sid="HJ" + "0" * 32))
    assert (unknown.status, unknown.code) == (400, 60228) and "`TemplateSid`" in unknown.msg, unknown.msg
    malformed = refused(lambda: verify.verifications.create(to=to, channel="sms", template_sid="HJ123"))
    assert (malformed.status, malformed.code) == (400, 60200) and "`TemplateSid`" in malformed.msg
    assert not [m for m in v2.stub.messages if m.to == to]
    # A service's default must be one of otp's too, refused when it is set rather than at a start.
    client = v2.client()
    bad_default = refused(lambda: service(client, default_template_sid="HJ" + "0" * 32))
    assert (bad_default.status, bad_default.code) == (400, 60228) and "`DefaultTemplateSid`" in bad_default.msg
    svc = service(client)
    update = refused(lambda: client.verify.v2.services(svc.sid).update(default_template_sid="HJ" + "f" * 32))
    assert (update.status, update.code) == (400, 60228)


# -- Tags on attempts -----------------------------------------------------------------------------


def test_tags_come_back_on_the_attempts_list_and_fetch(v2: V2) -> None:
    client = v2.client()
    svc = service(client)
    verify = client.verify.v2.services(svc.sid)
    to = new_number()
    tags = {"flow": "login", "request": "r-123"}
    started = verify.verifications.create(to=to, channel="sms", tags=json.dumps(tags))
    v2.code(to)
    untagged = verify.verifications.create(to=new_number(), channel="sms")
    listed = {a.verification_sid: a for a in client.verify.v2.verification_attempts.list(verify_service_sid=svc.sid)}
    assert listed[started.sid].channel_data["tags"] == tags
    assert listed[untagged.sid].channel_data["tags"] == {}
    attempt_sid = started.send_code_attempts[0]["attempt_sid"]
    fetched = client.verify.v2.verification_attempts(attempt_sid).fetch()
    assert fetched.channel_data["tags"] == tags
    # A resend with new tags replaces them, on every attempt of the verification.
    verify.verifications.create(to=to, channel="sms", tags=json.dumps({"flow": "resend"}))
    assert client.verify.v2.verification_attempts(attempt_sid).fetch().channel_data["tags"] == {"flow": "resend"}
