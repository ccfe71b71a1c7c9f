"""otp on a real three-master Redis Cluster: the core, delivery and policy flows through the app,
keys really spread over the masters, and several API and worker processes sharing one cluster."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import cluster_fixtures
import httpx
import pytest
from cluster_fixtures import LocalCluster, distinct_free_ports, running_service_at
from conftest import NO_PUMPING, SECRET, Clock, RecordingSender, Service, make_settings, policy
from delivery_fixtures import live_service
from processes import stop
from redis.asyncio.cluster import RedisCluster

from otp.app import create_app
from otp.core import apikeys, services
from otp.edge.embedded_redis import free_port
from otp.errors import ConfigError, Unavailable
from otp.storage import keys as keyspace
from otp.storage.client import connect, parse
from otp.storage.store import Call, Store

pytestmark = pytest.mark.cluster
# The cluster fixtures, bound here so pytest finds them in this module.
redis_cluster = cluster_fixtures.redis_cluster
cluster_url = cluster_fixtures.cluster_url

TO = "+15017122661"
OPEN_FLOORS = dict(NO_PUMPING)


@contextlib.asynccontextmanager
async def on_cluster(url: str, clock: Clock | None = None, **changes: Any) -> AsyncIterator[Service]:
    settings_changes = {k: v for k, v in changes.items() if k in {"max_sends", "worker"}}
    policy_changes = {k: v for k, v in changes.items() if k not in settings_changes}
    settings = make_settings(url, policy=policy(**policy_changes), **settings_changes)
    async with running_service_at(settings, clock or Clock(), RecordingSender()) as service:
        yield service


def wrong_for(code: str) -> str:
    return "000000" if code != "000000" else "111111"


async def fetch(service: Service, vid: str) -> dict[str, Any]:
    return dict((await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json())


# -- the URL forms ---------------------------------------------------------------------------------


def test_every_accepted_url_form_parses_and_anything_else_is_refused_naming_the_variable() -> None:
    assert parse("redis://127.0.0.1:6379/0").kind == "plain"
    assert parse("rediss://cache.example:6380").kind == "plain"
    assert parse("unix:///run/redis.sock").kind == "plain"
    sentinel = parse("redis+sentinel://10.0.0.1:26379,10.0.0.2,[::1]:26380/otp/2")
    assert (sentinel.kind, sentinel.service, sentinel.db) == ("sentinel", "otp", 2)
    assert sentinel.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    cluster = parse("redis+cluster://a:7000,b:7001")
    assert (cluster.kind, cluster.hosts, cluster.tls) == ("cluster", (("a", 7000), ("b", 7001)), False)
    secure = parse("rediss+cluster://:s3cret@a:7000")
    assert secure.tls and dict(secure.credentials) == {"password": "s3cret"}
    assert "s3cret" not in repr(secure)
    for bad in (
        "http://127.0.0.1:6379",
        "127.0.0.1:6379",
        "redis+sentinel://a:26379",  # no service name
        "redis+sentinel://a:26379/otp/zero",
        "redis+cluster://",
        "redis+cluster://a:port",
        "redis+cluster://a:7000/3",  # Cluster has database 0 only
        "redis+cluster://a:7000?timeout=1",
        "rediss+sentinel://a/otp",
    ):
        with pytest.raises(ConfigError, match="OTP_REDIS_URL"):
            parse(bad)
    with pytest.raises(ConfigError, match=r"u:\*\*\*@") as refused:
        parse("redis+cluster://u:hunter2@a:7000/5")
    assert "hunter2" not in str(refused.value)


async def test_connect_returns_a_cluster_client_that_finds_every_master(cluster_url: str) -> None:
    client = connect(cluster_url)
    try:
        assert await client.ping()
        masters = cast(RedisCluster, client).get_primaries()
        assert len(masters) == 3  # two seeds in the URL, the third found from CLUSTER SLOTS
    finally:
        await client.aclose()


async def test_a_cluster_nobody_answers_is_a_503_never_a_500() -> None:
    dead = f"redis+cluster://127.0.0.1:{free_port()}"
    store = Store(connect(dead), partitions=16)
    with pytest.raises(Unavailable):
        await store.ping()
    await store.client.aclose()
    app = create_app(make_settings(dead))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://otp.test") as http:
            answer = await http.post(
                "/v1/verifications", json={"to": TO}, headers={"Authorization": "Bearer otpk_abc_def"}
            )
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "unavailable"
            assert (await http.get("/readyz")).status_code == 503


async def test_pipelined_scripts_survive_nodes_without_them_and_run_exactly_once(
    cluster_url: str, redis_cluster: LocalCluster
) -> None:
    """A primary that lost its scripts (SCRIPT FLUSH, a new node, a failover to a replica that
    never saw them) answers NOSCRIPT without running them: those calls, and only those, run
    again. Each call adds one member to a sliding log, so a call run twice would show."""
    store = Store(connect(cluster_url), partitions=16)
    try:
        scopes = [keyspace.scope_tag("ip", f"198.51.100.{n}") for n in range(12)]

        def calls(event: str) -> list[Call]:
            return [
                Call("limit", tag, [tag + "sends"], {"window_ms": 3_600_000, "limit": 100, "member": event})
                for tag in scopes
            ]

        assert [r[0] for r in await store.run_many(calls("first"), 1_000)] == [1] * len(scopes)
        redis_cluster.flush()  # every primary forgets the scripts (and the data)
        results = await store.run_many(calls("second"), 2_000)
        assert [(r[0], r[1]) for r in results] == [(1, 1)] * len(scopes)
        for tag in scopes:
            assert await store.client.zcard(tag + "sends") == 1
        assert len({redis_cluster.node_for_key(tag) for tag in scopes}) >= 2
    finally:
        await store.client.aclose()


# -- core flows through the app --------------------------------------------------------------------


async def test_start_deliver_check_approves_on_cluster(cluster_url: str) -> None:
    async with on_cluster(cluster_url) as service:
        started = await service.start(TO, ip="203.0.113.7")
        assert started.status_code == 201, started.text
        vid = started.json()["id"]
        code = await service.last_code(TO)
        assert service.sender.messages[-1].to == TO
        checked = (await service.check(code, id=vid)).json()
        assert checked["approved"] is True and checked["token"]
        fetched = await fetch(service, vid)
        assert fetched["status"] == "approved"
        assert fetched["send_attempts"][0]["message_sid"].startswith("SM")
        # By number, and cancel: the other scripts of the partition.
        other_to = "+14155552671"
        other = (await service.start(other_to)).json()["id"]
        by_number = await service.check(wrong_for(await service.last_code(other_to)), to=other_to)
        assert by_number.json()["attempts_left"] == 4
        canceled = await service.http.post(f"/v1/verifications/{other}/cancel", headers=service.auth())
        assert canceled.json()["status"] == "canceled"


async def test_resend_keeps_the_last_three_codes_on_cluster(cluster_url: str) -> None:
    async with on_cluster(cluster_url, resend_cooldown=0, **OPEN_FLOORS) as service:
        vid = (await service.start(TO)).json()["id"]
        codes = [await service.last_code(TO)]
        for _ in range(3):
            resent = await service.start(TO)
            assert resent.status_code == 201 and resent.json()["id"] == vid
            codes.append(await service.last_code(TO))
        assert len((await fetch(service, vid))["send_attempts"]) == 4
        if codes[0] not in codes[1:]:
            assert (await service.check(codes[0], id=vid)).json()["approved"] is False
        assert (await service.check(codes[1], id=vid)).json()["approved"] is True


async def test_fifty_parallel_wrong_guesses_lock_after_exactly_five_on_cluster(cluster_url: str) -> None:
    async with on_cluster(cluster_url) as service:
        vid = (await service.start(TO)).json()["id"]
        code = await service.last_code(TO)
        answers = await asyncio.gather(*(service.check(wrong_for(code), id=vid) for _ in range(50)))
        assert all(a.status_code == 200 for a in answers)
        assert not any(a.json()["approved"] for a in answers)
        fetched = await fetch(service, vid)
        assert fetched["attempts"] == 5
        assert fetched["status"] == "max_attempts_reached"
        assert (await service.check(code, id=vid)).json()["approved"] is False


async def test_twenty_parallel_right_answers_approve_once_on_cluster(cluster_url: str) -> None:
    async with on_cluster(cluster_url) as service:
        vid = (await service.start(TO)).json()["id"]
        code = await service.last_code(TO)
        responses = await asyncio.gather(*(service.check(code, id=vid) for _ in range(20)))
        answers = [r.json() for r in responses if r.status_code == 200]
        assert {r.status_code for r in responses} <= {200, 409}
        approvals = [a for a in answers if a["approved"]]
        # One approval: answers after it was committed repeat it with the same token, never a second.
        assert len({a["token"] for a in approvals}) == 1
        assert sum(1 for a in answers if "token" in a) == len(approvals)
        assert (await fetch(service, vid))["status"] == "approved"


async def test_hundred_parallel_starts_for_one_number_allow_exactly_the_hourly_cap_on_cluster(
    cluster_url: str,
) -> None:
    async with on_cluster(
        cluster_url,
        resend_cooldown=0,
        number_sends_per_hour=10,
        max_sends=20,
        **NO_PUMPING,
    ) as service:
        answers = await asyncio.gather(*(service.start(TO) for _ in range(100)))
        assert sum(1 for a in answers if a.status_code == 201) == 10
        assert {a.json()["error"]["code"] for a in answers if a.status_code != 201} == {"number_hourly_limit"}


async def test_pumping_refusal_is_refunded_from_the_other_scopes_and_approvals_convert_on_cluster(
    cluster_url: str,
) -> None:
    """The IP, API-key, prefix and country scopes live in four slots (most likely on different
    masters): their scripts run in one cluster pipeline, and a refusal by one is taken back from
    the others in another."""
    ip = "203.0.113.7"
    async with on_cluster(
        cluster_url, ip_sends_per_hour=3, prefix_hourly_floor=2, prefix_daily_floor=6, resend_cooldown=0
    ) as service:
        slots = {
            keyspace.scope_tag("ip", ip),
            keyspace.scope_tag("pfx", "+1415555"),
            keyspace.scope_tag("cc", "US"),
        }
        cluster = cast(RedisCluster, service.redis)
        assert len({await cluster.cluster_keyslot(tag) for tag in slots}) == 3

        first = await service.start("+14155550001", ip=ip)
        second = await service.start("+14155550002", ip=ip)
        assert first.status_code == second.status_code == 201
        for n in range(3, 6):  # the prefix's unverified floor (2) is reached: blocked
            refused = await service.start(f"+1415555{n:04d}", ip=ip)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] in {"pumping_unverified_hourly", "prefix_blocked"}
        # Refunded: the IP has counted 2 sends, not 5, so a third one (another prefix) goes through
        # and only the fourth hits the IP limit.
        assert (await service.start("+12125550003", ip=ip)).status_code == 201
        assert (await service.start("+12125550004", ip=ip)).json()["error"]["code"] == "ip_hourly_limit"
        admin = service.auth(service.admin_key)
        country = (await service.http.get("/v1/stats/conversion?country=US", headers=admin)).json()
        assert country["sends"] == 3  # the refused sends were taken back from the country too

        # An approval is pipelined with the conversion counters of its prefix and country.
        code = await service.last_code("+14155550001")
        assert (await service.check(code, id=first.json()["id"])).json()["approved"] is True
        prefix = (await service.http.get("/v1/stats/conversion?prefix=%2B1415555", headers=admin)).json()
        assert (prefix["sends"], prefix["approvals"]) == (2, 1)


async def test_twilio_delivery_reaches_delivered_on_cluster(cluster_url: str) -> None:
    to = "+14155550123"
    async with live_service(cluster_url) as live:
        vid = (await live.start(to))["id"]
        attempt = await live.delivery(vid, "delivered")
        assert attempt["message_sid"].startswith("SM")
        checked = await live.http.post(
            "/v1/verifications/check", json={"id": vid, "code": live.code_for(to)}, headers=live.auth
        )
        assert checked.json()["approved"] is True
        assert checked.json()["delivery"]["status"] == "delivered"


async def test_admin_reads_work_on_cluster(cluster_url: str) -> None:
    async with on_cluster(cluster_url) as service:
        await service.start(TO)
        admin = service.auth(service.admin_key)
        assert (await service.http.post("/v1/safelist", json={"entry": "+1501712"}, headers=admin)).status_code == 201
        assert (await service.http.get("/v1/safelist", headers=admin)).json()["entries"] == ["+1501712"]


async def test_verify_services_and_their_lookups_work_on_cluster(cluster_url: str) -> None:
    """The v2 tenants: a service and its account index are written in one MULTI (both {cfg}, one
    slot); the per-attempt lookups live in the verification's partition."""
    client = connect(cluster_url)
    store = Store(client, partitions=16)
    account = "AC" + "1" * 32
    vid = "VE" + "ab" * 16
    try:
        service = await services.create(store, account, {"FriendlyName": "Shop"}, now=time.time())
        found = await services.get(store, service.sid)
        assert found is not None and found.params["FriendlyName"] == "Shop"
        page, total = await services.list_for_account(store, account, offset=0, count=10)
        assert total == 1 and [s.sid for s in page] == [service.sid]
        await services.remember_send(
            store, service_sid=service.sid, verification_id=vid, send_number=1, e164=TO, ttl_ms=60_000
        )
        assert await services.find_attempt(store, services.attempt_sid(vid, 1)) == (vid, 1, service.sid)
        await services.delete(store, service)
        assert await services.get(store, service.sid) is None
    finally:
        await client.aclose()


