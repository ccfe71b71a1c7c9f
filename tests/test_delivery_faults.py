"""Delivery survives a worker killed mid-send and a Redis restart between start and send; a
worker that stops closes its connections to Twilio."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from conftest import SECRET
from delivery_fixtures import ACCOUNT_SID, AUTH_TOKEN, live_service

from otp.edge.embedded_redis import EmbeddedRedis, free_port

TO = "+14155550199"


def worker_env(redis_url: str, stub_url: str, public_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    env.update(
        OTP_REDIS_URL=redis_url,
        OTP_SECRET_KEY=SECRET,
        OTP_TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        OTP_TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        OTP_TWILIO_FROM="+15005550006",
        OTP_TWILIO_API_URL=stub_url,
        OTP_PUBLIC_URL=public_url,
        OTP_SMS_LEASE="1",
        OTP_SMS_RETRY_BASE="0.05",
        **extra,
    )
    return env


async def test_a_worker_killed_mid_send_leaves_the_job_to_another_which_sends_it_once(redis_url: str) -> None:
    async with live_service(redis_url, worker=False) as live:
        live.stub.hang_next(1, seconds=2.0)
        vid = (await live.start(TO))["id"]
        env = worker_env(redis_url, live.stub.url, live.base, OTP_TWILIO_TIMEOUT="10")
        first = subprocess.Popen([sys.executable, "-m", "otp", "worker"], env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 15
            while not live.stub.messages and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert live.stub.messages, "the first worker never reached Twilio"
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # mid-send: Twilio has it, the SID is not stored
            first.wait()
        second = await asyncio.create_subprocess_exec(sys.executable, "-m", "otp", "worker", "--burst", env=env)
        assert await asyncio.wait_for(second.wait(), timeout=30) == 0
        attempt = await live.delivery(vid, "delivered")
        assert len(live.stub.messages) == 1
        assert attempt["message_sid"] == live.stub.messages[0].sid


async def test_a_worker_that_drained_the_queue_closes_its_twilio_connections(redis_url: str) -> None:
    async with live_service(redis_url, worker=False) as live:
        vid = (await live.start(TO))["id"]
        env = worker_env(redis_url, live.stub.url, live.base)
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "otp", "worker", "--burst", env=env, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(worker.communicate(), timeout=30)
        assert worker.returncode == 0, stderr.decode()
        attempt = await live.delivery(vid, "delivered")
        assert [m.sid for m in live.stub.messages] == [attempt["message_sid"]]
        # aiohttp's words for a session or connector left open at exit.
        assert "Unclosed" not in stderr.decode()


async def test_a_queued_sms_survives_a_redis_crash_with_aof(tmp_path: Path) -> None:
    port = free_port()
    redis_server = EmbeddedRedis(tmp_path / "redis", port=port, appendonly=True)
    redis_server.start()
    try:
        async with live_service(redis_server.url, worker=False) as live:
            vid = (await live.start(TO))["id"]
            await asyncio.sleep(1.5)  # appendfsync everysec: let the AOF reach the disk
            redis_server.kill()
            redis_server.start()
            env = worker_env(redis_server.url, live.stub.url, live.base)
            worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "otp", "worker", "--burst", env=env)
            assert await asyncio.wait_for(worker.wait(), timeout=30) == 0
            assert [m.to for m in live.stub.messages] == [TO]
            # The API's pool reconnects by itself after the restart.
            for _ in range(20):
                response = await live.http.get(f"/v1/verifications/{vid}", headers=live.auth)
                if response.status_code == 200:
                    break
                assert response.status_code == 503
                await asyncio.sleep(0.1)
            attempt = await live.delivery(vid, "delivered")
            assert attempt["message_sid"] == live.stub.messages[0].sid
    finally:
        redis_server.stop()


async def test_two_workers_with_slow_twilio_send_each_sms_once(redis_url: str) -> None:
    """Leases run out while jobs wait for a send slot: the worker that lost a job must not send it."""
    from otp.app import build_sender, worker_options
    from otp.core.keyring import Keyring
    from otp.edge.worker import Worker
    from otp.storage.client import connect
    from otp.storage.store import Store

    async with live_service(redis_url, worker=False, twilio_timeout=10.0) as live:
        numbers = [f"+1415555{n:04d}" for n in range(400, 403)]
        for to in numbers:
            await live.start(to)
        live.stub.hang_next(6, seconds=0.8)
        options = replace(worker_options(live.settings), lease=0.5, concurrency=1, poll_interval=0.05)
        clients = [connect(redis_url), connect(redis_url)]
        workers = [
            Worker(Store(c, partitions=16), Keyring(live.settings.secret_keys), build_sender(live.settings), options)
            for c in clients
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        deadline = asyncio.get_running_loop().time() + 20
        while len(live.stub.messages) < len(numbers) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # room for a duplicate to show up
        stop.set()
        await asyncio.gather(*tasks)
        for client in clients:
            await client.aclose()
        assert sorted(m.to for m in live.stub.messages) == numbers
