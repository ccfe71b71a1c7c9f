"""The processes a benchmark run starts, and their CPU clocks.

Every child gets its own session (process group), so stopping it also stops anything it spawned;
`Fleet.stop_all` is called from a ``finally`` and stops whatever is still running, newest first.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PYTHON = sys.executable  # run.py is run with .venv/bin/python: the children use the same venv
HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
TWILIO_FROM = "+15005550006"
# The stand-in has no sender queue: pace far above what the bench reaches.
TWILIO_SENDERS = f"{TWILIO_FROM}:long_code:100000"
# Argon2 (time cost, memory KiB) per pass; "shipped" leaves the defaults untouched in the env.
ARGON2 = {"shipped": (2, 19456), "minimal": (1, 8192)}
ARGON2_ENV = {
    "shipped": {},
    "minimal": {"OTP_ARGON2_TIME_COST": "1", "OTP_ARGON2_MEMORY_KIB": "8192"},
}
# Every verification here comes from one API key, thousands share a number prefix, and fillers are
# never checked: the default limits (1,000 sends per key per minute, SMS-pumping floors of a few
# unverified sends per prefix) would refuse most of it.  They are raised, not switched off, so
# the same scripts run with the same round trips; they just never refuse.
LIMITS_ENV = {
    "OTP_KEY_SENDS_PER_MINUTE": "10000000",
    "OTP_KEY_CHECKS_PER_MINUTE": "10000000",
    "OTP_PUMPING_PREFIX_DAILY_FLOOR": "10000000",
    "OTP_PUMPING_PREFIX_HOURLY_FLOOR": "10000000",
    "OTP_PUMPING_COUNTRY_DAILY_FLOOR": "10000000",
    "OTP_PUMPING_RANGE_DAILY_FLOOR": "10000000",
    "OTP_PUMPING_IP_DAILY_FLOOR": "10000000",
    "OTP_PUMPING_UNPROVEN_COUNTRY_FLOOR": "10000000",
    "OTP_PUMPING_UNPROVEN_TENANT_FLOOR": "10000000",
}


class BenchError(RuntimeError):
    """Something the benchmark needs did not work; the run stops and cleans up."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads included, from /proc/<pid>/stat.

    Fields are counted after the closing parenthesis of the command name, which may hold spaces:
    utime and stime are fields 14 and 15 of the file, i.e. 12th and 13th after it.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    rest = raw[raw.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def system_busy_seconds() -> float:
    """CPU time all processes on the machine have used (every core), from /proc/stat: with our
    own processes' share taken out, what else on the box competed during a measurement."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def clean_env(**extra: str) -> dict[str, str]:
    """The parent's environment without OTP_* (so nothing leaks in from the shell) and without
    proxies (everything here is loopback; requests and httpx would otherwise honour them)."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTP_") and k.lower() not in proxies}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the whole group (graceful: uvicorn and the worker shut down cleanly), then
        SIGKILL if it hangs."""
        if not self.alive():
            return
        self._signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.popen.wait(timeout=timeout)

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.pid, sig)  # start_new_session=True made the pid the group id
        except ProcessLookupError:
            pass


@dataclass
class Fleet:
    """All children of one benchmark run."""

    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                argv,
                env=env,
                cwd=self.workdir,  # keeps any development fallback (.otp/) out of the repository
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception as exc:  # keep stopping the others
                print(f"bench: could not stop {proc.name} (pid {proc.pid}): {exc}", file=sys.stderr)


async def wait_for_port(port: int, proc: Proc, limit_s: float = 20.0) -> None:
    """Until something listens on the port.  Async, because the counting Redis proxy lives on this
    event loop: blocking here would stall an API process that talks to Redis through it."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited at start:\n{proc.tail()}")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout=0.5)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise BenchError(f"{proc.name} did not listen on {HOST}:{port} within {limit_s:.0f} s")