async def test_audit_log_reads_on_cluster(cluster_url: str) -> None:
    async with on_cluster(cluster_url) as service:
        vid = (await service.start(TO)).json()["id"]
        page = await service.http.get("/v1/audit", headers=service.auth(service.admin_key))
        assert page.status_code == 200, page.text
        assert any(event.get("vid") == vid for event in page.json()["events"])


# -- the key layout on the masters -----------------------------------------------------------------


async def test_keys_of_one_verification_share_a_slot_and_partitions_spread_over_the_masters(
    cluster_url: str, redis_cluster: LocalCluster
) -> None:
    async with on_cluster(cluster_url, **OPEN_FLOORS) as service:
        vids: dict[str, str] = {}
        for n in range(40):
            to = f"+1202555{n:04d}"
            started = await service.start(to)
            assert started.status_code == 201
            vids[started.json()["id"]] = to
        cluster = cast(RedisCluster, service.redis)
        masters_of_partitions: set[int] = set()
        for vid, to in vids.items():
            partition = keyspace.partition_of_id(vid, 16)
            keys = [
                keyspace.verification(partition, vid),
                keyspace.job(partition, f"{vid}:1"),
                keyspace.new_jobs(partition),
                keyspace.audit_stream(partition),
                keyspace.number_state(partition, to),
                keyspace.outbox(partition),
            ]
            slots = {await cluster.cluster_keyslot(key) for key in keys}
            assert len(slots) == 1, keys
            # The record holds the queued SMS's sealed code; a job hash only for a send's own choices;
            # the job waits in the partition's list of new jobs until its first claim.
            assert await cluster.exists(keys[0], keys[2]) == 2
            masters_of_partitions.add(redis_cluster.node_for_key(keys[0]))
        assert len(masters_of_partitions) >= 2
        holding = {port: count for port, count in redis_cluster.keys_per_node().items() if count}
        print(f"keys per master: {redis_cluster.keys_per_node()}")
        assert len(holding) >= 2
        # Configuration ({cfg}) keys all sit on one master, next to each other.
        cfg = {keyspace.api_key_index(), keyspace.safe_list(), keyspace.worker_heartbeat()}
        assert len({await cluster.cluster_keyslot(key) for key in cfg}) == 1


