"""The measurements: each step takes the running pieces (`Bench`, `Pass`) and returns a JSON-able
dict.  The order they run in, and the summary, are in run.py."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio as aioredis
from argon2 import PasswordHasher, Type
from load import Driver, FlowError, gather_bounded, numbers, percentile, run_flows
from redis_probe import Template, drain, drop_outbox, key_breakdown, memory_point, one_verification, replay
from redis_proxy import CountingProxy
from services import (
    ARGON2,
    HOST,
    BenchError,
    Fleet,
    OtpConfig,
    Proc,
    cpu_seconds,
    create_api_key,
    start_api,
    start_plain,
    start_stub,
    start_worker,
    system_busy_seconds,
    wait_ready,
)

from otp.edge.embedded_redis import EmbeddedRedis, free_port

PARTITIONS = 16  # OTP_PARTITIONS is left at its default
# Status callbacks the stand-in posts per delivered SMS (queued, sent, delivered): requests otp serves.
CALLBACKS_PER_SMS = 3


@dataclass(frozen=True)
class Plan:
    """How much of everything one run does."""

    quick: bool
    levels: tuple[tuple[int, int], ...]  # (concurrency, verifications)
    memory_pending: int
    scale_small: int
    scale_large: int
    scale_count: int
    round_trip_requests: int
    argon2_seconds: float
    deadline_s: float  # the whole benchmark: a safety net over the per-step bounds

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(True, ((1, 20), (8, 80), (32, 160)), 10_000, 1_000, 50_000, 80, 30, 3.0, 300.0)
        return cls(False, ((1, 100), (8, 400), (32, 1000)), 100_000, 1_000, 1_000_000, 400, 200, 3.0, 1800.0)


# -- the argon2 bound ----------------------------------------------------------------------------


def hash_for(seconds: float, params: str = "shipped") -> int:
    """Hashes with otp's argon2id settings for ``seconds`` (and at most 100,000): how many."""
    time_cost, memory_kib = ARGON2[params]
    hasher = PasswordHasher(time_cost, memory_kib, parallelism=1, hash_len=16, salt_len=16, type=Type.ID)
    deadline, done = time.monotonic() + seconds, 0
    while time.monotonic() < deadline and done < 100_000:
        hasher.hash(b"code-pepper-0123456789abcdef123456")
        done += 1
    return done


