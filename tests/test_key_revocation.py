"""A revoked API key is refused at once by every process, not after a cache lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from conftest import Clock, RecordingSender, make_settings

from otp.app import create_app
from otp.core import apikeys
from otp.settings import Settings
from otp.storage.store import Store

UNKNOWN = "/v1/verifications/VE" + "0" * 32  # 404 for a good key, 401 for a bad one


@asynccontextmanager
async def process(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    """One API process's worth of state: its own app, lifespan, Redis client and key checker."""
    app = create_app(settings, clock=Clock(), sender=RecordingSender())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://otp.test") as http:
            yield http, app


async def test_revocation_through_one_process_is_refused_by_the_other_at_once(redis_url: str) -> None:
    settings = make_settings(redis_url)
    async with AsyncExitStack() as stack:
        one, app_one = await stack.enter_async_context(process(settings))
        two, _ = await stack.enter_async_context(process(settings))
        client = app_one.state.store.client  # type: ignore[attr-defined]
        key, token = await apikeys.create(Store(client, partitions=16), "tenant")
        _, other = await apikeys.create(Store(client, partitions=16), "other-tenant")
        auth = {"Authorization": f"Bearer {token}"}
        # Both processes have just accepted the key (and would have cached it).
        for http in (one, two, one, two):
            assert (await http.get(UNKNOWN, headers=auth)).status_code == 404
        assert await apikeys.revoke(Store(client, partitions=16), key.key_id)
        for http in (two, one):
            refused = await http.get(UNKNOWN, headers=auth)
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"]["field"] == "Authorization"
        # Other keys are untouched.
        for http in (one, two):
            assert (await http.get(UNKNOWN, headers={"Authorization": f"Bearer {other}"})).status_code == 404


async def test_revoked_twilio_credentials_are_refused_at_once(redis_url: str) -> None:
    settings = make_settings(redis_url)
    async with AsyncExitStack() as stack:
        _, app_one = await stack.enter_async_context(process(settings))
        two, _ = await stack.enter_async_context(process(settings))
        client = app_one.state.store.client  # type: ignore[attr-defined]
        key, token = await apikeys.create(Store(client, partitions=16), "twilio-tenant", twilio=True)
        _, sid, secret = token.split("_")
        basic = httpx.BasicAuth(sid, secret)
        assert (await two.get(UNKNOWN, auth=basic)).status_code == 404
        await apikeys.revoke(Store(client, partitions=16), key.key_id)
        assert (await two.get(UNKNOWN, auth=basic)).status_code == 401
