"""The worker's Twilio sender, on the event loop against the stand-in: what a send Twilio never
answered in time becomes, and how the retry finds it instead of sending the code again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from delivery_fixtures import ACCOUNT_SID, AUTH_TOKEN

from otp.devtools.twilio_stub import TwilioStub
from otp.edge.sms import SendError, SmsMessage
from otp.edge.twilio_sender import TwilioSender

TO = "+14155550123"
FROM = "+15005550006"


@pytest.fixture
def stub() -> Iterator[TwilioStub]:
    with TwilioStub(ACCOUNT_SID, AUTH_TOKEN) as running:
        yield running


async def test_a_send_that_timed_out_is_found_by_the_retry_so_one_sms_goes_out(stub: TwilioStub) -> None:
    stub.hang_next(1, seconds=1.0)  # Twilio accepted it, its answer comes after the sender's timeout
    sender = TwilioSender(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM, api_url=stub.url, timeout=0.3)
    message = SmsMessage(to=TO, body="Your code is 123456")
    since = datetime.now(UTC)
    try:
        with pytest.raises(SendError) as timed_out:
            await sender.send(message)
        found = await sender.find_sent(message, since)
        again = await sender.send(SmsMessage(to=TO, body="Your code is 654321"))
    finally:
        await sender.aclose()
    assert timed_out.value.transient and timed_out.value.message == "Twilio timed out"
    assert found is not None and found.message_sid == stub.messages[0].sid
    assert [m.body for m in stub.messages] == ["Your code is 123456", "Your code is 654321"]
    assert again.message_sid == stub.messages[1].sid  # the pool goes on after a timed-out connection


async def test_twilio_out_of_reach_is_a_transient_failure(stub: TwilioStub) -> None:
    url = stub.url
    stub.stop()
    sender = TwilioSender(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM, api_url=url, timeout=1.0)
    try:
        with pytest.raises(SendError) as failed:
            await sender.send(SmsMessage(to=TO, body="Your code is 123456"))
    finally:
        await sender.aclose()
    assert failed.value.transient and failed.value.message.startswith("cannot reach Twilio: ")
    assert failed.value.sender == FROM


async def test_the_sender_masks_the_number_in_twilio_refusals(stub: TwilioStub) -> None:
    stub.script(TO, "reject", code=21211)
    sender = TwilioSender(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM, api_url=stub.url, timeout=1.0)
    try:
        with pytest.raises(SendError) as refused:
            await sender.send(SmsMessage(to=TO, body="Your code is 123456"))
    finally:
        await sender.aclose()
    assert not refused.value.transient and refused.value.error_code == 21211
    assert refused.value.message.startswith("Twilio 400: ") and TO not in refused.value.message


async def test_the_worker_sends_through_the_proxy_the_environment_names(
    stub: TwilioStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind an egress proxy (HTTP_PROXY / HTTPS_PROXY) the sends go through it, as the
    synchronous client's did; NO_PROXY still exempts a host."""
    seen: list[bytes] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readline())  # the request line, with the absolute URL a proxy gets
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    proxy = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    sender = TwilioSender(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM, api_url=stub.url, timeout=2.0)
    try:
        with pytest.raises(SendError):
            await sender.send(SmsMessage(to=TO, body="Your code is 123456"))
    finally:
        await sender.aclose()
        proxy.close()
        await proxy.wait_closed()
    assert seen and seen[0].startswith(f"POST {stub.url}/2010-04-01/Accounts/".encode())
    assert stub.messages == []

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    sender = TwilioSender(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM, api_url=stub.url, timeout=2.0)
    try:
        receipt = await sender.send(SmsMessage(to=TO, body="Your code is 123456"))
    finally:
        await sender.aclose()
    assert receipt.message_sid == stub.messages[0].sid