# -- several processes on one cluster -------------------------------------------------------------


def otp_env(cluster_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    env.update(
        OTP_REDIS_URL=cluster_url,
        OTP_SECRET_KEY=SECRET,
        OTP_DATA_DIR=str(tmp_path / "data"),
        OTP_ARGON2_TIME_COST="1",
        OTP_ARGON2_MEMORY_KIB="1024",
        OTP_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def processes(commands: list[tuple[list[str], dict[str, str]]], cwd: Path) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    try:
        for command, env in commands:
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "otp", *command],
                    env=env,
                    cwd=cwd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        yield started
    finally:
        stop(*started)


async def wait_healthy(base: str, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"otp serve exited: {process.stdout.read() if process.stdout else ''}")
            with contextlib.suppress(httpx.HTTPError):
                # /healthz, not /readyz: these API processes run no worker, so no heartbeat.
                if (await http.get(f"{base}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{base} never answered")


async def test_two_api_processes_share_the_number_limit_on_cluster(cluster_url: str, tmp_path: Path) -> None:
    ports = distinct_free_ports(2)
    env = {
        "OTP_WORKER": "off",
        "OTP_RESEND_COOLDOWN": "0",
        "OTP_MAX_SENDS": "20",
        "OTP_NUMBER_SENDS_PER_HOUR": "10",
        "OTP_PUMPING_PREFIX_HOURLY_FLOOR": "1000",
        "OTP_PUMPING_PREFIX_DAILY_FLOOR": "1000",
        "OTP_PUMPING_COUNTRY_DAILY_FLOOR": "1000",
        "OTP_PUMPING_RANGE_DAILY_FLOOR": "1000",
        "OTP_PUMPING_UNPROVEN_COUNTRY_FLOOR": "1000",
        "OTP_PUMPING_UNPROVEN_TENANT_FLOOR": "1000",
    }
    commands = [(["serve"], otp_env(cluster_url, tmp_path, OTP_PORT=str(port), **env)) for port in ports]
    with processes(commands, tmp_path) as servers:
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        await asyncio.gather(*(wait_healthy(base, server) for base, server in zip(bases, servers, strict=True)))
        client = connect(cluster_url)
        try:
            _, key = await apikeys.create(Store(client, partitions=16), "two-processes")
        finally:
            await client.aclose()
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(timeout=30) as http:
            answers = await asyncio.gather(
                *(http.post(f"{bases[i % 2]}/v1/verifications", json={"to": TO}, headers=headers) for i in range(100))
            )
        by_process = [[a.status_code for a in answers[i::2]] for i in range(2)]
        print(f"201s per process: {[codes.count(201) for codes in by_process]}")
        assert sum(1 for a in answers if a.status_code == 201) == 10
        assert {a.json()["error"]["code"] for a in answers if a.status_code != 201} == {"number_hourly_limit"}
        assert len({a.json()["id"] for a in answers if a.status_code == 201}) == 1


async def test_two_burst_workers_send_every_queued_sms_exactly_once_on_cluster(
    cluster_url: str, tmp_path: Path
) -> None:
    numbers = [f"+1202555{n:04d}" for n in range(1000, 1030)]  # distinct last four: distinct masks
    # Real time: the worker processes run on the wall clock, and a job is due from its start.
    async with on_cluster(cluster_url, Clock(time.time()), **OPEN_FLOORS) as service:
        vids = []
        for to in numbers:
            started = await service.start(to)
            assert started.status_code == 201
            vids.append(started.json()["id"])
        # No Twilio here: the console sender, chosen on purpose (without OTP_SMS the worker refuses).
        env = otp_env(cluster_url, tmp_path, OTP_LOG_LEVEL="INFO", OTP_SMS="console")
        commands = [(["worker", "--burst"], env) for _ in range(2)]
        with processes(commands, tmp_path) as workers:
            outputs = []
            for worker in workers:
                out, _ = worker.communicate(timeout=60)
                assert worker.returncode == 0, out
                outputs.append(out)
        sent = [re.findall(r"DEVELOPMENT ONLY console SMS .*? to (\S+):", out) for out in outputs]
        print(f"SMS sent per worker: {[len(s) for s in sent]}")
        masks = [mask for worker_sent in sent for mask in worker_sent]
        assert len(masks) == len(numbers)
        assert len(set(masks)) == len(numbers)
        for vid in vids:
            attempt = (await fetch(service, vid))["send_attempts"][-1]
            assert attempt["message_sid"].startswith("SM")
            assert attempt["delivery"]["status"] == "delivered"
        assert await service.app.state.store.outbox_depth() == 0
