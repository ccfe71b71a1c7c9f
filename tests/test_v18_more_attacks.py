"""Attacks on the slim SMS job and record, the context-salted code hashes, the async Twilio sender
and the callback that overtakes the worker's record of a send: as a hostile client with an API key
would try them, and as a hostile network (or a "Twilio" that misbehaves) would."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from conftest import SECRET, Clock, RecordingSender, Service, hash_fields, make_settings, running_service
from delivery_fixtures import ACCOUNT_SID, AUTH_TOKEN, live_service, new_number
from test_twilio_compat import V2, serve, service
from twilio.request_validator import RequestValidator

from otp.core import apikeys
from otp.devtools.twilio_stub import TwilioStub
from otp.edge.sms import SendError, SmsMessage
from otp.edge.twilio_sender import TwilioSender
from otp.storage import keys as keyspace
from otp.storage.store import Store

TO = "+15017122661"
FROM = "+15005550006"


def _keys(vid: str, n: int = 1) -> tuple[str, str]:
    partition = keyspace.partition_of_id(vid, 16)
    return keyspace.verification(partition, vid), keyspace.job(partition, f"{vid}:{n}")


async def _second_key(svc: Service, name: str = "tenant-b") -> str:
    _, key = await apikeys.create(Store(svc.redis, partitions=16), name)
    return key


# -- 1. the slim job: what it sends when its record changed between queue and claim ----------------


async def test_a_job_whose_record_was_deleted_sends_nothing_and_goes(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    record_key, job_key = _keys(vid)
    await service.redis.delete(record_key)
    await service.deliver()
    assert service.sender.messages == []
    assert await service.redis.exists(job_key) == 0


async def test_a_job_whose_record_expired_sends_nothing(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    _, job_key = _keys(vid)
    service.clock.advance(3600)  # past the code's expiry (the record is still kept for its retention)
    await service.deliver()
    assert service.sender.messages == []
    assert await service.redis.exists(job_key) == 0
    fetched = (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json()
    assert fetched["status"] == "expired"


async def test_a_verification_canceled_before_its_job_is_claimed_sends_nothing(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    canceled = await service.http.post(f"/v1/verifications/{vid}/cancel", headers=service.auth())
    assert canceled.status_code == 200, canceled.text
    await service.deliver()
    assert service.sender.messages == []


async def test_a_resend_queued_before_the_first_code_was_approved_is_never_sent(no_cooldown: Service) -> None:
    """Approve between queue and claim: the resend's SMS would carry a code that can't work."""
    svc = no_cooldown
    vid = (await svc.start(TO)).json()["id"]
    code = await svc.last_code()
    assert (await svc.start(TO)).json()["id"] == vid  # the resend's job waits in the outbox
    approved = await svc.check(code, id=vid)
    assert approved.json()["status"] == "approved"
    await svc.deliver()
    assert len(svc.sender.messages) == 1
    assert await svc.redis.exists(_keys(vid, 2)[1]) == 0


async def test_another_tenants_verification_to_the_same_number_keeps_each_jobs_locale_and_number(
    service: Service,
) -> None:
    """Two tenants' jobs for one number, queued side by side: each reads its own record, so each
    SMS carries its own tenant's locale and the code that works for that tenant only."""
    other = await _second_key(service)
    mine = (await service.start(TO, locale="fr")).json()["id"]
    service.clock.advance(61)  # the number's own protection between two tenants' sends
    theirs = await service.http.post("/v1/verifications", json={"to": TO}, headers=service.auth(other))
    assert theirs.status_code == 201, theirs.text
    await service.deliver()
    assert [m.to for m in service.sender.messages] == [TO, TO]
    codes = dict(
        zip(
            ("fr" if "est votre code" in m.body else "en" for m in service.sender.messages),
            service.sender.codes_for(TO),
            strict=True,
        )
    )
    assert set(codes) == {"fr", "en"}
    # Tenant B can't approve with tenant A's code, by number or by A's id; each code works for its own.
    by_to = await service.check(codes["fr"], key=other, to=TO)
    assert by_to.status_code < 500 and by_to.json().get("status") != "approved", by_to.text
    by_id = await service.check(codes["fr"], key=other, id=mine)
    assert by_id.status_code == 404, by_id.text
    assert (await service.check(codes["fr"], id=mine)).json()["status"] == "approved"
    assert (await service.check(codes["en"], key=other, to=TO)).json()["status"] == "approved"


