"""SMS sends per second of one `otp worker` against the Twilio stand-in.

    .venv/bin/python bench/worker_throughput.py [--jobs 400]

Queues N verifications (worker off, distinct numbers, limits raised), then times one
`otp worker --burst` draining them through the real twilio SDK to `python -m otp.devtools.twilio_stub`.
Also prints the worker's CPU per SMS (bench/run.py's ``worker_cpu_ms_per_sms``, without the API
around it): the burst's CPU less that of a burst on an empty queue (start-up and shut-down).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import httpx

from otp.app import create_app
from otp.core import apikeys
from otp.edge.embedded_redis import EmbeddedRedis, free_port
from otp.settings import Settings
from otp.storage.client import connect
from otp.storage.store import Store

SECRET = "bench-secret-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105 — a throwaway bench secret
ACCOUNT = "AC" + "1" * 32
TOKEN = "bench-token-" + "2" * 20


async def queue_jobs(redis_url: str, jobs: int) -> None:
    open_policy = replace(
        Settings().policy,
        key_sends_per_minute=10**6,
        key_checks_per_minute=10**6,
        prefix_hourly_floor=10**6,
        prefix_daily_floor=10**6,
        country_daily_floor=10**6,
        range_daily_floor=10**6,
        unproven_country_floor=10**6,
        unproven_tenant_floor=10**6,
    )
    settings = Settings(
        redis_url=redis_url,
        secret_keys=(SECRET,),
        worker=False,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        policy=open_policy,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        client = connect(redis_url)
        _, key = await apikeys.create(Store(client, partitions=16), "bench")
        await client.aclose()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://otp") as http:
            for n in range(jobs):
                response = await http.post(
                    "/v1/verifications",
                    json={"to": f"+1415{n // 10000 + 200}{n % 10000:04d}"},
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert response.status_code == 201, response.text


def children_cpu() -> float:
    """CPU seconds (user + system) of the children waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def burst(env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `otp worker --burst`."""
    cpu, started = children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "otp", "worker", "--burst"], env=env, check=True)
    return time.perf_counter() - started, children_cpu() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=400, help="SMS jobs queued, then drained (default 400)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(tmp, port=free_port(), appendonly=False)
        redis.start()
        stub_port = free_port()
        stub = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "otp.devtools.twilio_stub",
                "--port",
                str(stub_port),
                "--account-sid",
                ACCOUNT,
                "--auth-token",
                TOKEN,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)
            env = {
                **os.environ,
                "OTP_REDIS_URL": redis.url,
                "OTP_SECRET_KEY": SECRET,
                "OTP_TWILIO_ACCOUNT_SID": ACCOUNT,
                "OTP_TWILIO_AUTH_TOKEN": TOKEN,
                # The stand-in has no sender queue: pace far above what the bench reaches.
                "OTP_TWILIO_FROM": "+15005550006:long_code:100000",
                "OTP_TWILIO_API_URL": f"http://127.0.0.1:{stub_port}",
                "OTP_PUBLIC_URL": "http://127.0.0.1:9",
                "OTP_LOG_LEVEL": "WARNING",
            }
            _, idle_cpu = burst(env)  # nothing queued: what every burst costs besides its sends
            asyncio.run(queue_jobs(redis.url, args.jobs))
            elapsed, cpu = burst(env)
        finally:
            stub.terminate()
            stub.wait(timeout=10)
            redis.stop()
    print(
        f"one worker: {args.jobs} SMS in {elapsed:.2f} s = {args.jobs / elapsed:.0f} sends/s (process start included)"
    )
    print(f"worker CPU per SMS: {(cpu - idle_cpu) * 1000 / args.jobs:.2f} ms (start-up's {idle_cpu:.2f} s taken out)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
