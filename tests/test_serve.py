"""`otp serve` as a user runs it: a subprocess with an embedded Redis and the console SMS sender."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis
from processes import stop

from otp.edge.embedded_redis import free_port


def otp_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "otp", *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    env.update(extra)
    return env


def wait_until_ready(base: str, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"otp serve exited: {process.stdout.read() if process.stdout else ''}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("otp serve did not become ready")


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    env = clean_env(
        OTP_DATA_DIR=str(tmp_path / "data"), OTP_PORT=str(port), OTP_ARGON2_MEMORY_KIB="8192", OTP_ARGON2_TIME_COST="1"
    )
    process = subprocess.Popen(
        otp_command("serve"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process)
        yield base, tmp_path / "data", process
    finally:
        stop(process)


def test_serve_with_nothing_configured_runs_a_full_start_and_check(served) -> None:  # type: ignore[no-untyped-def]
    base, data_dir, process = served
    key = (data_dir / "dev-api-key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    # A path that holds a number: the access log must mask it too.
    assert httpx.delete(f"{base}/v1/safelist/+15017122661", headers=headers).status_code == 404
    started = httpx.post(f"{base}/v1/verifications", json={"to": "+15017122661"}, headers=headers)
    assert started.status_code == 201
    vid = started.json()["id"]
    # The console sender prints the message: read the code from the log, as a developer would.
    deadline = time.monotonic() + 10
    log_lines: list[str] = []
    code = None
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    while code is None and time.monotonic() < deadline:
        chunk = process.stdout.read() or ""
        log_lines.append(chunk)
        match = re.search(r"DEVELOPMENT ONLY console SMS.*?(\d{6})", "".join(log_lines))
        code = match.group(1) if match else None
        time.sleep(0.1)
    assert code, "".join(log_lines)
    log_text = "".join(log_lines)
    assert "15017122661" not in log_text  # numbers are masked in the log, access lines included
    # The access line names the route's template, not the path that held the number.
    assert '"route": "/v1/safelist/{entry}", "status": 404' in log_text
    assert "created a development admin API key" in log_text
    checked = httpx.post(f"{base}/v1/verifications/check", json={"id": vid, "code": code}, headers=headers)
    assert checked.json()["status"] == "approved"
    assert (data_dir / "appendonly.aof").exists()


def test_a_second_serve_on_the_same_data_folder_exits_2_and_leaves_the_first_serving(served) -> None:  # type: ignore[no-untyped-def]
    # What a user does when port 8000 is taken by the first one: start another on the next port.
    base, data_dir, _process = served
    result = subprocess.run(
        otp_command("serve"),
        env=clean_env(OTP_DATA_DIR=str(data_dir), OTP_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=data_dir.parent,
    )
    assert result.returncode == 2
    assert "another `otp serve` runs with the data folder" in result.stderr
    assert "OTP_DATA_DIR" in result.stderr
    assert "Traceback" not in result.stderr
    # The first one's Redis still takes new connections (its socket was left in place), so
    # concurrent starts, which need more than the pool's idle connections, are answered (some
    # refused by the rate limits), never 503 for want of Redis.
    assert redis.Redis(unix_socket_path=str(data_dir / "redis.sock")).ping()
    key = (data_dir / "dev-api-key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}

    def start(n: int) -> httpx.Response:
        return httpx.post(f"{base}/v1/verifications", json={"to": f"+150171226{70 + n}"}, headers=headers)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(start, range(12)))
    statuses = {a.status_code for a in answers}
    assert 201 in statuses and statuses <= {201, 429}, [a.text for a in answers]


def test_serve_refuses_a_bad_variable_naming_it(tmp_path: Path) -> None:
    result = subprocess.run(
        otp_command("serve"),
        env=clean_env(OTP_CODE_LENGTH="twelve", OTP_MAX_CHECK_ATTEMPTS="0"),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "OTP_CODE_LENGTH" in result.stderr
    assert "OTP_MAX_CHECK_ATTEMPTS" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_prints_help() -> None:
    result = subprocess.run(otp_command(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for command in ("serve", "worker", "keys"):
        assert command in result.stdout


def test_keys_create_prints_the_key_on_its_last_line(redis_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        otp_command("keys", "create", "checkout-app"),
        env=clean_env(OTP_REDIS_URL=redis_url),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"otpk_[0-9a-f]{16}_[0-9a-f]{64}", result.stdout.strip().splitlines()[-1])
    listed = subprocess.run(
        otp_command("keys", "list"),
        env=clean_env(OTP_REDIS_URL=redis_url),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert "checkout-app" in listed.stdout


def test_safelist_cli_adds_lists_and_removes(redis_url: str, tmp_path: Path) -> None:
    env = clean_env(OTP_REDIS_URL=redis_url)

    def otp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(otp_command(*args), env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)

    assert otp("safelist", "add", "+1501712").returncode == 0
    assert otp("safelist", "list").stdout.split() == ["entry", "matches", "+1501712", "prefix"]
    assert otp("safelist", "remove", "+1501712").returncode == 0
    assert otp("safelist", "list").stdout.split() == ["entry", "matches"]
    bad = otp("safelist", "add", "not-a-number")
    assert bad.returncode == 2 and "E.164" in bad.stderr