def argon2_bound(seconds: float) -> dict[str, Any]:
    """Shipped-parameter hashes per second on all cores, halved: a verification costs one hash at
    start and one verify at check (a verify costs what a hash does)."""
    cores = os.cpu_count() or 1
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool.map(hash_for, [0.05] * cores)  # start the processes before the clock runs
        busy, children = system_busy_seconds(), _children_cpu()
        began = time.perf_counter()
        counts = pool.map(hash_for, [seconds] * cores, chunksize=1)
        wall = time.perf_counter() - began
        busy = system_busy_seconds() - busy
        pool.close()
        pool.join()  # reaped: their CPU now shows in RUSAGE_CHILDREN
    ours = _children_cpu() - children
    per_s = sum(counts) / wall
    return {
        "processes": cores,
        "hashes": sum(counts),
        "seconds": wall,
        "hashes_per_s": per_s,
        "bound": per_s / 2,
        # What other processes took from the cores meanwhile (the pool's start-up is counted as ours).
        "other_cpu_share": max(0.0, busy - ours) / (wall * cores),
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def argon2_ms_per_hash(params: str, seconds: float = 0.5) -> float:
    """One core's cost of one hash (a verify costs the same), to take argon2 out of own CPU."""
    began = time.process_time()
    done = hash_for(seconds, params)
    return (time.process_time() - began) * 1000 / max(done, 1)


# -- the running pieces --------------------------------------------------------------------------


@dataclass
class Bench:
    plan: Plan
    fleet: Fleet
    redis: EmbeddedRedis
    redis_client: aioredis.Redis
    stub: Proc
    stub_url: str
    account_sid: str
    auth_token: str
    secret_key: str
    http: httpx.AsyncClient
    driver: Driver
    api_key: str = ""
    phones: Iterator[str] = field(default_factory=lambda: numbers("415"))

    def config(self, argon2: str) -> OtpConfig:
        return OtpConfig(self.redis.url, self.secret_key, self.stub_url, self.account_sid, self.auth_token, argon2)

    @property
    def redis_port(self) -> int:
        assert self.redis.port
        return self.redis.port

    def redis_pid(self) -> int:
        assert self.redis.process is not None
        return self.redis.process.pid

    def new_api_key(self, config: OtpConfig) -> str:
        """A new API key made the CLI's way, used by the driver from now on."""
        self.api_key = create_api_key(self.fleet, config)
        self.driver.use_key(self.api_key)
        return self.api_key


def plain_driver(http: httpx.AsyncClient, stub_url: str, account_sid: str, auth_token: str) -> Driver:
    return Driver(http, "", stub_url, account_sid, auth_token)


@contextlib.asynccontextmanager
async def open_bench(
    plan: Plan,
    fleet: Fleet,
    redis_server: EmbeddedRedis,
    api_argon2: str,
    driver: Callable[[httpx.AsyncClient, str, str, str], Driver] = plain_driver,
) -> AsyncIterator[Bench]:
    """Redis, the Twilio stand-in, the driver (``driver`` makes it) and an API key (made with
    ``api_argon2``'s config): what every benchmark script starts from."""
    redis_server.start()
    account_sid, auth_token = "AC" + secrets.token_hex(16), secrets.token_urlsafe(24)
    stub_port = free_port()
    stub = await start_stub(fleet, stub_port, account_sid, auth_token)
    stub_url = f"http://{HOST}:{stub_port}"
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout would close them under us.
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=2.0)
    client = aioredis.Redis.from_url(redis_server.url)
    async with httpx.AsyncClient(limits=limits, timeout=30.0, trust_env=False) as http:
        made = driver(http, stub_url, account_sid, auth_token)
        secret = secrets.token_urlsafe(48)  # OTP_SECRET_KEY
        bench = Bench(plan, fleet, redis_server, client, stub, stub_url, account_sid, auth_token, secret, http, made)
        try:
            bench.new_api_key(bench.config(api_argon2))
            yield bench
        finally:
            await client.aclose()


@dataclass
class Pass:
    """The otp processes of one argon2 setting: two API processes and one SMS worker, plus (for
    the Redis steps) a third API process that talks to Redis through the counting proxy."""

    argon2: str
    config: OtpConfig
    apis: list[Proc]
    urls: list[str]
    worker: Proc
    argon2_ms: float = 0.0  # one hash with this pass's parameters, measured on one core
    counted: Proc | None = None
    counted_url: str = ""
    proxy: CountingProxy | None = None


async def start_pass(bench: Bench, argon2: str) -> Pass:
    config = bench.config(argon2)
    ports = [free_port(), free_port()]
    apis = [await start_api(bench.fleet, config, port, f"otp-serve-{argon2}-{i + 1}") for i, port in enumerate(ports)]
    urls = [f"http://{HOST}:{port}" for port in ports]
    # Twilio's status callbacks go to the first API process (one OTP_PUBLIC_URL, no balancer).
    worker = start_worker(bench.fleet, config, ports[0])
    for url, proc in zip(urls, apis, strict=True):
        await wait_ready(bench.http, url, proc)
    run = Pass(argon2, config, apis, urls, worker, argon2_ms=argon2_ms_per_hash(argon2))
    await warm_up(bench, urls)
    return run


async def warm_up(bench: Bench, urls: list[str], count: int = 8) -> None:
    """A few unmeasured verifications: connection pools, Lua script loading, first imports, and
    proof that the worker sends."""
    warm = await run_flows(bench.driver, urls, bench.phones, count=count, concurrency=4, timeout_s=60)
    if warm.errors:
        raise BenchError(f"warm-up failed: {warm.errors[:3]}")


