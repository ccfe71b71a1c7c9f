"""Stopping the subprocesses tests start (`otp serve`, the login app, Redis clusters)."""

from __future__ import annotations

import subprocess
from typing import Any


def stop(*processes: subprocess.Popen[Any], timeout: float = 15) -> None:
    """SIGTERM to each (all first, so they shut down side by side), then wait for each; one that
    has not exited within ``timeout`` seconds gets SIGKILL.  Each is reaped: no zombie, no
    ResourceWarning.  (Popen.terminate of one that has already exited does nothing.)"""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
