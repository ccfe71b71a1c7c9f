"""Senders that keep pace: every sender of OTP_TWILIO_FROM releases at most its MPS, across workers,
through the real twilio SDK to the stand-in, on an injected clock (the stand-in stamps each message
with the same clock, so spacing is exact and the test takes no real time for it)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from conftest import NO_PUMPING, Clock, make_settings, policy
from delivery_fixtures import ACCOUNT_SID, AUTH_TOKEN
from prometheus_client import REGISTRY

from otp.app import build_sender, create_app, worker_options
from otp.core import apikeys
from otp.devtools.twilio_stub import StubMessage, TwilioStub
from otp.edge.worker import Worker
from otp.errors import ConfigError
from otp.settings import Settings
from otp.storage import keys as keyspace
from otp.storage.client import connect
from otp.storage.store import Store

US_SENDER = "+14155550100"
US_SENDER_2 = "+14155550101"
GB_SENDER = "+447911000001"
STEP_MS = 100  # how far the injected clock moves between worker rounds


@dataclass
class Pool:
    http: httpx.AsyncClient
    stub: TwilioStub
    workers: list[Worker]
    clock: Clock
    store: Store
    key: str
    admin_key: str

    async def start(self, to: str) -> dict[str, Any]:
        response = await self.http.post(
            "/v1/verifications", json={"to": to}, headers={"Authorization": f"Bearer {self.key}"}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def fetch(self, vid: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/verifications/{vid}", headers={"Authorization": f"Bearer {self.key}"})
        return dict(response.json())

    async def drain(self, limit: float = 120.0) -> float:
        """Run every worker round after round, moving the clock STEP_MS each time, until the outbox
        is empty; returns how much injected time that took."""
        began = self.clock.now_ms()
        rounds = 0
        while True:
            await asyncio.gather(*(w.run_once() for w in self.workers))
            if await self.store.outbox_depth() == 0:
                return (self.clock.now_ms() - began) / 1000
            assert rounds * STEP_MS < limit * 1000, "the outbox never drained"
            rounds += 1
            set_ms(self.clock, began + rounds * STEP_MS)


def set_ms(clock: Clock, ms: int) -> None:
    """The clock at exactly ``ms`` as ``now_ms`` reads it (which truncates: 1.8e9 + 0.3 s in a
    float may read as …299 ms)."""
    at = ms / 1000
    while int(at * 1000) < ms:
        at = math.nextafter(at, math.inf)
    clock.set(at)


@contextlib.asynccontextmanager
async def pool_service(redis_url: str, clock: Clock, senders: str, **changes: Any) -> AsyncIterator[Pool]:
    """The app with the stand-in as Twilio and two workers on the injected clock (no callbacks:
    no public URL, so nothing but the sends themselves reaches the stand-in)."""
    with TwilioStub(ACCOUNT_SID, AUTH_TOKEN, clock=clock.now) as stub:
        settings = make_settings(
            redis_url,
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_from=senders,
            twilio_api_url=stub.url,
            twilio_timeout=2.0,
            policy=policy(resend_cooldown=0, **NO_PUMPING),
            **changes,
        )
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            state = app.state
            workers = [
                Worker(
                    state.store, state.verifier.keyring, build_sender(settings), worker_options(settings), clock=clock
                )
                for _ in range(2)
            ]
            client = connect(redis_url)
            _, key = await apikeys.create(Store(client, partitions=16), "pacing")
            _, admin_key = await apikeys.create(Store(client, partitions=16), "pacing-admin", admin=True)
            await client.aclose()
            transport = httpx.ASGITransport(app=app)
            async with contextlib.AsyncExitStack() as closing:
                for worker in workers:
                    await closing.enter_async_context(contextlib.aclosing(worker))
                http = await closing.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://otp.test")
                )
                yield Pool(http, stub, workers, clock, state.store, key, admin_key)


def numbers(count: int, prefix: str = "+1415556") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(count)]


def gaps(messages: Iterable[StubMessage]) -> list[float]:
    times = sorted(m.received_at for m in messages)
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


def from_(stub: TwilioStub, sender: str) -> list[StubMessage]:
    return [m for m in stub.messages if m.from_ == sender]


async def test_one_long_code_sends_a_burst_of_20_one_per_second_across_two_workers(
    redis_url: str, clock: Clock
) -> None:
    async with pool_service(redis_url, clock, f"{US_SENDER}:long_code") as pool:
        vids = [(await pool.start(to))["id"] for to in numbers(20)]
        took = await pool.drain()
        sent = pool.stub.messages
        assert len(sent) == 20 and {m.from_ for m in sent} == {US_SENDER}
        assert min(gaps(sent)) >= 1.0  # 1 MPS held across both workers
        assert max(m.received_at for m in sent) - min(m.received_at for m in sent) == pytest.approx(19.0)
        assert took == pytest.approx(19.0)
        # Each attempt says how long its code was expected to wait for the sender: 0 (sent at once)
        # for the first, then 1 s … 19 s.
        attempts = [(await pool.fetch(v))["send_attempts"][0] for v in vids]
        assert sorted(a["queued_at_sender"] or 0 for a in attempts) == [float(i) for i in range(20)]
        assert {a["sender"] for a in attempts} == {US_SENDER}
        assert all(a["delivery"]["status"] in {"queued", "accepted", "sent", "delivered"} for a in attempts)
        # Waiting for a slot is not a failed try: no earlier send was looked for, none was sent twice.
        assert all(a["tries"] == 1 for a in attempts)
        assert len({m.to for m in sent}) == 20


async def test_a_second_sender_in_the_pool_halves_the_time_a_burst_takes(redis_url: str, clock: Clock) -> None:
    async with pool_service(redis_url, clock, f"{US_SENDER}:long_code,{US_SENDER_2}:long_code:1") as pool:
        for to in numbers(20):
            await pool.start(to)
        took = await pool.drain()
        first, second = from_(pool.stub, US_SENDER), from_(pool.stub, US_SENDER_2)
        assert len(first) == len(second) == 10
        assert min(gaps(first)) >= 1.0 and min(gaps(second)) >= 1.0
        assert took == pytest.approx(9.0)  # 19 s with one sender


async def test_a_message_occupies_its_sender_for_each_of_its_segments(redis_url: str, clock: Clock) -> None:
    """Twilio counts throughput in segments: at 10 MPS a one-segment SMS holds the sender 0.1 s."""
    async with pool_service(redis_url, clock, f"{US_SENDER}:long_code:10") as pool:
        for to in numbers(5):
            await pool.start(to)
        await pool.drain()
        assert gaps(pool.stub.messages) == [0.1] * 4


async def test_senders_serve_only_their_countries(redis_url: str, clock: Clock) -> None:
    async with pool_service(redis_url, clock, f"{US_SENDER}:long_code:1:US/CA,{GB_SENDER}:long_code:1:GB") as pool:
        us, gb = numbers(3), numbers(3, "+44740012")
        france = await pool.start("+33612345678")
        for to in us + gb:
            await pool.start(to)
        await pool.drain()
        assert sorted(m.to for m in from_(pool.stub, US_SENDER)) == us
        assert sorted(m.to for m in from_(pool.stub, GB_SENDER)) == gb
        # No sender may serve France: the send fails visibly, and nothing reached Twilio.
        attempt = (await pool.fetch(france["id"]))["send_attempts"][0]
        assert attempt["delivery"]["status"] == "failed"
        assert "no sender in OTP_TWILIO_FROM serves FR" in attempt["delivery"]["error_message"]
        assert all(m.to != "+33612345678" for m in pool.stub.messages)


async def test_a_code_whose_turn_comes_after_it_expires_is_never_sent(redis_url: str, clock: Clock) -> None:
    async with pool_service(redis_url, clock, f"{US_SENDER}:long_code", code_ttl=30.0) as pool:
        expiry = clock.now() + 30
        started = [await pool.start(to) for to in numbers(40)]
        await pool.drain()
        sent = pool.stub.messages
        # Slots at 0 s … 29 s come before the codes expire (30 s); the other 10 would be useless.
        assert len(sent) == 30
        assert max(m.received_at for m in sent) < expiry
        after = [await pool.fetch(s["id"]) for s in started]
        failed = [v["send_attempts"][0] for v in after if v["send_attempts"][0]["delivery"]["status"] == "failed"]
        assert len(failed) == 10
        assert all("outlasts the code" in a["delivery"]["error_message"] for a in failed)
        assert {a["queued_at_sender"] for a in failed} == {30.0}


async def test_jobs_waiting_for_their_slot_are_not_sent_once_their_code_expired(redis_url: str, clock: Clock) -> None:
    """Workers down (or the clock jumped) past the codes' life: the reserved slots are not used."""
    async with pool_service(redis_url, clock, f"{US_SENDER}:long_code", code_ttl=30.0) as pool:
        vids = [(await pool.start(to))["id"] for to in numbers(5)]
        await asyncio.gather(*(w.run_once() for w in pool.workers))
        assert len(pool.stub.messages) == 1  # the others wait for 1 s … 4 s
        clock.advance(31)
        await pool.drain()
        assert len(pool.stub.messages) == 1
        statuses = [(await pool.fetch(v))["send_attempts"][0]["delivery"]["status"] for v in vids]
        assert sorted(statuses).count("canceled") == 4


