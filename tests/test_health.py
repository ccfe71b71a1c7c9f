"""Health that tells the truth. /healthz: the process can serve, and `otp serve`'s embedded Redis
lives (supervised: restarted with its data when it dies, given up on past a bound). /readyz: every
Redis primary answers with a configuration that keeps otp's guarantees; workers are a gauge."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cluster_fixtures
import httpx
import pytest
import redis
import test_sentinel
from conftest import Clock, RecordingSender, Service, default_worker_options, make_settings, running_service
from test_fail_safe import log_of, serving

from otp import startup
from otp.app import create_app
from otp.core.readiness import VERDICT_TTL
from otp.edge.embedded_redis import EmbeddedRedis, free_port
from otp.edge.worker import Worker
from otp.errors import ConfigError
from otp.storage import server_config
from otp.storage.client import connect

sentinel_setup = test_sentinel.sentinel_setup

METRICS_TOKEN = "metrics-token-0123456789abcdefghijklmnop"
TO = "+15017122661"


def redis_pid(data_dir: Path) -> int:
    """The embedded redis-server's pid, as it reports it (INFO server) on its socket."""
    with contextlib.closing(redis.Redis(unix_socket_path=str(data_dir / "redis.sock"), socket_timeout=2)) as client:
        return int(client.info("server")["process_id"])


