"""Verifications addressed by phone number, Twilio's documented form
(``services(sid).verifications('+15017122661').fetch()`` / ``.update(status=…)``), and CustomCode
on a service that hasn't enabled it -- through the official Python SDK against the live app, every
answer held to Twilio's OpenAPI document (``test_twilio_compat``'s contract client)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from conftest import Service
from test_twilio_compat import V2, new_number, refused, serve
from test_twilio_compat import service as new_service

from otp.core import apikeys


@pytest.fixture
def v2(redis_url: str) -> Iterator[V2]:
    with serve(redis_url) as live:
        yield live


def _verify(v2: V2, who: tuple[str, str] | None = None, **params: Any) -> Any:
    client = v2.client(who)
    return client.verify.v2.services(new_service(client, **params).sid)


def _not_found(call: Any) -> None:
    error = refused(call)
    assert (error.status, error.code) == (404, 20404), (error.status, error.code, error.msg)


def test_fetch_and_cancel_by_number_reach_the_pending_verification(v2: V2) -> None:
    verify = _verify(v2)
    to = new_number()
    started = verify.verifications.create(to=to, channel="sms")

    fetched = verify.verifications(to).fetch()
    assert (fetched.sid, fetched.status, fetched.to, fetched.valid) == (started.sid, "pending", to, False)
    # The number as people type it, parsed with the default region as To is.
    national = f"({to[2:5]}) {to[5:8]}-{to[8:]}"
    assert verify.verifications(national).fetch().sid == started.sid
    assert verify.verifications(to[2:]).fetch().sid == started.sid

    canceled = verify.verifications(to).update(status="canceled")
    assert (canceled.sid, canceled.status, canceled.valid) == (started.sid, "canceled", False)
    # Nothing pending any more, by number or by sid.
    _not_found(lambda: verify.verifications(to).fetch())
    _not_found(lambda: verify.verifications(to).update(status="canceled"))
    _not_found(lambda: verify.verifications(started.sid).fetch())


def test_approve_by_number_then_a_new_verification_is_the_one_the_number_names(v2: V2) -> None:
    verify = _verify(v2)
    to = new_number()
    first = verify.verifications.create(to=to, channel="sms")
    approved = verify.verifications(to).update(status="approved")
    assert (approved.sid, approved.status, approved.valid) == (first.sid, "approved", True)
    _not_found(lambda: verify.verifications(to).fetch())
    _not_found(lambda: verify.verifications(to).update(status="approved"))

    second = verify.verifications.create(to=to, channel="sms")
    assert second.sid != first.sid
    assert verify.verifications(to).fetch().sid == second.sid
    # A resend keeps the verification: the number still names it.
    assert verify.verifications.create(to=to, channel="sms").sid == second.sid
    assert verify.verifications(to).fetch().sid == second.sid


def test_percent_encoded_plus_is_the_same_number(v2: V2) -> None:
    client = v2.client()
    sid = new_service(client).sid
    to = new_number()
    started = client.verify.v2.services(sid).verifications.create(to=to, channel="sms")
    path = f"/v2/Services/{sid}/Verifications/{quote(to, safe='')}"
    answer = v2.raw("GET", path, auth=v2.account)
    assert answer.status_code == 200 and answer.json()["sid"] == started.sid


def test_a_number_with_nothing_pending_is_twilios_404(v2: V2) -> None:
    verify = _verify(v2)
    to = new_number()
    _not_found(lambda: verify.verifications(to).fetch())
    for status in ("canceled", "approved"):
        _not_found(lambda s=status: verify.verifications(to).update(status=s))


def test_a_verification_out_of_check_attempts_is_not_pending(v2: V2) -> None:
    verify = _verify(v2)
    to = new_number()
    started = verify.verifications.create(to=to, channel="sms")
    code = v2.code(to)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        verify.verification_checks.create(to=to, code=wrong)
    assert verify.verifications(started.sid).fetch().status == "max_attempts_reached"
    _not_found(lambda: verify.verifications(to).fetch())
    _not_found(lambda: verify.verifications(to).update(status="approved"))


def test_a_number_never_reaches_another_services_or_accounts_verification(v2: V2) -> None:
    client = v2.client()
    mine_sid = new_service(client, friendly_name="Alpha").sid
    mine = client.verify.v2.services(mine_sid)
    sibling = client.verify.v2.services(new_service(client, friendly_name="Beta").sid)
    stranger = _verify(v2, v2.other, friendly_name="Gamma")
    to = new_number()
    started = mine.verifications.create(to=to, channel="sms")

    for other in (sibling, stranger):
        _not_found(lambda o=other: o.verifications(to).fetch())
        for status in ("canceled", "approved"):
            _not_found(lambda o=other, s=status: o.verifications(to).update(status=s))
    # The other account can't address it through the owner's service either.
    foreign = v2.client(v2.other).verify.v2.services(mine_sid)
    _not_found(lambda: foreign.verifications(to).fetch())
    _not_found(lambda: foreign.verifications(to).update(status="approved"))
    # Untouched by all of that.
    assert mine.verifications(to).fetch().status == "pending"
    assert mine.verifications(started.sid).fetch().status == "pending"

    # Each service's own verification of the same number is its own.
    theirs = sibling.verifications.create(to=to, channel="sms")
    assert theirs.sid != started.sid
    assert sibling.verifications(to).update(status="canceled").sid == theirs.sid
    assert mine.verifications(to).fetch().sid == started.sid


async def test_an_expired_verification_is_not_pending(service: Service) -> None:
    """Time moved by the injected clock, so in process rather than through the SDK's live server."""
    _, token = await apikeys.create(service.app.state.store, "sdk", twilio=True)
    _, account_sid, auth_token = token.split("_")
    auth = {"Authorization": "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()}
    created = await service.http.post("/v2/Services", data={"FriendlyName": "Acme"}, headers=auth)
    path = f"/v2/Services/{created.json()['sid']}/Verifications"
    to = new_number()
    started = await service.http.post(path, data={"To": to, "Channel": "sms"}, headers=auth)
    assert started.status_code == 201, started.text
    fetched = await service.http.get(f"{path}/{to}", headers=auth)
    assert fetched.status_code == 200 and fetched.json()["sid"] == started.json()["sid"]

    service.clock.advance(service.app.state.verifier.rules.code_ttl + 1)
    for answer in (
        await service.http.get(f"{path}/{to}", headers=auth),
        await service.http.post(f"{path}/{to}", data={"Status": "approved"}, headers=auth),
    ):
        assert (answer.status_code, answer.json()["code"]) == (404, 20404), answer.text


@pytest.mark.parametrize(
    "sid",
    [
        "not-a-number",
        "VE123",
        "VE" + "g" * 32,
        "VE" + "A" * 32,  # upper-case hex: not a sid otp issues
        "+1",
        "+999999999999999",
        "+1415555",
        "1" * 300,
        "+1 800 FLOWERS",
        "\u0661\u0662\u0663",
        "%00",
    ],
)
def test_a_malformed_sid_is_a_clean_404(v2: V2, sid: str) -> None:
    verify = _verify(v2)
    _not_found(lambda: verify.verifications(sid).fetch())
    _not_found(lambda: verify.verifications(sid).update(status="canceled"))


def test_update_by_number_still_checks_status(v2: V2) -> None:
    verify = _verify(v2)
    to = new_number()
    verify.verifications.create(to=to, channel="sms")
    bogus = refused(lambda: verify.verifications(to).update(status="pending"))
    assert (bogus.status, bogus.code) == (400, 60200) and "`Status`" in bogus.msg
    assert verify.verifications(to).fetch().status == "pending"


def test_custom_code_without_custom_code_enabled_is_twilios_60204(v2: V2) -> None:
    plain = _verify(v2)
    to = new_number()
    error = refused(lambda: plain.verifications.create(to=to, channel="sms", custom_code="424242"))
    assert (error.status, error.code) == (403, 60204), (error.status, error.code, error.msg)
    assert "CustomCodeEnabled" in error.msg and "`CustomCode`" in error.msg
    # Refused before anything was started or sent.
    _not_found(lambda: plain.verifications(to).fetch())
    assert not [m for m in v2.stub.messages if m.to == to]
    # An invalid code on a service that allows them is still a bad parameter.
    custom = _verify(v2, custom_code_enabled=True)
    bad = refused(lambda: custom.verifications.create(to=new_number(), channel="sms", custom_code="12ab"))
    assert (bad.status, bad.code) == (400, 60200) and "`CustomCode`" in bad.msg
