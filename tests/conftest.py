"""Real servers for the tests: a private redis-server on a free loopback port (never 6379, never
a fake), and the app served in-process through its real lifespan."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from otp.app import create_app, worker_options
from otp.clock import SettableClock
from otp.core import apikeys
from otp.core.policy import PolicyConfig
from otp.edge.embedded_redis import EmbeddedRedis, free_port
from otp.edge.sms import Receipt, SmsMessage
from otp.edge.worker import WorkerOptions
from otp.settings import Settings
from otp.storage.client import connect
from otp.storage.store import Store

# Injected time: tests move it; Lua scripts receive it as their "now".
Clock = SettableClock

SECRET = "test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
# DESIGN §9: a test that needs a tool fails where the tool is missing (install it: scripts/bootstrap
# test), so CI cannot pass without the Node SDK or the browser test.  A developer machine without
# them opts out with OTP_ALLOW_SKIPS=1 (README, "Tests").
ALLOW_SKIPS = "OTP_ALLOW_SKIPS"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report: pytest.TestReport = yield
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get(ALLOW_SKIPS) != "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"would skip, which fails the run ({ALLOW_SKIPS}=1 lets it skip): {reason}"
    return report


class RecordingSender:
    """An SmsSender for the core tests: keeps each message so a test can read the code a user got.
    (The delivery tests drive the real twilio SDK against a loopback stand-in instead.)"""

    name = "recording"

    def __init__(self) -> None:
        self.messages: list[SmsMessage] = []

    async def send(self, message: SmsMessage) -> Receipt:
        self.messages.append(message)
        return Receipt(message_sid=f"SM{len(self.messages):032x}", status="queued", segments=1)

    async def find_sent(self, message: SmsMessage, since: Any) -> Receipt | None:
        return None

    async def fetch_status(self, message_sid: str) -> tuple[str, int | None, str | None]:
        return "delivered", None, None

    async def aclose(self) -> None:
        return None

    def codes_for(self, to: str) -> list[str]:
        return [re.findall(r"(?<!\d)\d{4,10}(?!\d)", m.body)[0] for m in self.messages if m.to == to]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with tempfile.TemporaryDirectory(prefix="otp-test-redis-") as data_dir:
        server = EmbeddedRedis(data_dir, port=free_port(), appendonly=False)
        server.start()
        yield server
        server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


def make_settings(redis_url: str, **changes: Any) -> Settings:
    base = Settings(
        redis_url=redis_url,
        secret_keys=(SECRET,),
        # Cheap argon2 for speed; one test runs the shipped parameters.
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        worker=False,
        data_dir=tempfile.gettempdir(),
    )
    return base.with_changes(**changes)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return make_settings(redis_url)


@dataclass
class Service:
    """The app running on real Redis, with a client that holds a valid API key."""

    http: httpx.AsyncClient
    app: Any
    redis: aioredis.Redis
    key: str
    admin_key: str
    clock: Clock
    sender: RecordingSender

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def start(self, to: str = "+15017122661", **body: Any) -> httpx.Response:
        return await self.http.post("/v1/verifications", json={"to": to, **body}, headers=self.auth())

    async def check(self, code: str, key: str | None = None, **body: Any) -> httpx.Response:
        return await self.http.post("/v1/verifications/check", json={"code": code, **body}, headers=self.auth(key))

    async def deliver(self) -> int:
        """Run the SMS worker once, as `otp worker --burst` would."""
        from otp.edge.worker import Worker

        state = self.app.state
        worker = Worker(state.store, state.verifier.keyring, self.sender, default_worker_options(), clock=self.clock)
        return await worker.run_once()

    async def last_code(self, to: str = "+15017122661") -> str:
        await self.deliver()
        return self.sender.codes_for(to)[-1]


@contextlib.asynccontextmanager
async def running_service(settings: Settings, clock: Clock, sender: RecordingSender) -> AsyncIterator[Service]:
    app = create_app(settings, clock=clock, sender=sender)
    async with app.router.lifespan_context(app):
        client = connect(settings.redis_url or "")
        _, key = await apikeys.create(Store(client, partitions=16), "test-client")
        _, admin_key = await apikeys.create(Store(client, partitions=16), "test-admin", admin=True)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://otp.test") as http:
            yield Service(http, app, client, key, admin_key, clock, sender)
        await client.aclose()


@pytest.fixture
async def service(settings: Settings, clock: Clock, sender: RecordingSender) -> AsyncIterator[Service]:
    async with running_service(settings, clock, sender) as svc:
        yield svc


def policy(**changes: Any) -> PolicyConfig:
    """The default policy (``otp.settings``' defaults) with ``changes``."""
    return replace(Settings().policy, **changes)


def default_worker_options() -> WorkerOptions:
    """The worker's options as the shell builds them from default settings."""
    return worker_options(Settings())


# For tests about something else that send many codes nobody checks: the pumping rules out of the way.
NO_PUMPING: dict[str, Any] = {
    "prefix_hourly_floor": 10**6,
    "prefix_daily_floor": 10**6,
    "range_daily_floor": 10**6,
    "country_daily_floor": 10**6,
    "ip_pumping_daily_floor": 10**6,
    "unproven_country_floor": 10**6,
    "unproven_tenant_floor": 10**6,
}


@pytest.fixture
async def no_cooldown(redis_url: str, clock: Clock, sender: RecordingSender) -> AsyncIterator[Service]:
    """The service with resends allowed back to back (and the pumping floors out of the way), for
    tests about the verification's own caps."""
    settings = make_settings(redis_url, policy=policy(resend_cooldown=0, **NO_PUMPING))
    async with running_service(settings, clock, sender) as svc:
        yield svc


# redis-py types its replies for either decode_responses setting; the tests' clients never decode.
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


async def stream_entries(client: aioredis.Redis, key: str | bytes) -> StreamEntries:
    """XRANGE over a whole stream, typed as the bytes the tests' clients receive."""
    return cast(StreamEntries, await client.xrange(key))


async def hash_fields(client: aioredis.Redis, key: str | bytes) -> dict[bytes, bytes]:
    """HGETALL, typed as the bytes the tests' clients receive."""
    return cast(dict[bytes, bytes], await client.hgetall(key))


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