def _exceeded(sender: str) -> float:
    return REGISTRY.get_sample_value("otp_sender_wait_exceeded_total", {"sender": sender}) or 0.0


async def test_a_wait_past_the_bound_is_announced_by_an_audit_event_and_a_metric(redis_url: str, clock: Clock) -> None:
    sender = "+14155550177"
    before = _exceeded(sender)
    async with pool_service(redis_url, clock, f"{sender}:long_code", sender_max_wait=5.0) as pool:
        for to in numbers(10):
            await pool.start(to)
        await pool.drain()
        assert len(pool.stub.messages) == 10  # still sent: each code's turn came before it expired
        response = await pool.http.get(
            "/v1/audit", params={"event": "sender_queued"}, headers={"Authorization": f"Bearer {pool.admin_key}"}
        )
        assert response.status_code == 200, response.text
        events = response.json()["events"]
        # Waits of 6, 7, 8 and 9 s passed the 5 s bound, each announced once.
        assert sorted(int(e["wait_ms"]) for e in events) == [6000, 7000, 8000, 9000]
        assert {e["sender"] for e in events} == {sender}
    assert _exceeded(sender) - before == 4


async def test_the_sender_buckets_expire_once_their_senders_are_idle(redis_url: str, clock: Clock) -> None:
    async with pool_service(redis_url, clock, f"{US_SENDER}:long_code") as pool:
        await pool.start(numbers(1)[0])
        await pool.drain()
        ttl = await pool.store.client.pttl(keyspace.sender_bucket(US_SENDER))
        assert 0 < ttl <= 2000


