"""Standalone Redis beside a local 3-master Redis Cluster: the same in-process flow on each.

    .venv/bin/python bench/cluster_compare.py [--verifications 400] [--batch 16]

Each round starts ``batch`` verifications concurrently (distinct numbers), lets the SMS worker
deliver them once (the recording sender of the tests, no Twilio), and checks each with its code.
Light argon2 (t=1, 1 MiB) so Redis and otp's own code dominate. Reuses the test suite's fixtures
(real servers: a redis-server, and a cluster made with redis-cli --cluster create).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cluster_fixtures import LocalCluster, start_cluster
from conftest import Clock, RecordingSender, make_settings, policy, running_service

from otp.edge.embedded_redis import EmbeddedRedis, free_port

OPEN = policy(
    prefix_hourly_floor=10**6,
    prefix_daily_floor=10**6,
    country_daily_floor=10**6,
    range_daily_floor=10**6,
    unproven_country_floor=10**6,
    unproven_tenant_floor=10**6,
    key_sends_per_minute=10**6,
    key_checks_per_minute=10**6,
)


async def flow_rate(redis_url: str, count: int, batch: int) -> float:
    settings = make_settings(redis_url, policy=OPEN)
    async with running_service(settings, Clock(), RecordingSender()) as service:
        started = time.perf_counter()
        done = 0
        while done < count:
            numbers = [f"+1415{(done + i) // 10000 + 200}{(done + i) % 10000:04d}" for i in range(batch)]
            ids = [r.json()["id"] for r in await asyncio.gather(*(service.start(n) for n in numbers))]
            await service.deliver()
            checks = [service.check(service.sender.codes_for(n)[-1], id=v) for n, v in zip(numbers, ids, strict=True)]
            assert all(r.json()["approved"] for r in await asyncio.gather(*checks))
            done += batch
        return done / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verifications", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        standalone = EmbeddedRedis(Path(folder) / "standalone", port=free_port(), appendonly=False)
        cluster = LocalCluster(Path(folder) / "cluster", [])
        (Path(folder) / "cluster").mkdir()
        try:
            standalone.start()
            start_cluster(cluster)
            single = asyncio.run(flow_rate(standalone.url, args.verifications, args.batch))
            clustered = asyncio.run(flow_rate(cluster.url, args.verifications, args.batch))
        finally:
            standalone.stop()
            cluster.stop()
    print("| Redis | verifications/s (in-process start → deliver → check, light argon2) |")
    print("|---|---:|")
    print(f"| standalone | {single:.1f} |")
    print(f"| 3-master cluster | {clustered:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
