"""The same SMS start→check pair on privacyIDEA, side by side with otp (issue 18, "Speed").

    .venv/bin/python bench/peer_privacyidea.py [--quick] [--json] [--mode shipped|light|both]
                                               [--concurrency 8] [--pairs N]

Installs privacyIDEA (pinned) and gunicorn into their own venv under bench/.peer/venv (reused when
present), gives each mode its own instance under bench/.peer/<mode>/ (pi.cfg, SQLite database,
encryption key, audit keys, a passwd-file resolver with 32 users, one SMS token per user, all
configured through privacyIDEA's own pi-manage and REST API), serves it with gunicorn (workers =
cores) and runs closed-loop pairs: "start" = POST /validate/check with user + PIN (privacyIDEA sends
the challenge through its HttpSMSProvider to a loopback sink run here), "check" = POST
/validate/check with the transaction_id and the code the sink caught (must succeed).

Two modes, differing only in the PIN hash settings, which privacyIDEA bakes into each token's stored
PIN hash at enrollment (hence one instance each): "shipped" leaves PI_HASH_ALGO_LIST and
PI_HASH_ALGO_PARAMS unset (privacyidea.lib.crypto: argon2 with rounds=9 over the memory and lanes
passlib takes from argon2-cffi, stored as $argon2id$v=19$m=65536,t=9,p=4); "light" sets
PI_HASH_ALGO_PARAMS to the cheapest argon2 passlib accepts (the values privacyIDEA's own TestingConfig
uses), the counterpart of otp's minimal-argon2 run.

The API bench/run.py calls: run_peer(concurrency, pairs, light_pin_hashing) and run_levels(levels, light).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from load import percentile

from otp.edge.embedded_redis import free_port

PI_VERSION = "3.14"
GUNICORN_VERSION = "27.0.1"
PEER_DIR = Path(__file__).resolve().parent / ".peer"
VENV = PEER_DIR / "venv"
HOST = "127.0.0.1"
USERS = 32  # one token per user and each client thread owns its users, so concurrency <= USERS
REALM = "bench"
RESOLVER = "benchusers"
GATEWAY = "loopback-sink"
PIN = "bench-pin-2468"
ADMIN = "admin"
# privacyidea/config.py TestingConfig: the cheapest argon2 passlib accepts (memory_cost >= 8 * parallelism).
LIGHT_HASH_PARAMS = {"argon2__rounds": 1, "argon2__memory_cost": 8, "argon2__parallelism": 1}
INSTALL_TIMEOUT_S = 900
STEP_TIMEOUT_S = 300
START_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 120
SMS_WAIT_S = 30
CLK_TCK = os.sysconf("SC_CLK_TCK")
OTP_DIGITS = re.compile(r"\d{6,8}")


class PeerError(RuntimeError):
    """The peer could not be installed, configured or measured."""


def progress(message: str) -> None:
    # stderr, so --json keeps stdout to the figures alone
    print(f"[peer] {message}", file=sys.stderr, flush=True)


def _run(args: list[str], *, env: dict[str, str] | None = None, timeout: float = STEP_TIMEOUT_S) -> str:
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise PeerError(f"{Path(args[0]).name} {' '.join(args[1:3])} took over {timeout:.0f}s") from e
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise PeerError(f"{Path(args[0]).name} {' '.join(args[1:3])} failed ({done.returncode}): {' | '.join(tail)}")
    return done.stdout


# --- install -------------------------------------------------------------------------------------------------


def _installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    probe = "import importlib.metadata as m, gunicorn; print(m.version('privacyidea'), m.version('gunicorn'))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        return None
    pi, gunicorn = done.stdout.split()
    return pi if gunicorn == GUNICORN_VERSION else None


def ensure_venv() -> str:
    """privacyIDEA and gunicorn, pinned, in bench/.peer/venv; returns the installed privacyIDEA version."""
    python = VENV / "bin" / "python"
    version = _installed_version(python)
    if version == PI_VERSION:
        return version
    if not python.exists():
        progress(f"creating {VENV}")
        VENV.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(VENV)], timeout=STEP_TIMEOUT_S)
    progress(f"installing privacyidea=={PI_VERSION} gunicorn=={GUNICORN_VERSION} (a minute or two)")
    started = time.monotonic()
    _run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         f"privacyidea=={PI_VERSION}", f"gunicorn=={GUNICORN_VERSION}"],
        timeout=INSTALL_TIMEOUT_S,
    )  # fmt: skip
    version = _installed_version(python)
    if version != PI_VERSION:
        raise PeerError(f"installed privacyidea is {version}, wanted {PI_VERSION}")
    progress(f"installed in {time.monotonic() - started:.0f}s")
    return version


# --- one instance per mode -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    mode: str
    home: Path
    admin_password: str

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PRIVACYIDEA_CONFIGFILE=str(self.home / "pi.cfg"),
            PI_CONFIG_NAME="production",
            # HttpSMSProvider posts with requests, which honours proxy variables: keep the sink direct.
            NO_PROXY=f"{HOST},localhost",
            no_proxy=f"{HOST},localhost",
        )
        return env

    def phone(self, n: int) -> str:
        return f"+1555{n:07d}"  # fictional range, never a real number

    def user(self, n: int) -> str:
        return f"user{n:03d}"


def _pi_cfg(home: Path, light: bool) -> str:
    lines = [
        "# Written by bench/peer_privacyidea.py for a throwaway loopback instance.",
        f"SQLALCHEMY_DATABASE_URI = {'sqlite:///' + str(home / 'data.sqlite')!r}",
        # Two gunicorn workers share one SQLite file: wait for its lock rather than fail at 5 s.
        "SQLALCHEMY_ENGINE_OPTIONS = {'connect_args': {'timeout': 60}}",
        f"SECRET_KEY = {secrets.token_urlsafe(32)!r}",
        f"PI_PEPPER = {secrets.token_urlsafe(24)!r}",
        f"PI_ENCFILE = {str(home / 'enckey')!r}",
        f"PI_AUDIT_KEY_PRIVATE = {str(home / 'private.pem')!r}",
        f"PI_AUDIT_KEY_PUBLIC = {str(home / 'public.pem')!r}",
        f"PI_LOGFILE = {str(home / 'privacyidea.log')!r}",
        "PI_LOGLEVEL = 30  # WARNING: the bench measures requests, not log writing",
        "SUPERUSER_REALM = ['superuser']",
    ]
    if light:
        lines.append(f"PI_HASH_ALGO_PARAMS = {LIGHT_HASH_PARAMS!r}")
    return "\n".join(lines) + "\n"


def ensure_instance(light: bool) -> tuple[Instance, bool]:
    """The mode's files under bench/.peer/<mode>/; True when its REST configuration is already done."""
    mode = "light" if light else "shipped"
    home = PEER_DIR / mode
    state_file = home / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        # An instance whose REST configuration was cut short is built anew: enrolling again would
        # give a user a second token, so a start would send two SMS.
        if state.get("version") == PI_VERSION and state.get("users") == USERS and state.get("configured"):
            return Instance(mode, home, state["admin_password"]), True
    progress(f"{mode}: creating the instance in {home}")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "pi.cfg").write_text(_pi_cfg(home, light))
    (home / "users.passwd").write_text(
        "".join(
            f"user{n:03d}:x:{2000 + n}:{2000 + n}:Bench User{n:03d},,,:/nonexistent:/bin/false\n" for n in range(USERS)
        )
    )
    instance = Instance(mode, home, secrets.token_urlsafe(18))
    manage = str(VENV / "bin" / "pi-manage")
    for step in (["setup", "create_enckey"], ["setup", "create_audit_keys"], ["setup", "create_tables"]):
        progress(f"{mode}: pi-manage {' '.join(step)}")
        _run([manage, *step], env=instance.env())
    # WAL lets one worker read while the other writes; in SQLite's default rollback journal the two gunicorn
    # workers queue on the file lock (c=8 ran at a quarter of c=2's rate), which would measure SQLite, not privacyIDEA.
    with closing(sqlite3.connect(home / "data.sqlite")) as db:
        db.execute("PRAGMA journal_mode=WAL")
    progress(f"{mode}: pi-manage admin add {ADMIN}")
    _run([manage, "admin", "add", ADMIN, "-p", instance.admin_password], env=instance.env())
    _write_state(instance, configured=False)
    return instance, False