async def test_a_resend_without_a_locale_does_not_relocalise_the_queued_first_send(no_cooldown: Service) -> None:
    svc = no_cooldown
    vid = (await svc.start(TO, locale="fr")).json()["id"]
    assert (await svc.start(TO)).json()["id"] == vid  # both jobs queued, neither claimed
    await svc.deliver()
    bodies = [m.body for m in svc.sender.messages]
    assert len(bodies) == 2
    # The first send keeps the record's French; the resend asked for the default, and gets it.
    assert sum("est votre code" in b for b in bodies) == 1


async def test_old_and_new_form_jobs_in_one_claim_each_go_to_their_own_number(service: Service) -> None:
    """A job queued by the previous version (its own to, x, loc) beside a slim one, in one batch:
    neither takes the other's number, and a previous-version job whose record is gone sends nothing."""
    old_to, new_to, gone_to = "+15017122662", "+15017122663", "+15017122664"
    old_vid = (await service.start(old_to)).json()["id"]
    new_vid = (await service.start(new_to)).json()["id"]
    gone_vid = (await service.start(gone_to)).json()["id"]
    for vid, to in ((old_vid, old_to), (gone_vid, gone_to)):
        record_key, job_key = _keys(vid)
        record = await hash_fields(service.redis, record_key)
        await service.redis.hset(record_key, mapping={"id": vid, "ch": "sms", "loc": ""})
        await service.redis.hset(
            job_key, mapping={"vid": vid, "n": 1, "to": to, "loc": "", "x": record[b"x"], "tries": 0, "app": ""}
        )
    await service.redis.delete(_keys(gone_vid)[0])
    await service.deliver()
    assert sorted(m.to for m in service.sender.messages) == [old_to, new_to]
    for vid, to in ((old_vid, old_to), (new_vid, new_to)):
        code = service.sender.codes_for(to)[-1]
        assert (await service.check(code, id=vid)).json()["status"] == "approved"


# -- 1b. code hashes without their salt: tenants, rotation, unknown key ids ------------------------

OLD_SECRET = "old-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"


@contextlib.asynccontextmanager
async def _service_with(redis_url: str, clock: Clock, sender: RecordingSender, *secrets: str) -> AsyncIterator[Service]:
    async with running_service(make_settings(redis_url, secret_keys=secrets), clock, sender) as svc:
        yield svc


