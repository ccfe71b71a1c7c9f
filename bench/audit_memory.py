"""Redis memory per audit event and per verification, measured through the real service.

    .venv/bin/python bench/audit_memory.py [--count 3000]

Starts a private Redis (appendonly off) and the app in-process (cheap argon2, limits raised as the
benchmark raises them), then runs ``count`` verifications to distinct numbers: start (SMS job
queued); the service's worker sends them (a sender that accepts everything) and, the clock moved
past OTP_DELIVERY_POLL_AFTER, polls their status (delivered); each is checked with its code
(approved: the record stays for OTP_RETENTION). After each phase it reads ``used_memory`` and the
audit streams' ``MEMORY USAGE`` (every node: SAMPLES 0), and prints bytes per audit entry and per
verification with the audit streams counted apart (the README's "Sizing Redis memory"). The
per-verification figure includes the rate-limit windows (per key, IP, prefix: ``sends``, ``ah``,
``ck``…) at their fullest, every start falling in one window: an upper bound.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from load import numbers
from redis_probe import key_breakdown, memory_point
from services import LIMITS_ENV

from otp.app import create_app, worker_options
from otp.clock import SYSTEM, SettableClock
from otp.core import apikeys
from otp.edge.embedded_redis import EmbeddedRedis, free_port
from otp.edge.sms import Receipt, SmsMessage
from otp.edge.worker import Worker
from otp.settings import Settings
from otp.storage import keys as keyspace

PARTITIONS = 16


class AcceptingSender:
    """Accepts every message and keeps its code, so each verification can be checked."""

    name = "accepting"

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    async def send(self, message: SmsMessage) -> Receipt:
        self.codes[message.to] = re.findall(r"(?<!\d)\d{4,10}(?!\d)", message.body)[0]
        return Receipt(message_sid=f"SM{len(self.codes):032x}", status="queued", segments=1)

    async def find_sent(self, message: SmsMessage, since: datetime) -> Receipt | None:
        return None

    async def fetch_status(self, message_sid: str) -> tuple[str, int | None, str | None]:
        return "delivered", None, None

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class Phase:
    name: str
    used: int  # used_memory minus the baseline's, audit streams included
    audit: int  # the audit streams' MEMORY USAGE minus the baseline's
    entries: int  # audit entries written so far
    kinds: dict[str, dict[str, float]]  # MEMORY USAGE by kind of key (redis_probe.key_breakdown)


async def audit_entries(client: aioredis.Redis) -> int:
    return sum([int(await client.xlen(keyspace.audit_stream(p))) for p in range(PARTITIONS)])


async def run(count: int) -> list[Phase]:
    with tempfile.TemporaryDirectory(prefix="otp-audit-memory-") as data_dir:
        server = EmbeddedRedis(data_dir, port=free_port(), appendonly=False)
        server.start()
        try:
            return await _measure(server.url, count, Path(data_dir))
        finally:
            server.stop()


async def _measure(url: str, count: int, data_dir: Path) -> list[Phase]:
    env = {
        **LIMITS_ENV,
        "OTP_REDIS_URL": url,
        "OTP_SECRET_KEY": "audit-memory-secret-0123456789abcdefghijklmnop",
        "OTP_ARGON2_TIME_COST": "1",
        "OTP_ARGON2_MEMORY_KIB": "1024",
        "OTP_DATA_DIR": str(data_dir),
        "OTP_WORKER": "off",
    }
    settings = Settings.from_env(env)
    sender = AcceptingSender()
    # A clock the script moves: the sends' status polls come due (OTP_DELIVERY_POLL_AFTER) without waiting.
    clock = SettableClock(SYSTEM.now())
    app = create_app(settings, clock=clock, sender=sender)
    probe = aioredis.Redis.from_url(url)
    phases: list[Phase] = []
    async with app.router.lifespan_context(app):
        state = app.state
        _, token = await apikeys.create(state.store, "audit-memory")
        base = await memory_point(probe, PARTITIONS)
        base_entries = await audit_entries(probe)

        async def mark(name: str) -> None:
            point = await memory_point(probe, PARTITIONS)
            entries = await audit_entries(probe) - base_entries
            kinds = await key_breakdown(probe, PARTITIONS)
            phases.append(Phase(name, point.used - base.used, point.audit - base.audit, entries, kinds))

        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        phones = list(zip(range(count), numbers("646"), strict=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://otp.bench", headers=headers) as http:
            for _, to in phones:
                answer = await http.post("/v1/verifications", json={"to": to})
                assert answer.status_code == 201, answer.text
            await mark("started (SMS queued)")
            worker = Worker(state.store, state.verifier.keyring, sender, worker_options(settings), clock=clock)
            while await worker.run_once():
                pass
            await mark("sent")
            clock.advance(settings.delivery_poll_after + 1)
            while await worker.run_once():
                pass
            await mark("delivered (polled)")
            for _, to in phones:
                answer = await http.post("/v1/verifications/check", json={"to": to, "code": sender.codes[to]})
                assert answer.json()["status"] == "approved", answer.text
            await mark("approved (kept for OTP_RETENTION)")
    await probe.aclose()
    return phases


def report(phases: list[Phase], count: int) -> str:
    lines = [f"{count:,} verifications through the service (Redis memory deltas, bytes):"]
    for phase in phases:
        per_entry = phase.audit / phase.entries if phase.entries else 0.0
        lines.append(
            f"  {phase.name:34} per verification {(phase.used - phase.audit) / count:7,.0f} "
            f"(audit apart) | audit entries {phase.entries:7,} ({phase.entries / count:.1f} each), "
            f"{per_entry:5,.0f} per entry"
        )
        top = sorted(phase.kinds.items(), key=lambda item: -item[1]["bytes"])[:8]
        lines.append(
            "    by key kind (bytes / verification): " + ", ".join(f"{k} {v['bytes'] / count:,.0f}" for k, v in top)
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=3000, help="verifications to run (default 3000)")
    args = parser.parse_args()
    started = time.perf_counter()
    phases = asyncio.run(run(args.count))
    print(report(phases, args.count))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