def zombies_of(parent: int) -> list[int]:
    """Children of ``parent`` that exited and were never reaped (``<defunct>``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # "pid (comm) state ppid …": comm may hold spaces, so split after its closing paren.
            state, ppid = stat.read_text().rpartition(")")[2].split()[:2]
            if int(ppid) == parent and state == "Z":
                found.append(int(stat.parent.name))
    return found


def wait_for(condition: object, what: str, timeout: float = 15.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, httpx.HTTPError, OSError):
            if condition():
                return
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def console_code(process: subprocess.Popen[str], seen: list[str], timeout: float = 10.0) -> str:
    """The code the console sender wrote to the log, read from the live pipe."""
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(process.stdout.read() or "")
        match = re.search(r"DEVELOPMENT ONLY console SMS.*?(\d{6})", "".join(seen))
        if match:
            return match.group(1)
        time.sleep(0.05)
    raise AssertionError("".join(seen))


def test_a_killed_embedded_redis_is_reaped_and_restarted_with_its_data(tmp_path: Path) -> None:
    with serving(tmp_path) as (base, process):
        data_dir = tmp_path / "data"
        auth = {"Authorization": f"Bearer {(data_dir / 'dev-api-key').read_text().strip()}"}
        started = httpx.post(f"{base}/v1/verifications", json={"to": TO}, headers=auth)
        assert started.status_code == 201, started.text
        seen: list[str] = []
        code = console_code(process, seen)
        killed = redis_pid(data_dir)
        os.kill(killed, signal.SIGKILL)
        answers: list[httpx.Response] = []

        def healthy_again() -> bool:
            answers.append(httpx.get(f"{base}/healthz", timeout=2))
            return answers[-1].status_code == 200 and redis_pid(data_dir) != killed

        wait_for(healthy_again, "/healthz 200 on a new redis-server")
        # While it was down (if a probe caught that moment) /healthz said so and named it.
        for answer in answers[:-1]:
            if answer.status_code != 200:
                assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
                assert answer.json()["checks"]["embedded_redis"] in ("restarting", "ok")
        assert answers[-1].json() == {"status": "ok", "checks": {"embedded_redis": "ok"}}
        assert zombies_of(process.pid) == []
        # The verification started before the kill is still there (AOF), and its code still works.
        # A pooled connection to the killed server fails once (503, Retry-After) and is replaced.
        for _ in range(20):
            checked = httpx.post(
                f"{base}/v1/verifications/check", json={"id": started.json()["id"], "code": code}, headers=auth
            )
            if checked.status_code != 503:
                break
            time.sleep(0.1)
        assert checked.json()["status"] == "approved", checked.text
        log = "".join(seen) + log_of(process)
    assert f"embedded redis-server (pid {killed}) exited with status -9; starting it again" in log


def test_serve_exits_non_zero_when_its_embedded_redis_keeps_dying(tmp_path: Path) -> None:
    with serving(tmp_path) as (_base, process):
        data_dir = tmp_path / "data"
        for _ in range(6):  # five restarts are allowed within a minute; the sixth death is the end
            killed = redis_pid(data_dir)
            os.kill(killed, signal.SIGKILL)
            if _ < 5:
                wait_for(lambda killed=killed: redis_pid(data_dir) != killed, "a restarted redis-server")
        assert process.wait(timeout=30) == startup.EXIT_REDIS_LOST
        assert zombies_of(process.pid) == []
        log = process.stdout.read() if process.stdout else ""
    assert "embedded redis-server died 6 times within 60 s; giving up" in log
    assert "otp serve exits: embedded redis-server died 6 times" in log


async def test_healthz_names_an_embedded_redis_given_up_on(redis_url: str, tmp_path: Path) -> None:
    """The supervisor on its own: one restart allowed, the second death is the end, and /healthz
    says which check failed."""
    server = EmbeddedRedis(tmp_path / "redis", port=free_port(), appendonly=True)
    server.start()
    reasons: list[str] = []
    server.supervise(reasons.append, max_restarts=1)
    try:
        with contextlib.closing(redis.Redis.from_url(server.url)) as client:
            client.set("kept", "yes")
            first = server.process.pid if server.process else 0
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: server.health() == "ok" and server.process and server.process.pid != first, "restart")
            assert client.get("kept") == b"yes"
            assert server.restarts == 1
        app = create_app(make_settings(redis_url), health_checks={"embedded_redis": server.health})
        async with http_to(app) as http:
            assert (await http.get("/healthz")).status_code == 200
            os.kill(server.process.pid if server.process else 0, signal.SIGKILL)
            wait_for(lambda: bool(reasons), "the supervisor giving up")
            answer = await http.get("/healthz")
        assert answer.status_code == 503
        assert answer.json() == {"status": "unavailable", "checks": {"embedded_redis": "failed"}}
        assert answer.headers["Retry-After"] == "1"
        assert "died 2 times within 60 s" in reasons[0]
        assert zombies_of(os.getpid()) == []
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def http_to(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, through its lifespan."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://otp.test") as http:
            yield http


@contextlib.asynccontextmanager
async def metered(redis_url: str, clock: Clock, **changes: object) -> AsyncIterator[Service]:
    settings = make_settings(redis_url, metrics_token=METRICS_TOKEN, **changes)
    async with running_service(settings, clock, RecordingSender()) as service:
        yield service


async def worker_gauge(service: Service) -> str:
    text = (await service.http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
    match = re.search(r"^otp_worker_last_seen_seconds (\S+)$", text, re.MULTILINE)
    assert match, text
    return match.group(1)


async def test_readyz_is_ready_without_any_worker_and_the_gauge_says_when_one_last_beat(
    redis_url: str, clock: Clock
) -> None:
    async with metered(redis_url, clock) as service:  # worker=False: OTP_WORKER=off, none elsewhere
        ready = await service.http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "checks": {"redis": "ok", "redis_config": "ok"}}
        assert await worker_gauge(service) == "+Inf"  # no worker ever beat
        state = service.app.state
        await Worker(state.store, state.verifier.keyring, service.sender, default_worker_options(), clock=clock).beat()
        clock.advance(42)
        assert await worker_gauge(service) == "42.0"
        clock.advance(3600)  # workers gone for an hour: still ready, and the gauge says how long
        assert (await service.http.get("/readyz")).status_code == 200
        assert await worker_gauge(service) == "3642.0"


async def test_readyz_turns_503_when_redis_is_set_to_evict_while_otp_runs(redis_url: str, clock: Clock) -> None:
    admin = redis.Redis.from_url(redis_url)
    try:
        async with metered(redis_url, clock) as service, metered(redis_url, clock, redis_allow_eviction=True) as lax:
            assert (await service.http.get("/readyz")).status_code == 200
            assert (await lax.http.get("/readyz")).status_code == 200
            admin.config_set("maxmemory-policy", "allkeys-lru")
            # The verdict is kept a few seconds: probes don't run INFO each time.
            assert (await service.http.get("/readyz")).status_code == 200
            clock.advance(VERDICT_TTL)
            answer = await service.http.get("/readyz")
            assert answer.status_code == 503
            assert answer.json() == {
                "status": "unavailable",
                "checks": {"redis": "ok", "redis_config": "failed: redis eviction policy (primary)"},
            }
            assert answer.headers["Retry-After"] == "1"
            # OTP_REDIS_ALLOW_EVICTION=1: the operator accepted it (a warning at startup instead).
            assert (await lax.http.get("/readyz")).status_code == 200
            admin.config_set("maxmemory-policy", "noeviction")
            clock.advance(VERDICT_TTL)
            assert (await service.http.get("/readyz")).status_code == 200
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.close()


async def test_a_redis_turned_to_evict_at_run_time_is_logged_once_and_so_is_its_recovery(
    redis_url: str, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """/readyz going 503 says why in the log (the load balancer only sees the status): one WARNING
    naming the failed check and its fix, however many probes follow, and one INFO once it is fixed."""
    admin = redis.Redis.from_url(redis_url)
    try:
        async with metered(redis_url, clock) as service:
            with caplog.at_level(logging.INFO, logger="otp.readiness"):
                assert (await service.http.get("/readyz")).status_code == 200
                admin.config_set("maxmemory-policy", "allkeys-lru")
                for _ in range(3):
                    clock.advance(VERDICT_TTL)
                    assert (await service.http.get("/readyz")).status_code == 503
                admin.config_set("maxmemory-policy", "noeviction")
                for _ in range(2):
                    clock.advance(VERDICT_TTL)
                    assert (await service.http.get("/readyz")).status_code == 200
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.close()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "otp.readiness"]
    assert [level for level, _ in said] == [logging.WARNING, logging.INFO], said
    warning = said[0][1]
    assert "/readyz answers 503" in warning and "redis eviction policy (primary)" in warning
    assert "allkeys-lru" in warning and "fix: set `maxmemory-policy noeviction`" in warning
    assert "again" in said[1][1]


async def test_healthz_answers_status_and_checks_even_with_nothing_to_check(redis_url: str, clock: Clock) -> None:
    """Without an embedded Redis to watch, /healthz has the shape /readyz has: ``checks`` is {}."""
    async with metered(redis_url, clock) as service:
        answer = await service.http.get("/healthz")
        assert answer.status_code == 200
        assert answer.json() == {"status": "ok", "checks": {}}
        schema = (await service.http.get("/openapi.json")).json()["components"]["schemas"]["Health"]
        assert set(schema["required"]) == {"status", "checks"}


async def test_readyz_is_503_while_redis_does_not_answer(clock: Clock) -> None:
    async with http_to(create_app(make_settings(f"redis://127.0.0.1:{free_port()}/0"), clock=clock)) as http:
        answer = await http.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"redis": "unavailable", "redis_config": "unknown"}


@pytest.mark.cluster
async def test_readyz_pings_every_cluster_primary_and_is_503_when_one_is_stopped(clock: Clock) -> None:
    # A cluster of its own: one of its primaries is stopped for good.
    with cluster_fixtures.local_cluster("otp-test-health-cluster-") as cluster:
        async with http_to(create_app(make_settings(cluster.url), clock=clock)) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"redis": "ok", "redis_config": "ok"}
            # Not a seed of the URL: only a probe of every primary finds it gone.
            cluster.processes[2].kill()
            cluster.processes[2].wait()
            answer = await http.get("/readyz")
        assert answer.status_code == 503, answer.text
        assert answer.json()["checks"]["redis"] == "unavailable"


@pytest.mark.sentinel
async def test_on_sentinel_the_startup_check_reads_the_primary(sentinel_setup: test_sentinel.SentinelSetup) -> None:
    # Only the primary evicts: a check that read the replica (or a Sentinel) would pass.
    with contextlib.closing(redis.Redis(host="127.0.0.1", port=sentinel_setup.primary)) as primary:
        primary.config_set("maxmemory-policy", "volatile-lru")
    client = connect(sentinel_setup.url)
    try:
        configs = await server_config.read(client)
        assert [c.maxmemory_policy for c in configs] == ["volatile-lru"]
        with pytest.raises(ConfigError, match="maxmemory-policy volatile-lru"):
            await startup.check_redis(client, make_settings(sentinel_setup.url))
    finally:
        await client.aclose()
