"""The service over real HTTP (uvicorn on a free loopback port) with its in-process SMS worker
sending through the real twilio SDK to the Twilio stand-in, which posts signed callbacks back."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from conftest import make_settings

from otp.app import create_app
from otp.core import apikeys
from otp.devtools.twilio_stub import TwilioStub
from otp.edge.embedded_redis import free_port
from otp.settings import Settings
from otp.storage.client import connect
from otp.storage.store import Store

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "stub-auth-token-" + "2" * 16


@dataclass
class Live:
    base: str
    http: httpx.AsyncClient
    stub: TwilioStub
    key: str
    settings: Settings

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def start(self, to: str) -> dict[str, Any]:
        response = await self.http.post("/v1/verifications", json={"to": to}, headers=self.auth)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def fetch(self, vid: str) -> dict[str, Any]:
        return dict((await self.http.get(f"/v1/verifications/{vid}", headers=self.auth)).json())

    async def wait_for(self, vid: str, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            body = await self.fetch(vid)
            if predicate(body):
                return body
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"condition not reached: {body}")
            await asyncio.sleep(0.05)

    async def delivery(self, vid: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
        body = await self.wait_for(vid, lambda b: b["send_attempts"][-1]["delivery"]["status"] == status, timeout)
        return dict(body["send_attempts"][-1])

    def code_for(self, to: str) -> str:
        import re

        bodies = [m.body for m in self.stub.messages if m.to == to]
        match = re.search(r"(?<!\d)\d{4,10}(?!\d)", bodies[-1])
        assert match
        return match.group(0)


def twilio_options(base: str, stub: TwilioStub) -> dict[str, Any]:
    """Settings for the service at ``base`` sending through the stand-in, with its in-process worker
    and retries quick enough for tests."""
    return {
        "worker": True,
        "public_url": base,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        # The stand-in has no queue: a high MPS keeps pacing (tests/test_sender_pacing.py) out of
        # the way of tests about something else, which run on real time.
        "twilio_from": "+15005550006:long_code:100000",  # unpaced: a test's clock may stand still
        "twilio_api_url": stub.url,
        "twilio_timeout": 1.0,
        "sms_retry_base": 0.05,
        "sms_lease": 2.0,
    }


@contextlib.asynccontextmanager
async def serving(app: Any, port: int) -> AsyncIterator[None]:
    """The app under uvicorn on 127.0.0.1:``port``, in this event loop, with its lifespan."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def live_service(redis_url: str, **changes: Any) -> AsyncIterator[Live]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with TwilioStub(ACCOUNT_SID, AUTH_TOKEN) as stub:
        settings = make_settings(redis_url, **{**twilio_options(base, stub), **changes})
        async with serving(create_app(settings), port):
            client = connect(redis_url)
            _, key = await apikeys.create(Store(client, partitions=16), "delivery-test")
            await client.aclose()
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                yield Live(base, http, stub, key, settings)


def new_number() -> str:
    return f"+1415555{secrets.randbelow(10000):04d}"