# -- the configuration ------------------------------------------------------------------------------


def _twilio_env(senders: str, **extra: str) -> dict[str, str]:
    return {
        "OTP_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "OTP_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "OTP_PUBLIC_URL": "https://otp.example.com",
        "OTP_TWILIO_FROM": senders,
        **extra,
    }


def test_each_sender_type_has_twilios_default_throughput() -> None:
    from otp.app import sender_pool

    settings = Settings.from_env(
        _twilio_env(f"{US_SENDER},+18005550100,12345,MG{'a' * 32}:messaging_service:50,{GB_SENDER}:long_code:0.5:GB")
    )
    pool = sender_pool(settings)
    assert pool is not None and pool.max_wait == 30.0
    assert [(s.kind, s.mps, sorted(s.countries)) for s in pool.senders] == [
        ("long_code", 1.0, []),
        ("toll_free", 3.0, []),
        ("short_code", 100.0, []),
        ("messaging_service", 50.0, []),
        ("long_code", 0.5, ["GB"]),
    ]


@pytest.mark.parametrize(
    ("senders", "message"),
    [
        (f"{US_SENDER}:landline", "unknown type 'landline'"),
        (f"{US_SENDER}:long_code:fast", "MPS 'fast' is not a number"),
        (f"{US_SENDER}:long_code:0", "out of range"),
        (f"{US_SENDER}:long_code:nan", "out of range"),
        (f"{US_SENDER}:long_code:1:USA", "USA are not two-letter ISO country codes"),
        ("4155550100:long_code", "is not an E.164 number"),
        ("MG123:messaging_service", "is not a Messaging Service sid"),
        ("+1415:short_code", "is not a short code"),
        (f"{US_SENDER},{US_SENDER}:long_code:2", "listed more than once"),
        (f"{US_SENDER}:long_code:1:US:extra", "more than ADDRESS:TYPE:MPS:COUNTRIES"),
    ],
)
def test_a_bad_sender_entry_is_refused_at_startup_naming_it(senders: str, message: str) -> None:
    with pytest.raises(ConfigError, match="OTP_TWILIO_FROM") as refused:
        Settings.from_env(_twilio_env(senders))
    assert message in str(refused.value)


def test_a_pool_and_a_default_messaging_service_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="list the Messaging Service in OTP_TWILIO_FROM"):
        Settings.from_env(_twilio_env(US_SENDER, OTP_TWILIO_MESSAGING_SERVICE_SID="MG" + "b" * 32))


def test_the_wait_bound_is_a_setting() -> None:
    assert Settings.from_env(_twilio_env(US_SENDER, OTP_SENDER_MAX_WAIT="2m")).sender_max_wait == 120.0
    with pytest.raises(ConfigError, match="OTP_SENDER_MAX_WAIT"):
        Settings.from_env(_twilio_env(US_SENDER, OTP_SENDER_MAX_WAIT="soon"))


def _ten_dlc_warnings(caplog: pytest.LogCaptureFixture, **env: str) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="otp"):
        build_sender(Settings.from_env(_twilio_env(env.pop("senders", ""), **env)))
    return [r.getMessage() for r in caplog.records if "10DLC" in r.getMessage()]


def test_a_us_long_code_without_a_messaging_service_logs_one_10dlc_warning(caplog: pytest.LogCaptureFixture) -> None:
    warnings = _ten_dlc_warnings(caplog, senders=f"{US_SENDER},{US_SENDER_2}:long_code:1")
    assert len(warnings) == 1
    assert US_SENDER in warnings[0] and US_SENDER_2 in warnings[0] and "30034" in warnings[0]


def test_toll_free_numbers_messaging_services_and_other_countries_log_no_10dlc_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert _ten_dlc_warnings(caplog, senders="+18005550100") == []
    assert _ten_dlc_warnings(caplog, senders=f"MG{'c' * 32}:messaging_service:10,{US_SENDER}") == []
    assert _ten_dlc_warnings(caplog, OTP_TWILIO_MESSAGING_SERVICE_SID="MG" + "d" * 32) == []
    assert _ten_dlc_warnings(caplog, senders=f"{GB_SENDER}") == []
