"""A worker that hears the wake-up channel claims only the partitions start.lua announces, sweeps
every partition for unannounced work (retries, polls, webhook events) at its sweep pace, and falls
back to sweeping every round when the channel is lost: no SMS waits on a sweep it doesn't need,
and an idle worker costs Redis a bounded number of calls a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import redis.asyncio as aioredis
from delivery_fixtures import Live, live_service, new_number

from otp.app import build_sender, worker_options
from otp.core.keyring import Keyring
from otp.edge.worker import Worker
from otp.storage.client import connect
from otp.storage.store import Store


@asynccontextmanager
async def running_worker(
    live: Live, redis_url: str, *, sweep_interval: float, max_idle: float, poll_interval: float = 0.05
) -> AsyncIterator[Worker]:
    """A worker of the live service, run as `otp worker` runs it, until the block ends; it is
    listening on the wake-up channel (and has made its first sweep) when the block starts."""
    options = replace(
        worker_options(live.settings), sweep_interval=sweep_interval, max_idle=max_idle, poll_interval=poll_interval
    )
    client = connect(redis_url)
    keyring, sender = Keyring(live.settings.secret_keys), build_sender(live.settings)
    worker = Worker(Store(client, partitions=16), keyring, sender, options)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        deadline = time.monotonic() + 10
        while not worker._listening and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert worker._listening, "the worker never subscribed to the wake-up channel"
        await asyncio.sleep(0.2)  # past the sweep its subscription asked for
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await client.aclose()


async def sms_reached_twilio(live: Live, to: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(m.to == to for m in live.stub.messages):
            return True
        await asyncio.sleep(0.02)
    return False


async def evalsha_calls(redis_url: str) -> int:
    client = aioredis.Redis.from_url(redis_url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_an_announced_sms_goes_out_at_once_though_the_next_sweep_is_a_minute_away(redis_url: str) -> None:
    async with live_service(redis_url, worker=False) as live:
        async with running_worker(live, redis_url, sweep_interval=60.0, max_idle=60.0, poll_interval=30.0):
            to = new_number()
            await live.start(to)
            assert await sms_reached_twilio(live, to, seconds=3.0)


async def test_a_retry_nobody_announces_is_sent_by_the_next_sweep(redis_url: str) -> None:
    async with live_service(redis_url, worker=False) as live:
        async with running_worker(live, redis_url, sweep_interval=0.3, max_idle=0.1):
            live.stub.fail_next(1, status=503)  # transient: the job is retried after its backoff
            to = new_number()
            vid = (await live.start(to))["id"]
            attempt = await live.delivery(vid, "delivered", timeout=10)
            assert attempt["message_sid"] == live.stub.messages[-1].sid
            assert [m.to for m in live.stub.messages] == [to]


async def test_an_idle_worker_that_hears_the_channel_sweeps_only_at_its_sweep_pace(redis_url: str) -> None:
    async with live_service(redis_url, worker=False) as live:
        # Idle rounds every 50 ms: without the channel each would claim all 16 partitions' jobs,
        # polls and webhook events (48 script calls), 40 rounds in the 2 s measured.
        async with running_worker(live, redis_url, sweep_interval=0.5, max_idle=0.05, poll_interval=0.05):
            before = await evalsha_calls(redis_url)
            await asyncio.sleep(2.0)
            calls = await evalsha_calls(redis_url) - before
    sweeps = 2.0 / 0.5 + 2  # one more at each end of the window
    assert calls <= sweeps * 48, calls


async def test_a_worker_that_lost_the_channel_still_sends_what_is_queued(redis_url: str) -> None:
    async with live_service(redis_url, worker=False) as live:
        async with running_worker(live, redis_url, sweep_interval=60.0, max_idle=0.1):
            admin = aioredis.Redis.from_url(redis_url)
            try:
                await admin.client_kill_filter(_type="pubsub")
            finally:
                await admin.aclose()
            to = new_number()  # announced to nobody: the worker's subscription is gone
            await live.start(to)
            assert await sms_reached_twilio(live, to, seconds=5.0)