async def wait_ready(http: httpx.AsyncClient, url: str, proc: Proc, limit_s: float = 30.0) -> None:
    """GET /readyz until 200: every Redis primary reachable, with a configuration otp accepts."""
    deadline = time.monotonic() + limit_s
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited at start:\n{proc.tail()}")
        try:
            answer = await http.get(f"{url}/readyz", timeout=1.0)
            if answer.status_code == 200:
                return
            last = answer.text
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        await asyncio.sleep(0.1)
    raise BenchError(f"{proc.name} at {url} not ready within {limit_s:.0f} s: {last}\n{proc.tail()}")


@dataclass(frozen=True)
class OtpConfig:
    """What every otp process of one pass shares."""

    redis_url: str
    secret_key: str
    stub_url: str
    account_sid: str
    auth_token: str
    argon2: str  # "shipped" | "minimal"

    def env(self, *, port: int, public_url: str, redis_url: str = "") -> dict[str, str]:
        return clean_env(
            OTP_REDIS_URL=redis_url or self.redis_url,
            OTP_SECRET_KEY=self.secret_key,
            OTP_HOST=HOST,
            OTP_PORT=str(port),
            OTP_WORKER="off",  # the SMS worker runs as its own process, so its CPU is counted apart
            OTP_TWILIO_ACCOUNT_SID=self.account_sid,
            OTP_TWILIO_AUTH_TOKEN=self.auth_token,
            OTP_TWILIO_FROM=TWILIO_SENDERS,
            OTP_TWILIO_API_URL=self.stub_url,
            OTP_PUBLIC_URL=public_url,
            OTP_LOG_LEVEL="WARNING",
            OTP_DATA_DIR="otp-data",
            **ARGON2_ENV[self.argon2],
            **LIMITS_ENV,
        )


async def start_stub(fleet: Fleet, port: int, account_sid: str, auth_token: str) -> Proc:
    argv = [PYTHON, "-m", "otp.devtools.twilio_stub", "--host", HOST, "--port", str(port)]
    proc = fleet.spawn("twilio-stub", [*argv, "--account-sid", account_sid, "--auth-token", auth_token], clean_env())
    await wait_for_port(port, proc)
    return proc


async def start_api(fleet: Fleet, config: OtpConfig, port: int, name: str, redis_url: str = "") -> Proc:
    url = f"http://{HOST}:{port}"
    env = config.env(port=port, public_url=url, redis_url=redis_url)
    proc = fleet.spawn(name, [PYTHON, "-m", "otp", "serve"], env)
    await wait_for_port(port, proc)
    return proc


def start_worker(fleet: Fleet, config: OtpConfig, callback_port: int) -> Proc:
    """One SMS worker; Twilio's status callbacks go to the API process on ``callback_port``."""
    env = config.env(port=callback_port, public_url=f"http://{HOST}:{callback_port}")
    return fleet.spawn("otp-worker", [PYTHON, "-m", "otp", "worker"], env)


def create_api_key(fleet: Fleet, config: OtpConfig, name: str = "bench") -> str:
    """`otp keys create NAME`: the key is the last line of its output."""
    env = config.env(port=0, public_url=f"http://{HOST}:1")
    done = subprocess.run(
        [PYTHON, "-m", "otp", "keys", "create", name],
        env=env,
        cwd=fleet.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not lines[-1].startswith("otpk_"):
        raise BenchError(f"otp keys create failed ({done.returncode}): {done.stdout}{done.stderr}")
    return lines[-1]


async def start_plain(fleet: Fleet, port: int) -> Proc:
    """The baseline: a one-route Starlette app under the same uvicorn (one process, asyncio, h11)."""
    argv = [PYTHON, "-m", "uvicorn", "plain_app:app", "--app-dir", str(BENCH_DIR), "--host", HOST, "--port", str(port)]
    proc = fleet.spawn("plain-starlette", [*argv, "--log-level", "warning", "--no-access-log"], clean_env())
    await wait_for_port(port, proc)
    return proc
