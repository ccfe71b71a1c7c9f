"""Profiles of the full flow: py-spy attached to the API process and to the SMS worker while the
driver keeps N verifications in flight (minimal argon2, so otp's own code is not drowned out).

    .venv/bin/python bench/flame.py [--seconds 20] [--concurrency 8] [--out bench/profiles]

Two recordings of --seconds each, one after the other (raw stacks, then flame graphs).  The default
--out holds the committed run's files: they are overwritten.

Writes, in --out: api.svg and worker.svg (py-spy's flame graphs), api.txt and worker.txt (tables:
samples by kind of work, by part (API: the request handler; worker: the task's first otp frame), by
function and by module, with CPU ms per verification), and api.folded / worker.folded (py-spy's raw
collapsed stacks the tables come from).  The pieces are bench/run.py's (services.py, load.py,
steps.py); see bench/README.md, "Profiles".  py-spy needs ptrace: as root it works; in a container,
run it with ``--cap-add SYS_PTRACE``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx

# Run as a script, bench/ is first on sys.path: these are the sibling modules.
from load import Driver, FlowError, Sample, assert_valid_numbers, run_flows
from redis_proxy import CountingProxy, Tally
from services import HOST, BenchError, Fleet, Proc, cpu_seconds, start_api, start_worker, wait_ready
from stacks import OUTSIDE, Key, Profile, by_entry, by_handler, kind_table, part_table, split, top_table
from steps import CALLBACKS_PER_SMS, Bench, Plan, argon2_ms_per_hash, open_bench, warm_up

from otp.edge.embedded_redis import EmbeddedRedis, free_port

OUT = Path(__file__).resolve().parent / "profiles"
RATE_HZ = 200
RAMP_S = 3.0  # load runs this long before the first sample: pools filled, the worker's queue steady
PTRACE_FIX = (
    "py-spy could not attach (ptrace refused). Run as root, or give the container the capability: "
    "`docker run --cap-add SYS_PTRACE …` (compose: `cap_add: [SYS_PTRACE]`); on a host with Yama, "
    "`sysctl kernel.yama.ptrace_scope=0`."
)
# (label, module, function): the API's request handlers, each sample billed to the one on its stack.
API_HANDLERS = (
    ("start", "otp.web.v1", "start"),
    ("check", "otp.web.v1", "check"),
    ("delivery poll (GET)", "otp.web.v1", "fetch"),
    ("status callback", "otp.web.webhooks", "status_callback"),
)


class CountingDriver(Driver):
    """The bench driver, counting finished verifications as they finish, so a window of the
    steady load can be measured while the load goes on."""

    def __init__(self, http: httpx.AsyncClient, stub_url: str, account_sid: str, auth_token: str) -> None:
        super().__init__(http, "", stub_url, account_sid, auth_token)
        self.ok = self.failed = self.polls = 0
        self.errors: list[str] = []

    async def verify(self, base: str, to: str) -> Sample:
        try:
            sample = await super().verify(base, to)
        except (FlowError, httpx.HTTPError, KeyError, ValueError) as exc:
            self.failed += 1
            self.errors = [*self.errors[-4:], f"{type(exc).__name__}: {exc}"]
            raise
        self.ok += 1
        self.polls += sample.polls
        return sample


@dataclass
class Target:
    """One profiled process and the proxy that counts its Redis round trips."""

    name: str
    proc: Proc
    proxy: CountingProxy


@dataclass
class Window:
    """What happened while py-spy sampled."""

    seconds: float
    verifications: int
    failed: int
    polls: int
    cpu_s: dict[str, float]
    waited_s: dict[str, float]  # runnable, waiting for a core
    round_trips: dict[str, Tally]

    def per_verification_ms(self, name: str) -> float | None:
        return self.cpu_s[name] * 1000 / self.verifications if self.verifications else None


def sched_seconds(pid: int) -> tuple[float, float]:
    """(on a core, runnable but waiting for one) in seconds, summed over the process's threads,
    from /proc/<pid>/task/*/schedstat: py-spy samples a thread in both states alike."""
    ran = waited = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            fields = stat.read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
        ran, waited = ran + int(fields[0]), waited + int(fields[1])
    return ran / 1e9, waited / 1e9


# -- py-spy ----------------------------------------------------------------------------------------


def py_spy() -> str:
    """The py-spy next to this Python (the test extras install it), else one on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise BenchError("py-spy is not installed: scripts/bootstrap test (it is in the test extras)")
    return found


def ptrace_hint(said: str) -> str:
    """The fix, when py-spy's words say the kernel refused (``Permission Denied``, EPERM)."""
    lowered = said.lower()
    return PTRACE_FIX if any(w in lowered for w in ("permission", "ptrace", "not permitted")) else ""


def check_ptrace(pid: int) -> None:
    argv = [py_spy(), "dump", "--pid", str(pid)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip()[-600:]
        raise BenchError(f"py-spy could not read pid {pid}: {said}\n{ptrace_hint(said)}")


async def record(pid: int, seconds: float, fmt: str, output: Path) -> None:
    """py-spy record: every thread, idle ones left out, ``--subprocesses`` in case a process forks."""
    argv = [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--duration", str(round(seconds))]
    # --nonblocking: pausing the process (py-spy's default) makes it see parked thread-pool threads
    # as running (a third of the API's samples here); reading its memory on the fly does not.
    argv += ["--format", fmt, "--output", str(output), "--nolineno", "--subprocesses", "--nonblocking"]
    if fmt == "raw":
        argv.append("--full-filenames")  # modules are told apart by path (site-packages, stdlib, otp)
    spy = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    said, _ = await asyncio.wait_for(spy.communicate(), seconds + 60)
    if spy.returncode != 0:
        text = said.decode(errors="replace").strip()[-600:]
        raise BenchError(f"py-spy record on pid {pid} failed ({spy.returncode}): {text}\n{ptrace_hint(text)}")


async def window(
    driver: CountingDriver, targets: list[Target], redis_pid: int, seconds: float, fmt: str, out: Path
) -> Window:
    """Both processes sampled at once for ``seconds``, with the verifications, CPU and round trips
    of the same span."""
    for t in targets:
        t.proxy.reset()
    pids = {t.name: t.proc.pid for t in targets} | {"redis": redis_pid}
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    waited = {t.name: sched_seconds(t.proc.pid)[1] for t in targets}
    ok, failed, polls, began = driver.ok, driver.failed, driver.polls, time.monotonic()
    suffix = "svg" if fmt == "flamegraph" else "folded"
    await asyncio.gather(*(record(t.proc.pid, seconds, fmt, out / f"{t.name}.{suffix}") for t in targets))
    return Window(
        seconds=time.monotonic() - began,
        verifications=driver.ok - ok,
        failed=driver.failed - failed,
        polls=driver.polls - polls,
        cpu_s={name: cpu_seconds(pid) - cpu[name] for name, pid in pids.items()},
        waited_s={t.name: sched_seconds(t.proc.pid)[1] - waited[t.name] for t in targets},
        round_trips={t.name: t.proxy.reset() for t in targets},
    )


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    concurrency: int
    out: Path
    top: int


async def profile_main(run: Run, fleet: Fleet, redis_server: EmbeddedRedis) -> tuple[Window, float]:
    proxies = {name: CountingProxy(redis_server.port or 0) for name in ("api", "worker")}
    try:
        async with open_bench(Plan.make(True), fleet, redis_server, "minimal", driver=CountingDriver) as bench:
            driver, http = bench.driver, bench.http
            assert isinstance(driver, CountingDriver)
            config = bench.config("minimal")
            for proxy in proxies.values():
                await proxy.start()
            port = free_port()
            url = f"http://{HOST}:{port}"
            api = await start_api(fleet, config, port, "otp-serve", f"redis://{HOST}:{proxies['api'].port}/0")
            worker_config = dataclasses.replace(config, redis_url=f"redis://{HOST}:{proxies['worker'].port}/0")
            worker = start_worker(fleet, worker_config, port)
            await wait_ready(http, url, api)
            await warm_up(bench, [url])
            targets = [Target("api", api, proxies["api"]), Target("worker", worker, proxies["worker"])]
            for t in targets:
                check_ptrace(t.proc.pid)
            argon2_ms = argon2_ms_per_hash("minimal")
            return await steady_load(run, bench, driver, url, targets), argon2_ms
    finally:
        for proxy in proxies.values():
            await proxy.stop()


async def steady_load(run: Run, bench: Bench, driver: CountingDriver, url: str, targets: list[Target]) -> Window:
    """The load runs until both recordings are done: raw stacks first (the tables), then the
    flame graphs, each ``run.seconds`` long."""
    run.out.mkdir(parents=True, exist_ok=True)
    bound = RAMP_S + 2 * (run.seconds + 60)
    load = asyncio.create_task(
        run_flows(driver, [url], bench.phones, count=10**9, concurrency=run.concurrency, timeout_s=bound)
    )
    try:
        await asyncio.sleep(RAMP_S)
        print(f"recording {run.seconds:.0f} s of raw stacks (py-spy, {RATE_HZ} Hz) …", flush=True)
        measured = await window(driver, targets, bench.redis_pid(), run.seconds, "raw", run.out)
        print(f"  {measured.verifications} verifications, {measured.failed} failed", flush=True)
        print(f"recording {run.seconds:.0f} s of flame graphs …", flush=True)
        await window(driver, targets, bench.redis_pid(), run.seconds, "flamegraph", run.out)
    finally:
        load.cancel()
        try:
            await load
        except asyncio.CancelledError:
            pass
    for t in targets:
        if not t.proc.alive():
            raise BenchError(f"{t.proc.name} exited during the run:\n{t.proc.tail()}")
    if not measured.verifications:
        raise BenchError(f"no verification finished while profiling: {driver.errors}")
    return measured


# -- the tables ----------------------------------------------------------------------------------


def report(name: str, measured: Window, run: Run, argon2_ms: float, started: str) -> str:
    profile = Profile.parse((run.out / f"{name}.folded").read_text())
    cpu_ms = measured.per_verification_ms(name)
    tally = measured.round_trips[name]
    n = max(measured.verifications, 1)
    trips = tally.round_trips / n
    polls = measured.polls / n
    if name == "api":
        parts = split(profile, by_handler(API_HANDLERS))
        per = {"start": 1.0, "check": 1.0, "delivery poll (GET)": polls, "status callback": float(CALLBACKS_PER_SMS)}
        per[OUTSIDE] = 2 + polls + CALLBACKS_PER_SMS  # what every request pays, whichever it is
    else:
        parts, per = split(profile, by_entry), {}
    own_kinds = profile.kinds()[0]
    redis_own = own_kinds["redis-py"] + profile.socket_callers()["redis-py"]  # with the writes it makes
    redis_share = redis_own / profile.samples if profile.samples else 0.0
    per_trip_us = cpu_ms * redis_share / trips * 1000 if cpu_ms is not None and trips else None
    lines = [
        f"# {name}: py-spy profile of the full flow ({started})",
        "",
        f"`{' '.join(['bench/flame.py', '--seconds', str(run.seconds), '--concurrency', str(run.concurrency)])}`: "
        f"minimal argon2 (t=1, 8 MiB; one hash {argon2_ms:.2f} ms on one core here), one API process, one SMS "
        f"worker, {run.concurrency} verifications in flight; py-spy at {RATE_HZ} Hz, idle threads left out, "
        "every thread of the process.",
        "",
        f"- window: {measured.seconds:.1f} s, {measured.verifications} verifications finished "
        f"({measured.verifications / measured.seconds:.1f}/s), {measured.failed} failed, "
        f"{polls:.1f} delivery polls each",
        f"- samples: {profile.samples} ({profile.samples / measured.seconds:.0f}/s of {RATE_HZ} Hz per busy thread)",
        f"- CPU of this process: {measured.cpu_s[name]:.2f} s = {fmt_ms(cpu_ms)} ms per verification "
        f"(Redis server: {fmt_ms(measured.per_verification_ms('redis'))} ms, both processes' commands)",
        f"- sampled thread time {profile.samples / RATE_HZ:.2f} s; the threads were on a core "
        f"{measured.cpu_s[name]:.2f} s and runnable but waiting for one {measured.waited_s[name]:.2f} s "
        "(schedstat): a sample cannot tell the two apart",
        f"- Redis round trips of this process: {trips:.2f} per verification "
        f"({', '.join(f'{c} {k / n:.2f}' for c, k in tally.commands.most_common(8))} commands each)",
        f"- redis-py own CPU per round trip, its socket writes included: {fmt_ms(per_trip_us)} µs",
        "",
        "Own CPU ms = the process's CPU per verification × the share of its samples; samples count "
        "runnable time too, so on a busy machine they are a share, not a clock.",
        "",
        "## By kind of work",
        "",
        *kind_table(profile, cpu_ms, "verif"),
        "",
        "## By part"
        + (" (the handler on the stack)" if name == "api" else " (the task's or thread's first otp frame)"),
        "",
        *part_table(profile, parts, cpu_ms, per),
        "",
        f"## Top {run.top} functions by own samples",
        "",
        *top_table(profile, Key(), run.top),
        "",
        f"## Top {run.top} functions by total samples",
        "",
        *top_table(profile, Key(), run.top, by_total=True),
        "",
        f"## Top {run.top} modules by own samples",
        "",
        *top_table(profile, Key(by_module=True), run.top),
        "",
    ]
    return "\n".join(lines)


def fmt_ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


# -- entry point ---------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so SIGTERM also runs the clean-up in main()'s finally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each recording (default 20)")
    parser.add_argument("--concurrency", type=int, default=8, help="verifications in flight (default 8)")
    parser.add_argument(
        "--out", type=Path, default=OUT, help=f"where the files go (default {OUT}, over the committed ones)"
    )
    parser.add_argument("--top", type=int, default=30, help="rows of the function and module tables (default 30)")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.concurrency < 1:
        parser.error("--seconds and --concurrency must be at least 1")
    run = Run(args.seconds, args.concurrency, args.out.resolve(), args.top)
    assert_valid_numbers(["415"])
    signal.signal(signal.SIGTERM, _interrupt)
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.TemporaryDirectory(prefix="otp-profile-") as tmp:
        fleet = Fleet(Path(tmp))
        redis_server = EmbeddedRedis(Path(tmp) / "redis", port=free_port(), appendonly=False)
        try:
            measured, argon2_ms = asyncio.run(profile_main(run, fleet, redis_server))
        except BenchError as exc:
            print(f"profile: stopped: {exc}", file=sys.stderr)
            return 1
        finally:
            fleet.stop_all()
            redis_server.stop()
    for name in ("api", "worker"):
        text = report(name, measured, run, argon2_ms, started)
        (run.out / f"{name}.txt").write_text(text)
        print(f"\n{text}")
    print(f"files: {', '.join(sorted(p.name for p in run.out.iterdir()))} in {run.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