async def test_a_code_hashed_and_sealed_before_a_rotation_still_sends_and_verifies(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    async with _service_with(redis_url, clock, sender, OLD_SECRET) as before:
        vid = (await before.start(TO)).json()["id"]
        key = before.key
    # Rotated (newest first) before the worker took the job: it still unseals, the hash still matches.
    async with _service_with(redis_url, clock, sender, SECRET, OLD_SECRET) as after:
        code = await after.last_code()
        checked = await after.check(code, key=key, id=vid)
        assert checked.status_code == 200 and checked.json()["status"] == "approved", checked.text


async def test_a_code_of_a_secret_since_removed_is_neither_sent_nor_a_500(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    async with _service_with(redis_url, clock, sender, OLD_SECRET) as before:
        vid = (await before.start(TO)).json()["id"]
        key = before.key
    async with _service_with(redis_url, clock, sender, SECRET) as after:
        await after.deliver()
        assert sender.messages == []  # sealed with a secret no longer held: not sent, failed visibly
        checked = await after.check("123456", key=key, id=vid)
        assert checked.status_code < 500 and checked.json().get("status") != "approved", checked.text
        fetched = (await after.http.get(f"/v1/verifications/{vid}", headers=after.auth(key))).json()
        assert fetched["send_attempts"][-1]["delivery"]["status"] == "failed"


async def test_a_hash_naming_an_unknown_key_id_never_matches_nor_fails(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    record_key, _ = _keys(vid)
    stored = (await hash_fields(service.redis, record_key))[b"h:1"].decode()
    _, params, packed = stored.split("$")
    # The same digest under a key id no secret has (a retired secret, or a forged field).
    # (Four: the fifth attempt would be the last the verification allows.)
    for forged in (f"zz${params}${packed}", f"${params}${packed}", f"zz${params}$!!!", "garbage"):
        await service.redis.hset(record_key, "h:1", forged)
        checked = await service.check(code, id=vid)
        assert checked.status_code < 500, (forged, checked.text)
        assert checked.json().get("status") != "approved", forged
    await service.redis.hset(record_key, "h:1", stored)
    assert (await service.check(code, id=vid)).json()["status"] == "approved"


async def test_a_context_hash_copied_to_another_tenants_verification_of_the_same_number_never_matches(
    service: Service,
) -> None:
    """The salt is derived from key id | number: tenant A's stored hash, copied by someone with
    Redis write access onto tenant B's record of the same number, is not B's code."""
    other = await _second_key(service)
    vid_a = (await service.start(TO)).json()["id"]
    code_a = await service.last_code()
    service.clock.advance(61)
    vid_b = (await service.http.post("/v1/verifications", json={"to": TO}, headers=service.auth(other))).json()["id"]
    hash_a = (await hash_fields(service.redis, _keys(vid_a)[0]))[b"h:1"]
    await service.redis.hset(_keys(vid_b)[0], "h:1", hash_a)
    checked = await service.check(code_a, key=other, id=vid_b)
    assert checked.status_code < 500 and checked.json().get("status") != "approved", checked.text


# -- 2. the async sender against a hostile "Twilio" (or network) -----------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """The request line (headers and any body read and dropped)."""
    line = await reader.readline()
    length = 0
    while (header := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return line


@contextlib.asynccontextmanager
async def _hostile(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)


def _sender(url: str, timeout: float) -> TwilioSender:
    return TwilioSender(ACCOUNT_SID, AUTH_TOKEN, from_number=FROM, api_url=url, timeout=timeout)


async def _refused_send(url: str, timeout: float, bound_s: float) -> SendError:
    """The SendError one send to ``url`` ends with, within ``bound_s`` whatever the server does."""
    sender = _sender(url, timeout=timeout)
    try:
        with pytest.raises(SendError) as failed:
            await asyncio.wait_for(sender.send(SmsMessage(to=TO, body="Your code is 123456")), bound_s)
    finally:
        await sender.aclose()
    return failed.value


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "until-close"])
async def test_a_huge_answer_from_twilio_is_not_read_whole_into_the_worker(announced: bool) -> None:
    """A "Twilio" (or a middlebox) answering a create with a body of 64 MiB, announced by its
    Content-Length or not (read until the connection closes): the sender stops reading well before
    that and reports a transient failure (the retry looks for the message)."""
    total = 64 * 1024 * 1024
    written = [0]

    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        head = b'{"sid": "SM' + b"0" * 32 + b'", "status": "queued", "pad": "'
        writer.write(b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n")
        length = f"content-length: {len(head) + total + 2}\r\n" if announced else "connection: close\r\n"
        writer.write(f"{length}\r\n".encode() + head)
        chunk = b"x" * 65536
        try:
            while written[0] < total:
                writer.write(chunk)
                await writer.drain()
                written[0] += len(chunk)
            writer.write(b'"}')
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        writer.close()

    async with _hostile(huge) as url:
        failed = await _refused_send(url, timeout=30.0, bound_s=60)
    assert failed.transient
    # What the sender let through its socket (the kernel's buffers hold a few MiB more at most).
    assert written[0] < 16 * 1024 * 1024, written[0]


async def test_a_trickling_answer_ends_at_the_senders_timeout() -> None:
    dripped = [0]

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n")
        try:
            for _ in range(600):  # at most 30 s, far past the sender's timeout
                writer.write(b" ")
                await writer.drain()
                dripped[0] += 1
                await asyncio.sleep(0.05)
        except (ConnectionError, OSError):
            pass
        writer.close()

    async with _hostile(trickle) as url:
        failed = await _refused_send(url, timeout=0.5, bound_s=20)
    assert failed.transient and failed.message == "Twilio timed out"
    assert dripped[0] < 600


async def test_a_redirect_to_another_host_is_not_followed_for_any_call() -> None:
    """A create, a list (find_sent) and a fetch answered with a redirect elsewhere: nothing goes
    to the other host (it would receive the code, the number and, for a same-scheme redirect, the
    credentials), and each call fails as a Twilio error would."""
    elsewhere: list[bytes] = []

    async def decoy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        elsewhere.append(await _read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    async with _hostile(decoy) as other:

        async def redirecting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            line = await _read_request(reader)
            path = line.split()[1].decode()
            writer.write(
                f"HTTP/1.1 307 Temporary Redirect\r\nlocation: {other}{path}\r\ncontent-length: 0\r\n\r\n".encode()
            )
            await writer.drain()
            writer.close()

        async with _hostile(redirecting) as url:
            sender = _sender(url, timeout=5.0)
            message = SmsMessage(to=TO, body="Your code is 123456")
            try:
                with pytest.raises(SendError):
                    await sender.send(message)
                with pytest.raises(Exception):  # noqa: B017 — which exception: the next test
                    await sender.find_sent(message, datetime.now(UTC))
                with pytest.raises(Exception):  # noqa: B017 — which exception: the next test
                    await sender.fetch_message("SM" + "0" * 32)
            finally:
                await sender.aclose()
    assert elsewhere == []


def _answer(status: str, body: bytes, content_type: str = "application/json") -> Handler:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n".encode())
        writer.write(f"content-length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    return answer


NOT_TWILIO = {
    # A load balancer's or proxy's page in front of Twilio.
    "html-502": ("502 Bad Gateway", b"<html><body>bad gateway</body></html>", "text/html"),
    # The SDK lets 3xx through to a fetch and parses the (empty) body as the resource.
    "redirect": ("302 Found", b"", "text/plain"),
    # RFC 9457 problem details: the SDK raises TwilioServiceException, no TwilioRestException.
    "problem": (
        "503 Service Unavailable",
        b'{"type": "https://www.twilio.com/docs/errors/20503", "title": "Service Unavailable", '
        b'"status": 503, "code": 20503}',
        "application/problem+json",
    ),
    "list-500": (
        "500 Internal Server Error",
        b'{"code": 20500, "message": "Internal", "status": 500}',
        "application/json",
    ),
}


@pytest.mark.parametrize("kind", sorted(NOT_TWILIO))
async def test_an_answer_that_isnt_twilios_is_a_transient_send_error_on_every_call(kind: str) -> None:
    status, body, content_type = NOT_TWILIO[kind]
    async with _hostile(_answer(status, body, content_type)) as url:
        sender = _sender(url, timeout=5.0)
        message = SmsMessage(to=TO, body="Your code is 123456")
        try:
            with pytest.raises(SendError) as sent:
                await sender.send(message)
            with pytest.raises(SendError) as found:
                await sender.find_sent(message, datetime.now(UTC))
            with pytest.raises(SendError) as fetched:
                await sender.fetch_message("SM" + "0" * 32)
        finally:
            await sender.aclose()
    assert found.value.transient and fetched.value.transient
    assert sent.value.transient or sent.value.error_code is not None


async def test_a_twilio_error_text_naming_the_number_is_masked_on_every_call() -> None:
    """Twilio's error texts may quote the recipient: what the sender hands the worker (a log line,
    the attempt's stored error) holds no full number, for a create and for a status fetch alike."""

    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        body = f'{{"code": 20404, "message": "No message to {TO} here", "status": 404}}'.encode()
        writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n")
        writer.write(f"content-length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    async with _hostile(refusing) as url:
        sender = _sender(url, timeout=5.0)
        try:
            with pytest.raises(SendError) as created:
                await sender.send(SmsMessage(to=TO, body="Your code is 123456"))
            with pytest.raises(SendError) as fetched:
                await sender.fetch_message("SM" + "0" * 32)
        finally:
            await sender.aclose()
    assert TO not in created.value.message and TO[1:] not in created.value.message
    assert TO not in fetched.value.message and TO[1:] not in fetched.value.message, fetched.value.message


async def test_a_timed_out_create_sends_exactly_one_sms_through_the_worker(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with live_service(redis_url) as live:
        to = new_number()
        live.stub.hang_next(1, seconds=3.0)  # accepted at once, answered past the 1 s timeout
        vid = (await live.start(to))["id"]
        attempt = await live.delivery(vid, "delivered", timeout=15)
        sent = [m for m in live.stub.messages if m.to == to]
        assert len(sent) == 1
        assert attempt["message_sid"] == sent[0].sid
    # The worker's lines about it (the timeout, the retry, the send) name no full number.
    logged = [record.getMessage() for record in caplog.records]
    assert any("retry" in line for line in logged), logged
    assert not [line for line in logged if to in line or to[1:] in line]


async def test_a_hung_twilio_create_does_not_hold_other_numbers_sends(redis_url: str) -> None:
    async with live_service(redis_url) as live:
        stuck, other = new_number(), new_number()
        live.stub.hang_next(1, seconds=30.0)
        stuck_vid = (await live.start(stuck))["id"]
        deadline = asyncio.get_running_loop().time() + 10
        while not any(m.to == stuck for m in live.stub.messages):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        # The stuck create still hangs (for 30 s); the other number's SMS goes out meanwhile.
        other_vid = (await live.start(other))["id"]
        await live.delivery(other_vid, "delivered", timeout=10)
        # Its retry found the accepted message instead of sending it again.
        await live.wait_for(stuck_vid, lambda b: b["send_attempts"][-1].get("message_sid"), timeout=10)
        assert len([m for m in live.stub.messages if m.to == stuck]) == 1


async def test_the_worker_closes_its_twilio_session_when_it_stops(service: Service) -> None:
    from conftest import default_worker_options

    from otp.edge.worker import Worker

    with TwilioStub(ACCOUNT_SID, AUTH_TOKEN) as stub:
        sender = _sender(stub.url, timeout=2.0)
        state = service.app.state
        worker = Worker(state.store, state.verifier.keyring, sender, default_worker_options(), clock=service.clock)
        await service.start(TO)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        deadline = asyncio.get_running_loop().time() + 10
        while not stub.messages:
            assert asyncio.get_running_loop().time() < deadline and not running.done()
            await asyncio.sleep(0.02)
        session = sender.http.session
        assert session is not None and not session.closed
        stop.set()
        await asyncio.wait_for(running, 10)
        assert session.closed and sender.http.session is None


# -- 3. callbacks: forged, replayed, overtaking, double counted, and a STOP's scope -----------------


@pytest.fixture
def v2(redis_url: str) -> Iterator[V2]:
    with serve(redis_url, delivery_poll_after=1.0) as live:
        yield live


def _v1(v2: V2) -> httpx.Client:
    return httpx.Client(base_url=v2.base, headers={"Authorization": f"Bearer {v2.v1_key}"}, timeout=10)


def _wait(what: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline, "not reached"
        time.sleep(0.03)
    return found


def _attempt(v1: httpx.Client, vid: str) -> dict[str, Any]:
    return dict(v1.get(f"/v1/verifications/{vid}").json()["send_attempts"][-1])


def _callback(v2: V2, url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> httpx.Response:
    signature = RequestValidator(token).compute_signature(url, params)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)


def test_forged_and_replayed_status_callbacks_are_refused(v2: V2) -> None:
    with _v1(v2) as v1:
        to, victim_to = new_number(), new_number()
        vid = v1.post("/v1/verifications", json={"to": to}).json()["id"]
        victim = v1.post("/v1/verifications", json={"to": victim_to}).json()["id"]
        _wait(lambda: _attempt(v1, vid)["delivery"]["status"] == "delivered")
        _wait(lambda: _attempt(v1, victim)["delivery"]["status"] == "delivered")
        url, params, _ = next(sent for sent in v2.stub.callbacks_sent if f"v={vid}" in sent[0])
        bad = {**params, "MessageStatus": "undelivered", "ErrorCode": "21610"}
        # Unsigned; signed by a tenant's /v2 credentials instead of the operator's auth token; a real
        # signature on another verification's URL or on other parameters.
        unsigned = httpx.post(url, data=bad, timeout=10)
        tenant_signed = _callback(v2, url, bad, token=v2.account[1])
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        moved_url = url.replace(f"v={vid}", f"v={victim}")
        replayed = httpx.post(moved_url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)
        tampered = httpx.post(url, data=bad, headers={"X-Twilio-Signature": signature}, timeout=10)
        for refused in (unsigned, tenant_signed, replayed, tampered):
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["field"] == "X-Twilio-Signature"
        assert _attempt(v1, vid)["delivery"]["status"] == "delivered"
        assert _attempt(v1, victim)["delivery"]["status"] == "delivered"
        admin_token = _admin_token(v2)
        with httpx.Client(base_url=v2.base, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10) as admin:
            assert admin.get(f"/v1/optouts/{to}").json()["opted_out"] is False


def _admin_token(v2: V2) -> str:
    async def create() -> str:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(v2.settings.redis_url or "")
        _, token = await apikeys.create(Store(client, partitions=16), "ops", admin=True)
        await client.aclose()
        return token

    return asyncio.run(create())


def _delivered_in(admin: httpx.Client, by: str, name: str) -> int:
    rows = admin.get("/v1/stats/overview", params={"since": "1h"}).json()["delivery"][by]
    key = "country" if by == "by_country" else "sender"
    return sum(int(row["delivered"]) for row in rows if row.get(key) == name)


def test_an_overtaking_delivery_counts_once_after_callbacks_settle_poll_and_a_replayed_callback(v2: V2) -> None:
    """delivered reported before the create answer (counted when dx is written), then the worker's
    settle, the poll that fetches the same final state, and a genuine callback Twilio posts twice:
    one delivery in the per-country and per-sender figures."""
    token = _admin_token(v2)
    with (
        _v1(v2) as v1,
        httpx.Client(base_url=v2.base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as admin,
    ):
        before = (_delivered_in(admin, "by_country", "US"), _delivered_in(admin, "by_sender", FROM))
        to = new_number()
        v2.stub.script(to, "early", count=3)
        vid = v1.post("/v1/verifications", json={"to": to}).json()["id"]
        _wait(lambda: _attempt(v1, vid).get("message_sid") and _attempt(v1, vid)["delivery"]["status"] == "delivered")
        # The poll (1 s after the send) fetches the final state again; wait until it has run.
        partition = keyspace.partition_of_id(vid, 16)
        import redis as sync_redis

        client = sync_redis.Redis.from_url(v2.settings.redis_url or "")
        try:
            _wait(lambda: client.zscore(keyspace.poll_schedule(partition), f"{vid}:1") is None)
        finally:
            client.close()
        url, params, _ = next(
            s for s in v2.stub.callbacks_sent if f"v={vid}" in s[0] and s[1].get("MessageStatus") == "delivered"
        )
        assert _callback(v2, url, params).status_code == 200
        after = (_delivered_in(admin, "by_country", "US"), _delivered_in(admin, "by_sender", FROM))
        assert after == (before[0] + 1, before[1] + 1)


def test_an_overtaking_stop_for_one_tenants_messaging_service_marks_no_other_scope(v2: V2) -> None:
    """Tenant A's own Messaging Service gets the STOP (21610) that overtook the create answer;
    tenant B's Messaging Service for the same country, and the operator's shared senders, don't."""
    mg_a, mg_b = "MG" + "a" * 32, "MG" + "c" * 32
    a, b = v2.client(), v2.client(v2.other)
    a_service, b_service = service(a).sid, service(b).sid
    a.verify.v2.services(a_service).messaging_configurations.create(country="US", messaging_service_sid=mg_a)
    b.verify.v2.services(b_service).messaging_configurations.create(country="US", messaging_service_sid=mg_b)
    to = new_number()
    v2.stub.script(to, "early", count=3, error_code=21610)
    a.verify.v2.services(a_service).verifications.create(to=to, channel="sms")
    token = _admin_token(v2)
    with httpx.Client(base_url=v2.base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as admin:
        _wait(lambda: admin.get(f"/v1/optouts/{to}", params={"messaging_service_sid": mg_a}).json()["opted_out"])
        assert admin.get(f"/v1/optouts/{to}", params={"messaging_service_sid": mg_b}).json()["opted_out"] is False
        assert admin.get(f"/v1/optouts/{to}").json()["opted_out"] is False
    # Tenant B still reaches the number through its own Messaging Service.
    v2.stub.script(to, "delivered")
    started = b.verify.v2.services(b_service).verifications.create(to=to, channel="sms")
    assert started.status == "pending"
    _wait(lambda: [m for m in v2.stub.messages if m.to == to and m.messaging_service_sid == mg_b])


async def test_a_check_by_number_on_another_key_reads_the_same_as_no_verification(service: Service) -> None:
    """Tenant A's pending code for a number: tenant B's check by that number answers as for a number
    nobody verifies (no hint of A's verification), and A's attempts aren't spent by it."""
    other = await _second_key(service)
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    theirs = await service.check(code, key=other, to=TO)
    nobody = await service.check(code, key=other, to="+15017122669")
    assert (theirs.status_code, theirs.json()["error"]["code"]) == (nobody.status_code, nobody.json()["error"]["code"])
    fetched = (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json()
    assert fetched["attempts"] == 0
    assert (await service.check(code, id=vid)).json()["status"] == "approved"
