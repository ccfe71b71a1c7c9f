"""Replay SMS-pumping attacks against the real app on a real Redis, with an injected clock.

    .venv/bin/python bench/fraud_replay.py            # every scenario, full size (several minutes)
    .venv/bin/python bench/fraud_replay.py A B --scale 0.25

Each scenario is two simulated days: day 1 the legitimate background alone (2,000 starts a day
over 30 US/GB/DE prefixes at random times, four in five checked within a minute), day 2 the
background plus one attack. It prints, per scenario, the attacker's attempts, the SMS it got,
their estimated cost (otp's own price table), the legitimate users refused (both days) and the
rules that refused the attacker, and writes the figures to bench/results/fraud-<time>.json.
The scenarios themselves live in tests/fraud_scenarios.py (the suite runs small versions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fraud_scenarios as fs
from conftest import Clock, Service, make_settings, running_service

from otp.core import apikeys
from otp.edge.embedded_redis import EmbeddedRedis, free_port

ORDER = ("none", "rotating", "A", "A'", "D'", "B", "C", "E", "F", "burst", "two-tenant")


async def plan_attack(replay: fs.Replay, service: Service, name: str, scale: float) -> None:
    """Queues scenario ``name``'s attack on ``replay`` (none for the baseline scenarios)."""

    def n(full: int) -> int:
        return max(5, int(full * scale))

    if name == "A":
        fs.attack_a(replay, count=n(500))
    elif name == "A'":
        fs.attack_a_prime(replay, count=n(500))
    elif name == "D'":
        keys = [(await apikeys.create(service.app.state.store, f"attacker-{i}"))[1] for i in range(5)]
        fs.attack_a_prime(replay, count=n(500), new_ip_each=True, keys=keys)
    elif name in ("B", "C"):
        fs.attack_b(replay, countries=max(2, int(50 * scale)), approve=0.35 if name == "C" else 0.0)
    elif name == "E":
        fs.attack_e(replay, per_hour=max(5, int(20 * scale)))
    elif name == "F":
        fs.attack_f(replay, countries=max(2, int(10 * scale)))
    elif name == "burst":
        fs.refused_burst(replay)
    elif name == "two-tenant":
        fs.attack_a_prime(replay, count=n(500))  # tenant A (the default key) attacks


async def run_one(url: str, name: str, scale: float, seed: int) -> dict[str, Any]:
    import redis

    redis.Redis.from_url(url).flushall()
    sender = fs.LatestCodes()
    settings = make_settings(url)
    async with running_service(settings, Clock(), sender) as service:
        replay = fs.Replay(service, sender, seed=seed)
        per_day = max(10, int(2000 * scale))
        other_key = ""
        if name == "two-tenant":
            _, other_key = await apikeys.create(service.app.state.store, "tenant-b")
        replay.background(per_day=per_day, rotating=name == "rotating", key=other_key)
        await plan_attack(replay, service, name, scale)
        started = time.perf_counter()
        await replay.run()
        took = time.perf_counter() - started
    a, legit = replay.attack, replay.legit
    return {
        "scenario": name,
        "attempts": a.attempts,
        "sms_sent": a.sent,
        "cost": str(a.cost),
        "legit_attempts": legit.attempts,
        "legit_refused": len(replay.legit_refusals),
        "legit_refused_by": dict(legit.refused_by),
        "attack_refused_by": dict(a.refused_by.most_common()),
        "first_refusal_s": {rule: round(at - fs.DAY) for rule, at in a.first_refusal.items()},
        "seconds": round(took, 1),
    }


async def main(names: list[str], scale: float, seed: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="otp-fraud-replay-") as folder:
        server = EmbeddedRedis(folder, port=free_port(), appendonly=False)
        server.start()
        try:
            for name in names:
                row = await run_one(server.url, name, scale, seed)
                rows.append(row)
                print(
                    f"{name:10} attempts {row['attempts']:6}  SMS {row['sms_sent']:6}  ${row['cost']:>8}  "
                    f"legit refused {row['legit_refused']:4} / {row['legit_attempts']} {row['legit_refused_by']}  "
                    f"stopped by {row['attack_refused_by']}  ({row['seconds']} s)",
                    flush=True,
                )
        finally:
            server.stop()
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=list(ORDER), help=f"any of {', '.join(ORDER)}")
    parser.add_argument("--scale", type=float, default=1.0, help="traffic volume, 1 = the issue's figures")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--label", default="", help="a name for this run in the results file")
    args = parser.parse_args()
    unknown = [s for s in args.scenarios if s not in ORDER]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(ORDER)}")
    results = asyncio.run(main(args.scenarios, args.scale, args.seed))
    out = Path(__file__).resolve().parent / "results" / f"fraud-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"label": args.label, "scale": args.scale, "seed": args.seed, "rows": results}, indent=2))
    print(f"written {out}")
