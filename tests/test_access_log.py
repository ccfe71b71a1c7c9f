"""The access log of a real `otp serve`: one clean line per request, numbers masked, no tracebacks.

(Issue 11: the masking filter once set ``record.args = None`` on uvicorn's access records, and
uvicorn's AccessFormatter, which unpacks those args, wrote a ``--- Logging error ---`` traceback
of ~5 KB for every request instead of the line.)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from conftest import SECRET
from test_serve import clean_env, otp_command

from otp.embedded_redis import free_port


@contextlib.contextmanager
def serving(redis_url: str, tmp_path: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`otp serve` on a free port against the test Redis, its log on a pipe; ready when /healthz answers."""
    port = free_port()
    process = subprocess.Popen(
        otp_command("serve"),
        env=clean_env(
            OTP_REDIS_URL=redis_url,
            OTP_SECRET_KEY=SECRET,
            OTP_PORT=str(port),
            OTP_WORKER="off",
            OTP_DATA_DIR=str(tmp_path / "data"),
            OTP_ARGON2_MEMORY_KIB="8192",
            OTP_ARGON2_TIME_COST="1",
            **env,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"otp serve exited: {process.stdout.read() if process.stdout else ''}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError("otp serve did not come up")
            time.sleep(0.05)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def read_log_until(process: subprocess.Popen[str], needle: str, timeout: float = 10.0) -> str:
    """What the server has logged so far, read until ``needle`` shows up (bounded)."""
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    text = ""
    deadline = time.monotonic() + timeout
    while needle not in text and time.monotonic() < deadline:
        text += process.stdout.read() or ""
        time.sleep(0.05)
    return text


def test_access_lines_are_written_masked_and_without_logging_errors(redis_url: str, tmp_path: Path) -> None:
    with serving(redis_url, tmp_path) as (base, process):
        with httpx.Client(base_url=base) as client:
            assert client.delete("/v1/safelist/+15017122661").status_code == 401
            assert client.get("/v1/audit", params={"number": "+15017122661"}).status_code == 401
            # A national number, no "+": the audit filter accepts it, so the line must mask it too.
            assert client.get("/v1/audit?number=5017122661&since=1h").status_code == 401
            # A verification id is not a number: it stays greppable.
            assert client.get("/v1/verifications/VE0123456789abcdef0123456789abcdef").status_code == 401
            assert client.get("/healthz").status_code == 200
            assert client.get("/last-one").status_code == 404
        log = read_log_until(process, "/last-one")
    assert "Logging error" not in log, log[:3000]
    assert "Traceback" not in log, log[:3000]
    assert "15017122661" not in log
    assert "5017122661" not in log
    access = [line for line in log.splitlines() if '"DELETE ' in line or '"GET ' in line]
    # Exactly uvicorn's line shape: client - "METHOD path HTTP/1.1" status
    assert any('"DELETE /v1/safelist/+1*******2661 HTTP/1.1" 401' in line for line in access), log
    assert any('"GET /v1/audit?number=+1*******2661 HTTP/1.1" 401' in line for line in access), log
    assert any('"GET /v1/audit?number=*******2661&since=1h HTTP/1.1" 401' in line for line in access), log
    assert any("/v1/verifications/VE0123456789abcdef0123456789abcdef " in line for line in access), log
    assert any('"GET /healthz HTTP/1.1" 200' in line for line in access), log
    assert any('"GET /last-one HTTP/1.1" 404' in line for line in access), log
    assert len(log) < 4000, "one short line per request, not a traceback each"


def test_other_log_lines_of_otp_serve_mask_numbers_in_their_arguments(tmp_path: Path) -> None:
    """A path with a number in an error line (/v2 fetches a verification by its To) is masked
    like the access line, whichever logger writes it."""
    script = (
        "import logging; from otp.cli import _setup_logging; _setup_logging('INFO'); "
        "logging.getLogger('otp.twilio_compat').warning("
        "'storage error on %s %s: %s', 'GET', '/v2/Services/VA1/Verifications/+15017122661', 'ConnectionError'); "
        "logging.getLogger('otp').warning({'to': '+15017122661'})"
    )
    result = subprocess.run(
        [*otp_command()[:1], "-c", script], capture_output=True, text=True, timeout=30, cwd=tmp_path, env=clean_env()
    )
    assert result.returncode == 0, result.stderr
    assert "15017122661" not in result.stderr
    assert "storage error on GET /v2/Services/VA1/Verifications/+1*******2661: ConnectionError" in result.stderr
    assert "Logging error" not in result.stderr
