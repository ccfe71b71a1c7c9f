"""otp on Redis Sentinel: a primary, a replica and three Sentinels on loopback. The service follows
a failover by itself: while the primary is gone requests answer 503 (never 500), and they succeed
again once a replica is promoted, with what was lost in the window measured and bounded."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from cluster_fixtures import distinct_free_ports, running_service_at
from conftest import NO_PUMPING, Clock, RecordingSender, make_settings, policy

from otp.edge.embedded_redis import redis_server_path
from otp.errors import Unavailable

pytestmark = pytest.mark.sentinel

SERVICE = "otp"
# The primary refuses writes unless a replica acknowledged within MAX_LAG seconds: a primary cut
# off from its replicas stops taking writes it would lose, and what a crash can lose is bounded
# by what the replica hadn't acknowledged yet.
MIN_REPLICAS = 1
MAX_LAG = 1
OPEN = policy(
    resend_cooldown=0,
    key_sends_per_minute=1_000_000,
    key_checks_per_minute=1_000_000,
    **NO_PUMPING,
)


def _wait(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            if condition():
                return
        time.sleep(0.05)
    raise AssertionError(f"Sentinel setup: {what} within {timeout:.0f} s")


@contextlib.contextmanager
def _client(port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=1)
    try:
        yield client
    finally:
        client.close()


def _ask(port: int, *command: str) -> Any:
    with _client(port) as client:
        return client.execute_command(*command)  # type: ignore[no-untyped-call]  # unannotated in redis-py


@dataclass
class SentinelSetup:
    folder: Path
    primary: int
    replica: int
    sentinels: list[int]
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start_data_node(self, port: int, replica_of: int | None = None) -> None:
        node_dir = self.folder / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_path(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(node_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--min-replicas-to-write",
            str(MIN_REPLICAS),
            "--min-replicas-max-lag",
            str(MAX_LAG),
            "--logfile",
            str(node_dir / "redis.log"),
        ]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.processes[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: bool(_ask(port, "PING")), f"node {port} answering")

    def start_sentinel(self, port: int) -> None:
        node_dir = self.folder / f"sentinel-{port}"
        node_dir.mkdir(parents=True)
        conf = node_dir / "sentinel.conf"  # Sentinel rewrites its file: one each, writable
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {node_dir}\n"
            f"logfile {node_dir / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 500\n"
            f"sentinel failover-timeout {SERVICE} 2000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self.processes[port] = subprocess.Popen(
            [redis_server_path(), str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def master_port(self) -> int | None:
        for port in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                found = _ask(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                if isinstance(found, list | tuple) and found:
                    return int(found[1])
        return None

    def replication_ok(self, master: int) -> bool:
        with _client(master) as client:
            info = client.info("replication")
        return info.get("role") == "master" and int(info.get("connected_slaves", 0)) >= MIN_REPLICAS

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.kill()
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self.processes.clear()


def sentinels_ready(setup: SentinelSetup) -> bool:
    for port in setup.sentinels:
        state = _ask(port, "SENTINEL", "MASTER", SERVICE)
        fields = dict(zip(state[::2], state[1::2], strict=True)) if isinstance(state, list) else state
        fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
        if int(fields["num-other-sentinels"]) < 2 or int(fields["num-slaves"]) < 1:
            return False
    return True


@pytest.fixture
def sentinel_setup() -> Iterator[SentinelSetup]:
    with tempfile.TemporaryDirectory(prefix="otp-test-sentinel-") as folder:
        primary, replica, *sentinels = distinct_free_ports(5)
        setup = SentinelSetup(Path(folder), primary, replica, sentinels)
        try:
            setup.start_data_node(setup.primary)
            setup.start_data_node(setup.replica, replica_of=setup.primary)
            _wait(lambda: setup.replication_ok(setup.primary), "the replica in sync")
            for port in setup.sentinels:
                setup.start_sentinel(port)
            _wait(lambda: sentinels_ready(setup), "three Sentinels that know each other and the replica")
            yield setup
        finally:
            setup.stop()


async def test_service_runs_through_a_sentinel_url(sentinel_setup: SentinelSetup) -> None:
    settings = make_settings(sentinel_setup.url, policy=OPEN)
    async with running_service_at(settings, Clock(), RecordingSender()) as service:
        vid = (await service.start("+15017122661")).json()["id"]
        code = await service.last_code("+15017122661")
        assert (await service.check(code, id=vid)).json()["approved"] is True
    # The write reached the replica too (asynchronously, without WAIT).
    key = f"otp:{{p{int(vid[2:4], 16) % 16:02x}}}:v:{vid}"
    _wait(lambda: _ask(sentinel_setup.replica, "EXISTS", key) == 1, "the replica copy")


async def test_a_primary_that_lost_its_replica_refuses_writes_with_503_until_it_is_back(
    sentinel_setup: SentinelSetup,
) -> None:
    """min-replicas-to-write at work: Redis answers NOREPLICAS, which must be a 503 for the API and
    a retry for the worker, never a 500 or a dead worker loop."""
    setup = sentinel_setup
    settings = make_settings(setup.url, policy=OPEN)
    async with running_service_at(settings, Clock(), RecordingSender()) as service:
        assert (await service.start("+12025550001")).status_code == 201
        setup.kill(setup.replica)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        n = 1
        while True:
            n += 1
            refused = await service.start(f"+1202555{n:04d}")
            if refused.status_code != 201:
                break
            assert loop.time() < deadline, "the primary kept taking writes without a replica"
            await asyncio.sleep(0.1)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "unavailable"
        with pytest.raises(Unavailable):
            await service.deliver()  # the worker's claim is a write: refused the same way
        setup.start_data_node(setup.replica, replica_of=setup.primary)
        while (await service.start(f"+1202555{n + 1:04d}")).status_code != 201:
            assert loop.time() < deadline + 15, "writes never resumed"
            await asyncio.sleep(0.1)
        assert await service.deliver() >= 2


async def test_failover_gives_503_then_recovers_and_loses_at_most_the_unacknowledged_window(
    sentinel_setup: SentinelSetup,
) -> None:
    setup = sentinel_setup
    settings = make_settings(setup.url, policy=OPEN, max_sends=20)
    async with running_service_at(settings, Clock(), RecordingSender()) as service:
        loop = asyncio.get_running_loop()
        acked: dict[str, float] = {}  # verification id -> when its 201 arrived
        statuses: list[int] = []
        stop = asyncio.Event()
        kill_at: list[float] = []

        async def stream() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    response = await service.start(f"+1202555{n:04d}")
                except httpx.HTTPError as exc:  # the ASGI app must always answer
                    raise AssertionError(f"no answer: {exc!r}") from exc
                statuses.append(response.status_code)
                if response.status_code == 201:
                    acked[response.json()["id"]] = loop.time()
                else:
                    assert response.status_code == 503, response.text
                    assert response.json()["error"]["code"] == "unavailable"
                await asyncio.sleep(0.01)

        task = asyncio.create_task(stream())
        await asyncio.sleep(1.0)
        kill_at.append(loop.time())
        setup.kill(setup.primary)

        # Sentinel notices (down-after 500 ms), agrees (quorum 2) and promotes the replica.
        deadline = loop.time() + 20
        while setup.master_port() != setup.replica:
            assert loop.time() < deadline, "no failover"
            await asyncio.sleep(0.1)
        promoted_at = loop.time()
        # The promoted primary has no replica left, so min-replicas-to-write makes it refuse
        # writes (503) rather than take writes that one more crash would lose. The old primary
        # comes back as its replica, as an orchestrator would restart it.
        setup.start_data_node(setup.primary, replica_of=setup.replica)
        before = len(acked)
        while len(acked) == before:
            assert loop.time() < deadline + 20, "writes never resumed"
            await asyncio.sleep(0.05)
        recovered_at = loop.time()
        await asyncio.sleep(0.5)
        stop.set()
        await task

        lost = []
        for vid in acked:
            body = (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json()
            if body.get("status") != "pending":
                lost.append(vid)
        killed = kill_at[0]
        window = [vid for vid, at in acked.items() if killed - MAX_LAG <= at <= killed]
        print(
            f"\nsentinel failover: {len(acked)} starts acknowledged, {statuses.count(503)} answered 503, "
            f"failover after {promoted_at - killed:.1f} s, writes back after {recovered_at - killed:.1f} s; "
            f"lost {len(lost)} acknowledged verification(s) (bound: the {len(window)} acknowledged in the "
            f"last {MAX_LAG} s before the kill)"
        )
        assert 500 not in statuses
        assert 503 in statuses
        assert set(statuses) <= {201, 503}
        # Async replication, no WAIT: only what the replica hadn't received can be lost, and with
        # min-replicas-max-lag that is at most the last MAX_LAG seconds of writes.
        assert set(lost) <= set(window)