async def restart_worker(bench: Bench, run: Pass) -> None:
    run.worker = start_worker(bench.fleet, run.config, int(run.urls[0].rsplit(":", 1)[1]))
    await warm_up(bench, run.urls[:1], count=2)


async def start_counted(bench: Bench, run: Pass) -> None:
    run.proxy = CountingProxy(bench.redis_port)
    await run.proxy.start()
    port = free_port()
    redis_url = f"redis://{HOST}:{run.proxy.port}/0"
    run.counted = await start_api(bench.fleet, run.config, port, f"otp-serve-{run.argon2}-counted", redis_url)
    run.counted_url = f"http://{HOST}:{port}"
    await wait_ready(bench.http, run.counted_url, run.counted)
    await warm_up(bench, [run.counted_url], count=4)


async def stop_pass(bench: Bench, run: Pass) -> None:
    for proc in (run.worker, run.counted, *run.apis):
        if proc is not None:
            bench.fleet.stop(proc)
    if run.proxy is not None:
        await run.proxy.stop()


def check_alive(procs: list[Proc]) -> None:
    for proc in procs:
        if not proc.alive():
            code = proc.popen.returncode
            why = " (a SIGTERM the benchmark did not send: another process on this machine)" if code == -15 else ""
            raise BenchError(f"{proc.name} (pid {proc.pid}) exited with {code}{why}:\n{proc.tail()}")


# -- full-flow throughput ------------------------------------------------------------------------


def cpu_snapshot(bench: Bench, own: list[Proc], api: list[Proc]) -> dict[str, float]:
    ours = sum(p.cpu() for p in bench.fleet.procs) + cpu_seconds(bench.redis_pid()) + cpu_seconds(os.getpid())
    return {
        "otp": sum(p.cpu() for p in own),
        "otp_api": sum(p.cpu() for p in api),
        "redis": cpu_seconds(bench.redis_pid()),
        "stub": bench.stub.cpu(),
        "driver": cpu_seconds(os.getpid()),
        # Everything else on the machine (other users' work): it competed for the same cores.
        "other": system_busy_seconds() - ours,
    }


async def measure(bench: Bench, run: Pass, *, api_processes: int, concurrency: int, count: int) -> dict[str, Any]:
    """One fixed-size batch of full verifications: rate, latency, CPU per verification."""
    api = run.apis[:api_processes]
    own = [*api, run.worker]
    before = cpu_snapshot(bench, own, api)
    result = await run_flows(
        bench.driver, run.urls[:api_processes], bench.phones, count=count, concurrency=concurrency,
        timeout_s=60 + count * 0.5,
    )  # fmt: skip
    after = cpu_snapshot(bench, own, api)
    check_alive(own)
    ok = len(result.samples)
    starts, checks = [s.start_ms for s in result.samples], [s.check_ms for s in result.samples]
    cpu_ms = {k: (after[k] - before[k]) * 1000 / max(ok, 1) for k in before}
    cpu_ms["otp_worker"] = cpu_ms["otp"] - cpu_ms["otp_api"]
    # Two argon2 operations per verification: a hash at start, a verify at check.
    cpu_ms["otp_excl_argon2"] = cpu_ms["otp"] - 2 * run.argon2_ms
    polls = sum(s.polls for s in result.samples) / max(ok, 1)
    api_requests = 2 + polls + CALLBACKS_PER_SMS
    cores = os.cpu_count() or 1
    return {
        "argon2": run.argon2,
        "api_processes": api_processes,
        "concurrency": concurrency,
        "count": count,
        "ok": ok,
        "errors": len(result.errors),
        "error_samples": result.errors[:3],
        "wall_s": result.wall_s,
        "verifications_per_s": ok / result.wall_s if result.wall_s else 0.0,
        "start_p50_ms": percentile(starts, 50),
        "start_p99_ms": percentile(starts, 99),
        "check_p50_ms": percentile(checks, 50),
        "check_p99_ms": percentile(checks, 99),
        "polls_per_verification": polls,
        "api_requests_per_verification": api_requests,
        "api_cpu_ms_per_request": cpu_ms["otp_api"] / api_requests,
        "argon2_ms_per_hash": run.argon2_ms,
        "cpu_ms_per_verification": cpu_ms,
        "other_cpu_share": max(0.0, after["other"] - before["other"]) / (result.wall_s * cores)
        if result.wall_s
        else None,
    }


