"""Resend semantics an app can rely on (issue 14): a verification's first resend is free, the
per-number cooldown (OTP_RESEND_COOLDOWN, 10 s by default) doubles with each send to the number in
the hour, across verifications and for loops, and the hourly cap stops what's left. Injected time."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import NO_PUMPING, Clock, RecordingSender, Service, make_settings, policy, running_service
from test_twilio_compat import CODE_IN_SMS, new_number, refused, retry_after, serve, service

TO = "+15017122661"


def error(response: Any) -> dict[str, Any]:
    return dict(response.json()["error"])


async def test_resend_at_once_and_after_the_cooldown_gets_both_codes_on_v1(service: Service) -> None:
    started = await service.start(TO)
    assert started.status_code == 201
    vid = started.json()["id"]
    at_once = await service.start(TO)  # the user presses Resend at once
    assert at_once.status_code == 201
    assert at_once.json()["id"] == vid
    too_soon = await service.start(TO)
    assert error(too_soon)["code"] == "resend_too_soon"
    assert too_soon.headers["Retry-After"] == "10"
    service.clock.advance(10)
    later = await service.start(TO)  # and again once the cooldown is over
    assert later.status_code == 201
    assert later.json()["id"] == vid
    await service.deliver()
    codes = service.sender.codes_for(TO)
    assert len(codes) == 3  # every send was an SMS
    assert (await service.check(codes[-1], id=vid)).json()["approved"] is True


def test_resend_at_once_and_after_the_cooldown_gets_both_codes_on_v2_with_the_sdk(redis_url: str) -> None:
    clock = Clock()
    with serve(redis_url, limits={"resend_cooldown": 10, **NO_PUMPING}, clock=clock) as v2:
        client = v2.client()
        verify = client.verify.v2.services(service(client).sid)
        to = new_number()
        first = verify.verifications.create(to=to, channel="sms")
        at_once = verify.verifications.create(to=to, channel="sms")  # Resend, at once
        assert at_once.sid == first.sid and at_once.status == "pending"
        too_soon = refused(lambda: verify.verifications.create(to=to, channel="sms"))
        assert (too_soon.status, too_soon.code) == (429, 20429)
        assert retry_after(client) == 10
        clock.advance(10)
        later = verify.verifications.create(to=to, channel="sms", custom_friendly_name="Acme Express")
        assert later.sid == first.sid
        assert len({a["attempt_sid"] for a in later.send_code_attempts}) == 3
        v2.code(to, nth=3)  # all three SMS went out
        bodies = [m.body for m in v2.stub.messages if m.to == to]
        assert len({CODE_IN_SMS.findall(b)[0] for b in bodies}) == 3
        # The worker may send them in any order: the last resend is the one with the custom name.
        [last] = [b for b in bodies if "Acme Express" in b]
        checked = verify.verification_checks.create(verification_sid=first.sid, code=CODE_IN_SMS.findall(last)[0])
        assert (checked.status, checked.valid) == ("approved", True)


@pytest.mark.parametrize(
    ("cancel_each", "expected_sends", "too_soon"),
    [(True, [0, 10, 30, 70], 9 + 19 + 39), (False, [0, 1, 11, 31], 9 + 19)],
    ids=["new-verifications", "resends"],
)
async def test_a_loop_of_starts_is_spaced_by_the_doubling_cooldown_and_stopped_by_the_hourly_cap(
    redis_url: str, clock: Clock, sender: RecordingSender, cancel_each: bool, expected_sends: list[int], too_soon: int
) -> None:
    """A client that starts the same number again and again, a second apart (as a loop or a bot
    would): cancelling each verification so every start is a new one, each waits
    10 s × 2^(sends in the hour − 1); resending, only the first resend is free and each next one
    waits 10 s × 2^(sends in the hour − 2). Either way the hourly cap (4 here) ends the run."""
    settings = make_settings(redis_url, policy=policy(number_sends_per_hour=4, **NO_PUMPING))
    async with running_service(settings, clock, sender) as svc:
        t0 = clock()
        sent_at: list[float] = []
        refusals: dict[str, int] = {}
        while clock() - t0 < 3600:
            response = await svc.start(TO)
            if response.status_code == 201:
                sent_at.append(clock() - t0)
                if cancel_each:
                    vid = response.json()["id"]
                    cancel = await svc.http.post(f"/v1/verifications/{vid}/cancel", headers=svc.auth())
                    assert cancel.status_code == 200, cancel.text
            else:
                assert response.status_code == 429
                reason = error(response)["code"]
                refusals[reason] = refusals.get(reason, 0) + 1
                if reason == "number_hourly_limit":
                    # Until the first send leaves the hour.
                    assert int(response.headers["Retry-After"]) == 3600 + expected_sends[0] - (clock() - t0)
                    break
                assert reason == "resend_too_soon"
            clock.advance(1)
        assert sent_at == expected_sends
        assert refusals == {"resend_too_soon": too_soon, "number_hourly_limit": 1}


async def test_a_new_verification_right_after_an_approved_one_waits_the_cooldown(service: Service) -> None:
    started = await service.start(TO)
    vid = started.json()["id"]
    code = await service.last_code(TO)
    assert (await service.check(code, id=vid)).json()["approved"] is True
    again = await service.start(TO)
    assert again.status_code == 429
    assert error(again)["code"] == "resend_too_soon"
    assert again.headers["Retry-After"] == "10"
    service.clock.advance(9)
    assert error(await service.start(TO))["code"] == "resend_too_soon"
    service.clock.advance(1)
    new = await service.start(TO)
    assert new.status_code == 201
    assert new.json()["id"] != vid


async def test_a_second_sign_in_in_the_hour_still_gets_its_first_resend_at_once(service: Service) -> None:
    """The free resend is the verification's own: sends to the number earlier in the hour (another
    sign-in) make its later resends and the next verification wait longer, not this one."""
    first = (await service.start(TO)).json()["id"]
    assert (await service.check(await service.last_code(TO), id=first)).json()["approved"] is True
    service.clock.advance(600)
    second = await service.start(TO)
    assert second.status_code == 201
    resent = await service.start(TO)
    assert resent.status_code == 201
    assert resent.json()["id"] == second.json()["id"]
    # 3 sends in the hour: the next resend waits 10 s × 2^(3 − 2) after the last one.
    assert (await service.start(TO)).headers["Retry-After"] == "20"


async def test_a_first_resend_after_another_tenants_send_waits_as_a_start(service: Service) -> None:
    """Another tenant's send to the number came between this verification's send and its resend:
    the resend is not free then, and the reply doesn't tell about the other tenant's send."""
    other_key = service.admin_key  # another API key: another tenant for the number's state
    assert (await service.start(TO)).status_code == 201
    service.clock.advance(30)
    theirs = await service.http.post("/v1/verifications", json={"to": TO}, headers=service.auth(other_key))
    assert theirs.status_code == 201
    mine = await service.start(TO)
    assert mine.status_code == 429
    assert error(mine)["code"] == "rate_limited"
