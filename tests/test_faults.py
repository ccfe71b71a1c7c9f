"""Faults: Redis killed mid-stream, Twilio failing for a while. Requests get 503 (never 500), the
service recovers by itself, and nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from conftest import (
    NO_PUMPING,
    Clock,
    RecordingSender,
    Service,
    default_worker_options,
    make_settings,
    policy,
    running_service,
)
from delivery_fixtures import live_service

from otp.edge.embedded_redis import EmbeddedRedis, free_port
from otp.edge.worker import Worker
from otp.errors import Unavailable

OPEN_FLOORS = {**NO_PUMPING, "ip_sends_per_hour": 10_000}


@contextlib.asynccontextmanager
async def durable_service(tmp_path: Path) -> AsyncIterator[tuple[Service, EmbeddedRedis]]:
    # appendfsync always: Redis answers only once the write is on disk, so whatever a client saw
    # acknowledged survives even a SIGKILL. (everysec may lose the last second.)
    server = EmbeddedRedis(tmp_path / "redis", port=free_port(), appendonly=True, fsync="always")
    server.start()
    try:
        settings = make_settings(server.url, policy=policy(**OPEN_FLOORS))
        async with running_service(settings, Clock(), RecordingSender()) as service:
            yield service, server
    finally:
        server.stop()


async def drain_once(worker: Worker) -> int:
    """One worker pass; a pooled connection from before the restart fails once, as in `otp worker`."""
    for _ in range(20):
        try:
            return await worker.run_once()
        except Unavailable:
            await asyncio.sleep(0.05)
    raise AssertionError("the worker never got through to Redis")


async def keep_starting(service: Service, stop: asyncio.Event, statuses: list[int], created: dict[str, str]) -> None:
    """Starts verifications back to back until ``stop``, noting each status and each one created."""
    n = 100
    while not stop.is_set():
        n += 1
        to = f"+1202555{n:04d}"
        try:
            response = await service.start(to)
        except httpx.HTTPError as exc:  # the ASGI app must always answer
            raise AssertionError(f"no answer: {exc!r}") from exc
        statuses.append(response.status_code)
        if response.status_code == 201:
            created[response.json()["id"]] = to
        else:
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "unavailable"
        await asyncio.sleep(0.005)


async def test_redis_killed_mid_stream_gives_503_recovers_and_loses_nothing(tmp_path: Path) -> None:
    async with durable_service(tmp_path) as (service, server):
        approved: dict[str, str] = {}
        for n in range(5):
            to = f"+1202555{n:04d}"
            vid = (await service.start(to)).json()["id"]
            code = await service.last_code(to)
            assert (await service.check(code, id=vid)).json()["approved"]
            approved[vid] = to

        created: dict[str, str] = {}
        statuses: list[int] = []
        recovered_after: list[float] = []
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        task = asyncio.create_task(keep_starting(service, stop, statuses, created))
        await asyncio.sleep(0.3)
        server.kill()
        await asyncio.sleep(0.5)
        outage_start = loop.time()
        server.start()
        while loop.time() - outage_start < 10:
            before = len(created)
            await asyncio.sleep(0.1)
            if len(created) > before:
                recovered_after.append(loop.time() - outage_start)
                break
        await asyncio.sleep(0.3)
        stop.set()
        await task

        assert 503 in statuses and 500 not in statuses
        assert recovered_after and recovered_after[0] < 5.0
        for vid, _ in approved.items():
            body = (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json()
            assert body["status"] == "approved"
        for vid in created:
            body = (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json()
            assert body["status"] == "pending", vid
        # Every acknowledged start still has its SMS queued: the worker sends each exactly once.
        state = service.app.state
        worker = Worker(
            state.store, state.verifier.keyring, service.sender, default_worker_options(), clock=service.clock
        )
        while await drain_once(worker):
            pass
        sent_to = [m.to for m in service.sender.messages]
        assert sorted(set(sent_to) & set(created.values())) == sorted(created.values())
        assert len(sent_to) == len(set(sent_to))


async def test_twilio_failing_for_a_while_sends_every_queued_sms_once(redis_url: str) -> None:
    async with live_service(redis_url, policy=policy(**OPEN_FLOORS)) as live:
        live.stub.fail_next(12, status=503)
        numbers = [f"+1415555{n:04d}" for n in range(200, 206)]
        vids = [(await live.start(to))["id"] for to in numbers]
        for vid in vids:
            await live.delivery(vid, "delivered", timeout=20)
        assert sorted(m.to for m in live.stub.messages) == sorted(numbers)


async def test_twilio_hanging_for_a_while_sends_every_queued_sms_once(redis_url: str) -> None:
    async with live_service(redis_url, policy=policy(**OPEN_FLOORS)) as live:
        live.stub.hang_next(3, seconds=1.5)
        numbers = [f"+1415555{n:04d}" for n in range(300, 304)]
        vids = [(await live.start(to))["id"] for to in numbers]
        for vid in vids:
            await live.delivery(vid, "delivered", timeout=20)
        assert sorted(m.to for m in live.stub.messages) == sorted(numbers)
