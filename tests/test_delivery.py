"""SMS through the real twilio SDK to a loopback Twilio stand-in, and delivery truth from its signed
status callbacks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from delivery_fixtures import AUTH_TOKEN, Live, live_service
from twilio.request_validator import RequestValidator

TO = "+14155550123"


@pytest.fixture
async def live(redis_url: str) -> AsyncIterator[Live]:
    async with live_service(redis_url) as service:
        yield service


async def test_code_reaches_delivered_and_the_check_reports_it(live: Live) -> None:
    vid = (await live.start(TO))["id"]
    attempt = await live.delivery(vid, "delivered")
    assert attempt["message_sid"].startswith("SM")
    assert attempt["segments"] == 1
    assert attempt["price"] and attempt["price_unit"] == "USD"
    [sent] = live.stub.messages
    assert sent.to == TO and sent.from_ == "+15005550006"
    assert sent.status_callback == f"{live.base}/webhooks/twilio/status?v={vid}&n=1"
    checked = await live.http.post(
        "/v1/verifications/check", json={"id": vid, "code": live.code_for(TO)}, headers=live.auth
    )
    body = checked.json()
    assert body["approved"] is True
    assert body["delivery"]["status"] == "delivered"


@pytest.mark.parametrize(
    ("outcome", "status", "code"), [("undelivered", "undelivered", 30003), ("failed", "failed", 30008)]
)
async def test_carrier_failure_is_visible_with_twilios_error_code(
    live: Live, outcome: str, status: str, code: int
) -> None:
    live.stub.script(TO, outcome)
    vid = (await live.start(TO))["id"]
    attempt = await live.delivery(vid, status)
    assert attempt["delivery"]["error_code"] == code


@pytest.mark.parametrize("outcome", ["duplicate", "out_of_order", "early", "delayed"])
async def test_odd_callback_orders_end_delivered_and_never_move_back(live: Live, outcome: str) -> None:
    live.stub.script(TO, outcome, **({"delay": 0.3} if outcome == "delayed" else {}))
    vid = (await live.start(TO))["id"]
    attempt = await live.delivery(vid, "delivered")
    live.stub.wait_for_callbacks(len(live.stub.callbacks_sent), timeout=2)
    assert all(status == 200 for _, _, status in live.stub.callbacks_sent)
    final = (await live.fetch(vid))["send_attempts"][-1]
    assert final["delivery"]["status"] == "delivered"
    assert final["message_sid"] == attempt["message_sid"] == live.stub.messages[-1].sid


async def test_a_send_without_callbacks_is_settled_by_polling(redis_url: str) -> None:
    async with live_service(redis_url, delivery_poll_after=1.0) as live:
        live.stub.script(TO, "silent")
        vid = (await live.start(TO))["id"]
        attempt = await live.delivery(vid, "delivered", timeout=10)
        assert attempt["message_sid"] == live.stub.messages[-1].sid
        assert live.stub.callbacks_sent == []


async def test_twilio_500_then_201_sends_exactly_one_sms(live: Live) -> None:
    live.stub.fail_next(2, status=500)
    vid = (await live.start(TO))["id"]
    attempt = await live.delivery(vid, "delivered")
    assert len(live.stub.messages) == 1
    assert attempt["tries"] == 3


async def test_twilio_timing_out_does_not_send_twice(live: Live) -> None:
    live.stub.hang_next(1, seconds=1.5)  # beyond the SDK timeout of 1 s: the worker gives up, retries
    vid = (await live.start(TO))["id"]
    attempt = await live.delivery(vid, "delivered", timeout=15)
    assert len(live.stub.messages) == 1
    assert attempt["message_sid"] == live.stub.messages[0].sid


async def test_permanent_twilio_error_fails_the_send_visibly(live: Live) -> None:
    live.stub.script(TO, "reject", code=21211)
    vid = (await live.start(TO))["id"]
    attempt = await live.delivery(vid, "failed")
    assert attempt["delivery"]["error_code"] == 21211
    # Twilio's own words for the refusal, with the HTTP status it came with.
    assert attempt["delivery"]["error_message"].startswith("Twilio 400: ")
    assert "Invalid 'To' Phone Number" in attempt["delivery"]["error_message"]
    assert live.stub.messages == []


def signed(live: Live, url: str, params: dict[str, str]) -> dict[str, str]:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    return {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}


async def test_forged_tampered_and_unsigned_callbacks_are_refused_and_change_nothing(live: Live) -> None:
    vid = (await live.start(TO))["id"]
    await live.delivery(vid, "delivered")
    before = await live.fetch(vid)
    url = f"{live.base}/webhooks/twilio/status?v={vid}&n=1"
    params = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "failed", "ErrorCode": "30008"}
    body = urlencode(params)
    async with httpx.AsyncClient() as raw:
        forged = {
            "X-Twilio-Signature": RequestValidator("wrong-token").compute_signature(url, params),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        assert (await raw.post(url, content=body, headers=forged)).status_code == 403
        tampered = signed(live, url, {**params, "MessageStatus": "sent"})
        assert (await raw.post(url, content=body, headers=tampered)).status_code == 403
        other_url = signed(live, f"{live.base}/webhooks/twilio/status?v={vid}&n=2", params)
        assert (await raw.post(url, content=body, headers=other_url)).status_code == 403
        unsigned = await raw.post(url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert unsigned.status_code == 403
        assert unsigned.json()["error"]["field"] == "X-Twilio-Signature"
    assert await live.fetch(vid) == before


async def test_a_signed_callback_for_an_unknown_send_is_accepted_and_ignored(live: Live) -> None:
    url = f"{live.base}/webhooks/twilio/status?v=VE{'0' * 32}&n=1"
    params = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"}
    async with httpx.AsyncClient() as raw:
        response = await raw.post(url, content=urlencode(params), headers=signed(live, url, params))
    assert response.status_code == 200