def short_row(row: dict[str, Any]) -> str:
    cpu = row["cpu_ms_per_verification"]
    return (
        f"argon2={row['argon2']} api={row['api_processes']} c={row['concurrency']}: "
        f"{row['ok']}/{row['count']} ok, {row['verifications_per_s']:.1f}/s, "
        f"CPU ms/verification: otp {cpu['otp']:.1f} (API {cpu['otp_api']:.1f}, worker {cpu['otp_worker']:.1f}), "
        f"redis {cpu['redis']:.1f}, stand-in {cpu['stub']:.1f}, driver {cpu['driver']:.1f}; "
        f"{row['polls_per_verification']:.1f} polls; other load {row['other_cpu_share'] or 0:.0%} of the cores"
        + (f", errors: {row['error_samples']}" if row["errors"] else "")
    )


async def throughput_matrix(bench: Bench, run: Pass) -> list[dict[str, Any]]:
    rows = []
    for api_processes in (1, 2):
        for concurrency, count in bench.plan.levels:
            row = await measure(bench, run, api_processes=api_processes, concurrency=concurrency, count=count)
            rows.append(row)
            print(f"  {short_row(row)}", flush=True)
    return rows


# -- Redis round trips ---------------------------------------------------------------------------


async def redis_round_trips(bench: Bench, run: Pass) -> dict[str, Any]:
    """Round trips per start and per check, counted by the proxy in front of the counted API
    process (the worker and the other API processes talk to Redis directly, unseen)."""
    assert run.proxy is not None
    n, base, driver = bench.plan.round_trip_requests, run.counted_url, bench.driver
    prepared = await gather_bounded([driver.prepare(base, next(bench.phones)) for _ in range(n)], 8, 60 + n)
    batches: dict[str, Callable[[], list[Awaitable[Any]]]] = {
        "start": lambda: [driver.start(base, next(bench.phones)) for _ in range(n)],
        "check": lambda: [driver.check(base, vid, code) for vid, code, _ in prepared],
    }
    result: dict[str, Any] = {"requests_per_batch": n}
    for name, jobs in batches.items():
        run.proxy.reset()
        await gather_bounded(jobs(), 8, 60 + n)
        tally = run.proxy.reset()
        result[name] = {
            "round_trips": tally.round_trips / n,
            "setup_round_trips": tally.noise_round_trips / n,
            "commands": {command: calls / n for command, calls in sorted(tally.commands.items())},
        }
    return result


# -- Redis memory and keyspace size --------------------------------------------------------------


async def capture_template(bench: Bench, run: Pass) -> Template:
    """One real start through the counted API process, kept as the template for replay."""
    assert run.proxy is not None
    to = next(bench.phones)
    run.proxy.captured = []
    try:
        vid, _ = await bench.driver.start(run.counted_url, to)
    finally:
        captured, run.proxy.captured = run.proxy.captured, None
    return Template.from_capture(captured, to, vid, PARTITIONS)


async def fresh_redis(bench: Bench, run: Pass) -> Template:
    """FLUSHALL (the SMS worker stopped: replayed jobs must not be sent), a new API key, a template."""
    if run.worker.alive():
        bench.fleet.stop(run.worker)
    await bench.redis_client.flushall()
    bench.new_api_key(run.config)
    return await capture_template(bench, run)


