"""A running `otp serve` subprocess whose log the tests read as a developer would: the codes the
console sender prints, the lines it wrote before it exited."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from processes import stop
from test_serve import clean_env, otp_command

# The console sender's line: the masked number (its visible last digits) and the code.
CONSOLE_SMS = re.compile(r"console SMS.*? to \+\d+\*+(\d+)\b.*?(?<!\d)(\d{4,10}) is your")


@dataclass
class DevServer:
    base: str
    folder: Path  # the process's working directory: its .otp/ is there unless OTP_DATA_DIR says otherwise
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "".join(self.lines)

    def code(self, to: str, *, since: int = 0, timeout: float = 15.0) -> str:
        """The code of the newest console SMS to ``to`` logged after line ``since``.  The log masks
        the number but for its last digits, so tests give each number its own last two."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [
                m.group(2) for line in self.lines[since:] if (m := CONSOLE_SMS.search(line)) and to.endswith(m.group(1))
            ]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no console SMS to {to} in the log:\n{self.log()}")


def _collect(process: subprocess.Popen[str], lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)


@contextmanager
def running(
    command: list[str], env: dict[str, str], folder: Path, port: int, timeout: float = 30.0
) -> Iterator[DevServer]:
    """``command`` (an `otp serve`) started in ``folder``, once /readyz answers on ``port``; stopped
    with SIGTERM after."""
    process = subprocess.Popen(
        command, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    server = DevServer(f"http://127.0.0.1:{port}", folder, process)
    reader = threading.Thread(target=_collect, args=(process, server.lines), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert process.poll() is None, f"otp serve exited ({process.returncode}):\n{server.log()}"
            try:
                if httpx.get(f"{server.base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"otp serve was not ready in {timeout:.0f} s:\n{server.log()}"
            time.sleep(0.1)
        yield server
    finally:
        stop(process)
        reader.join(timeout=5)


def otp_beside(server: DevServer, *args: str) -> str:
    """`otp ARGS` run in the server's folder, as a user runs it beside the server (on its .otp/);
    what it printed.  It must exit 0."""
    result = subprocess.run(
        otp_command(*args), env=clean_env(), cwd=server.folder, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