def _write_state(instance: Instance, *, configured: bool) -> None:
    state = {"version": PI_VERSION, "users": USERS, "admin_password": instance.admin_password, "configured": configured}
    instance.state_file.write_text(json.dumps(state))


# --- the loopback SMS sink -----------------------------------------------------------------------------------


class SmsSink:
    """Catches HttpSMSProvider's POSTs (to=<phone>, text=<message>) so a checker can read its code."""

    def __init__(self) -> None:
        self._codes: dict[str, str] = {}
        self._changed = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                found = OTP_DIGITS.search(form.get("text", ""))
                if found and "to" in form:
                    sink.deliver(form["to"], found.group(0))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a line per SMS would be noise (and the number is no one's business)

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="sms-sink", daemon=True)
        self._thread.start()

    def deliver(self, phone: str, code: str) -> None:
        with self._changed:
            self._codes[phone] = code
            self._changed.notify_all()

    def forget(self, phone: str) -> None:
        with self._changed:
            self._codes.pop(phone, None)

    def take(self, phone: str, timeout: float = SMS_WAIT_S) -> str:
        with self._changed:
            if not self._changed.wait_for(lambda: phone in self._codes, timeout):
                raise PeerError(f"no SMS reached the sink within {timeout:.0f}s")
            return self._codes.pop(phone)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the server ----------------------------------------------------------------------------------------------