async def redis_memory(bench: Bench, run: Pass) -> dict[str, Any]:
    """used_memory per pending verification, audit streams measured apart: right after start (SMS
    job queued) and after the service's own worker delivered them (job gone, send filled in)."""
    count, client = bench.plan.memory_pending, bench.redis_client
    template = await fresh_redis(bench, run)
    base = await memory_point(client, PARTITIONS)
    fill_s = await replay(bench.redis_port, template, numbers("646"), count)
    queued = await memory_point(client, PARTITIONS)
    queued_kinds = await key_breakdown(client, PARTITIONS)
    queued_sample = await one_verification(client, PARTITIONS)
    drain_s = await drain(client, run.config.env(port=0, public_url=run.urls[0]), PARTITIONS, 60 + count / 200)
    delivered = await memory_point(client, PARTITIONS)
    delivered_kinds = await key_breakdown(client, PARTITIONS)
    delivered_sample = await one_verification(client, PARTITIONS)

    def by_kind(kinds: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        return {k: {"keys": v["keys"] / count, "bytes": v["bytes"] / count} for k, v in kinds.items()}

    def per(point: Any) -> dict[str, float]:
        audit = point.audit - base.audit
        return {"bytes": (point.used - base.used - audit) / count, "audit_bytes": audit / count}

    return {
        "pending": count,
        "fill_s": fill_s,
        "drain_s": drain_s,
        "queued": {**per(queued), "by_key_kind": by_kind(queued_kinds), "sample": queued_sample},
        "delivered": {**per(delivered), "by_key_kind": by_kind(delivered_kinds), "sample": delivered_sample},
    }


async def keyspace_scaling(bench: Bench, run: Pass) -> dict[str, Any]:
    """Full-flow rate at concurrency 8 with few vs many distinct numbers pending in Redis."""
    plan, filler = bench.plan, numbers("212")
    template = await fresh_redis(bench, run)
    rows, fill_s = [], 0.0
    for size, already in ((plan.scale_small, 1), (plan.scale_large, plan.scale_small)):
        if run.worker.alive():
            bench.fleet.stop(run.worker)
        fill_s += await replay(bench.redis_port, template, filler, size - already)
        await drop_outbox(bench.redis_client, PARTITIONS)  # the filler numbers are never sent
        await restart_worker(bench, run)
        row = await measure(bench, run, api_processes=1, concurrency=8, count=plan.scale_count)
        row["label"] = f"{size:,} numbers"
        rows.append(row)
        print(f"  {size:,} numbers: {short_row(row)}", flush=True)
    small, large = rows[0]["verifications_per_s"], rows[1]["verifications_per_s"]
    return {
        "argon2": run.argon2,
        "small_numbers": plan.scale_small,
        "large_numbers": plan.scale_large,
        "small_per_s": small,
        "large_per_s": large,
        "ratio_large_to_small": large / small if small else None,
        "fill_s": fill_s,
        "runs": rows,
    }


# -- plain Starlette -----------------------------------------------------------------------------


async def plain_starlette(bench: Bench, requests: int, concurrency: int) -> dict[str, Any]:
    """CPU per request of a one-route Starlette app under the same uvicorn, from the same client."""
    port = free_port()
    proc = await start_plain(bench.fleet, port)
    url = f"http://{HOST}:{port}/echo"
    headers = {"Authorization": f"Bearer {bench.api_key}"}  # same header weight as an otp call

    async def post(i: int) -> int:
        answer = await bench.http.post(url, json={"to": f"+1415{2_000_000 + i:07d}"}, headers=headers)
        return answer.status_code

    try:
        await gather_bounded([post(i) for i in range(50)], concurrency, 60)
        cpu_before, began = proc.cpu(), time.perf_counter()
        statuses = await gather_bounded([post(i) for i in range(requests)], concurrency, 60 + requests * 0.1)
        wall, cpu = time.perf_counter() - began, proc.cpu() - cpu_before
    finally:
        bench.fleet.stop(proc)
    if any(s != 201 for s in statuses):
        raise FlowError("the plain Starlette app answered something other than 201")
    return {
        "requests": requests,
        "concurrency": concurrency,
        "requests_per_s": requests / wall,
        "cpu_ms_per_request": cpu * 1000 / requests,
    }