def call(port: int, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    """One JSON request to privacyIDEA; returns the decoded reply, raises on a non-200 status."""
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = token
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        reply = conn.getresponse()
        data = reply.read()
    finally:
        conn.close()
    if reply.status != 200:
        raise PeerError(f"{method} {path}: HTTP {reply.status}: {data[:300]!r}")
    return json.loads(data)


@contextmanager
def serving(instance: Instance, workers: int) -> Iterator[tuple[int, int]]:
    """gunicorn (sync workers) serving the instance; yields (port, master pid)."""
    port = free_port()
    args = [
        str(VENV / "bin" / "gunicorn"),
        "--workers", str(workers),
        "--bind", f"{HOST}:{port}",
        "--timeout", str(REQUEST_TIMEOUT_S),
        "--chdir", str(instance.home),
        "--log-level", "warning",
        "--error-logfile", str(instance.home / "gunicorn.log"),
        "privacyidea.app:create_app(config_name='production', silent=True)",
    ]  # fmt: skip
    proc = subprocess.Popen(args, env=instance.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(proc, port, instance)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, instance: Instance) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PeerError(f"gunicorn exited ({proc.returncode}); see {instance.home / 'gunicorn.log'}")
        try:
            call(port, "GET", "/healthz/")
            return
        except (OSError, PeerError):
            time.sleep(0.5)
    raise PeerError(f"privacyIDEA did not answer /healthz/ within {START_TIMEOUT_S}s")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def tree_cpu(pid: int) -> dict[int, float]:
    """utime+stime (seconds) of the process and its children, per pid."""
    cpu = {}
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[p] = (int(fields[11]) + int(fields[12])) / CLK_TCK  # stat fields 14, 15
    return cpu


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / CLK_TCK, sum(ticks[:8]) / CLK_TCK


def configure(port: int, instance: Instance, sink_port: int, configured: bool) -> None:
    """Resolver, realm, SMS gateway and one SMS token per user, through the admin REST API."""
    auth = call(port, "POST", "/auth", {"username": ADMIN, "password": instance.admin_password})
    token = auth["result"]["value"]["token"]
    # The sink's port changes every run, so the gateway is (re)written every time.
    gateway = {
        "name": GATEWAY,
        "module": "privacyidea.lib.smsprovider.HttpSMSProvider.HttpSMSProvider",
        "option.URL": f"http://{HOST}:{sink_port}/sms",
        "option.HTTP_METHOD": "POST",
        "option.TIMEOUT": "10",
        "option.to": "{phone}",
        "option.text": "code {otp}",
    }
    call(port, "POST", "/smsgateway", gateway, token)
    if configured:
        return
    progress(f"{instance.mode}: configuring resolver, realm, gateway and {USERS} SMS tokens")
    call(
        port,
        "POST",
        f"/resolver/{RESOLVER}",
        {"type": "passwdresolver", "fileName": str(instance.home / "users.passwd")},
        token,
    )
    call(port, "POST", f"/realm/{REALM}", {"resolvers": RESOLVER}, token)
    call(port, "POST", "/system/setConfig", {"sms.identifier": GATEWAY}, token)
    started = time.monotonic()
    for n in range(USERS):
        enrolled = {
            "type": "sms",
            "genkey": 1,
            "user": instance.user(n),
            "realm": REALM,
            "pin": PIN,
            "phone": instance.phone(n),
        }
        call(port, "POST", "/token/init", enrolled, token)
    progress(f"{instance.mode}: enrolled {USERS} tokens in {time.monotonic() - started:.1f}s")
    _write_state(instance, configured=True)


def pin_hash_scheme(instance: Instance) -> str:
    """The PIN hash's algorithm and parameters as stored (e.g. "$argon2id$v=19$m=65536,t=9,p=4"), no salt or hash.

    Read back rather than assumed: passlib takes argon2's defaults from the installed argon2-cffi."""
    with closing(sqlite3.connect(instance.home / "data.sqlite")) as db:
        row = db.execute("SELECT pin_hash FROM token WHERE pin_hash IS NOT NULL LIMIT 1").fetchone()
    return str(row[0]).rsplit("$", 2)[0] if row else "unknown"


# --- the load ------------------------------------------------------------------------------------------------


def one_pair(port: int, sink: SmsSink, user: str, phone: str) -> float:
    """start (user + PIN → challenge, SMS to the sink) then check (transaction_id + code); seconds taken."""
    sink.forget(phone)
    started = time.perf_counter()
    start = call(port, "POST", "/validate/check", {"user": user, "realm": REALM, "pass": PIN})
    transaction_id = start.get("detail", {}).get("transaction_id")
    if start["result"].get("value") is not False or not transaction_id:
        raise PeerError(f"start did not trigger a challenge: {start.get('detail', {}).get('message')!r}")
    code = sink.take(phone)
    # /validate/check wants the user (or a serial) beside the transaction_id
    check = call(
        port, "POST", "/validate/check", {"user": user, "realm": REALM, "transaction_id": transaction_id, "pass": code}
    )
    if check["result"].get("value") is not True:
        raise PeerError(f"check was refused: {check.get('detail', {}).get('message')!r}")
    return time.perf_counter() - started


def closed_loop(
    port: int, sink: SmsSink, instance: Instance, concurrency: int, pairs: int
) -> tuple[list[float], float]:
    """`concurrency` threads, each owning users i, i+c, i+2c…, run `pairs` pairs in all; (latencies, wall s)."""
    if not 1 <= concurrency <= USERS:
        raise PeerError(f"concurrency must be 1..{USERS} (one user per client thread at least)")
    remaining = [pairs]
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        mine = list(range(i, USERS, concurrency))
        turn = 0
        while True:
            with lock:
                if remaining[0] <= 0 or errors:
                    return
                remaining[0] -= 1
            n = mine[turn % len(mine)]
            turn += 1
            try:
                took = one_pair(port, sink, instance.user(n), instance.phone(n))
            except BaseException as e:
                with lock:
                    errors.append(e)
                return
            with lock:
                latencies.append(took)

    threads = [threading.Thread(target=client, args=(i,), name=f"peer-client-{i}") for i in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise PeerError(f"{len(errors)} pair(s) failed, first: {errors[0]}") from errors[0]
    return latencies, wall


def _measure(port: int, pid: int, sink: SmsSink, instance: Instance, concurrency: int, pairs: int) -> dict[str, Any]:
    closed_loop(port, sink, instance, concurrency, max(2, concurrency))  # warm-up: lazy imports, caches, pools
    before, box_before, own_before = tree_cpu(pid), machine_cpu(), time.process_time()
    latencies, wall = closed_loop(port, sink, instance, concurrency, pairs)
    after, box_after, own_after = tree_cpu(pid), machine_cpu(), time.process_time()
    if set(before) != set(after):
        progress("warning: the gunicorn process tree changed during the run; server CPU is a lower bound")
    server_cpu = sum(after.values()) - sum(before.get(p, 0.0) for p in after)
    driver_cpu = own_after - own_before  # the client threads and the SMS sink
    box_busy, box_total = box_after[0] - box_before[0], box_after[1] - box_before[1]
    # CPU the bench did not use (other processes on a shared box): when high, the rates are low
    other_share = max(0.0, box_busy - server_cpu - driver_cpu) / box_total if box_total > 0 else 0.0
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return {
        "mode": instance.mode,
        "concurrency": concurrency,
        "pairs": pairs,
        "pairs_per_s": round(pairs / wall, 2),
        "server_cpu_ms_per_pair": round(server_cpu * 1000 / pairs, 1),
        "p50_ms": round((p50 or 0.0) * 1000, 1),
        "p99_ms": round((p99 or 0.0) * 1000, 1),
        "wall_s": round(wall, 2),
        "server_workers": len(after) - 1,
        "driver_cpu_ms_per_pair": round(driver_cpu * 1000 / pairs, 1),
        "other_cpu_share": round(other_share, 2),
    }


# --- API for bench/run.py ------------------------------------------------------------------------------------


def run_levels(levels: list[tuple[int, int]], light: bool) -> list[dict[str, Any]]:
    """One privacyIDEA instance (installed and configured if need be), one result per (concurrency, pairs)."""
    version = ensure_venv()
    instance, configured = ensure_instance(light)
    workers = os.cpu_count() or 1
    sink = SmsSink()
    try:
        with serving(instance, workers) as (port, pid):
            configure(port, instance, sink.port, configured)
            results = []
            for concurrency, pairs in levels:
                progress(f"{instance.mode}: {pairs} pairs at concurrency {concurrency}")
                result = _measure(port, pid, sink, instance, concurrency, pairs)
                result.update(version=version, pin_hash=pin_hash_scheme(instance))
                progress(
                    f"{instance.mode}: {result['pairs_per_s']} pairs/s, {result['server_cpu_ms_per_pair']} ms "
                    f"server CPU/pair, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
                    f"other processes' CPU share {result['other_cpu_share']:.0%}"
                )
                results.append(result)
            return results
    finally:
        sink.close()


def run_peer(concurrency: int, pairs: int, light_pin_hashing: bool) -> dict[str, Any]:
    """pairs_per_s, server_cpu_ms_per_pair, p50_ms, p99_ms … of one closed-loop run."""
    return run_levels([(concurrency, pairs)], light_pin_hashing)[0]


def main() -> int:
    parser = argparse.ArgumentParser(
        description="\n\n".join(__doc__.split("\n\n")[:3]), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer pairs (under ~3 minutes once installed)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument(
        "--mode",
        choices=["shipped", "light", "both"],
        default="both",
        help="PIN hashing: privacyIDEA's own default, the cheapest argon2, or both (default both)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="pairs in flight, at most 32 (default 8)")
    parser.add_argument("--pairs", type=int, help="pairs per mode (default: shipped 60, light 300; --quick: 24, 96)")
    args = parser.parse_args()
    modes = ["shipped", "light"] if args.mode == "both" else [args.mode]
    results = []
    try:
        for mode in modes:
            default = {"shipped": 24 if args.quick else 60, "light": 96 if args.quick else 300}[mode]
            results.append(run_peer(args.concurrency, args.pairs or default, mode == "light"))
    except PeerError as e:
        print(f"peer_privacyidea: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(
                f"privacyIDEA {r['version']} {r['mode']:>7}: c={r['concurrency']} {r['pairs']} pairs  "
                f"{r['pairs_per_s']:.2f} pairs/s  server CPU {r['server_cpu_ms_per_pair']:.1f} ms/pair  "
                f"p50 {r['p50_ms']:.0f} ms  p99 {r['p99_ms']:.0f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
