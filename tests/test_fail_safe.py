"""Setups that fail safe (DESIGN §2): a production-looking `otp serve` or `otp worker` never falls
back to the console sender, the development setup never runs on a network address unasked, and a
Redis that may evict keys is refused at startup (unless the operator says otherwise, out loud)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import test_redis_requirements
from conftest import SECRET, make_settings
from test_serve import clean_env, otp_command, wait_until_ready

from otp import startup
from otp.app import build_sender
from otp.core import apikeys
from otp.edge.embedded_redis import free_port
from otp.errors import ConfigError
from otp.settings import Settings
from otp.storage.client import connect
from otp.storage.store import Store

lru_redis = test_redis_requirements.lru_redis

TWILIO_NAMES = ("OTP_TWILIO_ACCOUNT_SID", "OTP_TWILIO_AUTH_TOKEN", "OTP_TWILIO_FROM", "OTP_PUBLIC_URL")
FAST = {"OTP_ARGON2_MEMORY_KIB": "8192", "OTP_ARGON2_TIME_COST": "1"}


def run_otp(tmp_path: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        otp_command(*command),
        env=clean_env(OTP_DATA_DIR=str(tmp_path / "data"), **FAST, **env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


@contextlib.contextmanager
def serving(tmp_path: Path, host: str = "127.0.0.1", **env: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`otp serve` on a free port until it is ready; its log (stdout and stderr) on a pipe."""
    port = free_port()
    process = subprocess.Popen(
        otp_command("serve"),
        env=clean_env(OTP_DATA_DIR=str(tmp_path / "data"), OTP_HOST=host, OTP_PORT=str(port), **FAST, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def log_of(process: subprocess.Popen[str]) -> str:
    """Everything the stopped process wrote."""
    process.terminate()
    out, _ = process.communicate(timeout=15)
    return out


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_serve_with_redis_and_a_secret_but_no_twilio_exits_2_naming_what_is_missing(
    redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    result = run_otp(tmp_path, "serve", OTP_REDIS_URL=redis_url, OTP_SECRET_KEY=SECRET, OTP_PORT=str(port))
    assert result.returncode == 2, result.stderr
    for name in TWILIO_NAMES:
        assert name in result.stderr
    assert "OTP_SMS=console" in result.stderr  # the way to ask for the console on purpose
    assert "Traceback" not in result.stderr
    assert "Uvicorn running" not in result.stderr and not listening(port)
    assert not (tmp_path / "data").exists()  # nothing started, not even an embedded Redis


async def test_otp_sms_console_runs_the_console_sender_and_warns_at_startup(redis_url: str, tmp_path: Path) -> None:
    client = connect(redis_url)
    _, key = await apikeys.create(Store(client, partitions=16), "fail-safe")
    await client.aclose()
    auth = {"Authorization": f"Bearer {key}"}
    with serving(tmp_path, OTP_REDIS_URL=redis_url, OTP_SECRET_KEY=SECRET, OTP_SMS="console") as (base, process):
        async with httpx.AsyncClient(base_url=base, headers=auth) as http:
            started = await http.post("/v1/verifications", json={"to": "+15017122661"})
            assert started.status_code == 201, started.text
            for _ in range(200):  # the in-process worker sends it within a few hundred ms
                row = (await http.get(f"/v1/verifications/{started.json()['id']}")).json()
                if row["send_attempts"][0]["delivery"]["status"] != "queued":
                    break
                await asyncio.sleep(0.05)
        log = log_of(process)
    assert "SMS go to the console sender (OTP_SMS=console)" in log
    assert "DEVELOPMENT ONLY console SMS" in log


def test_the_development_setup_on_a_network_address_exits_2_unless_otp_dev(tmp_path: Path) -> None:
    refused = run_otp(tmp_path, "serve", OTP_HOST="0.0.0.0", OTP_PORT=str(free_port()))  # noqa: S104
    assert refused.returncode == 2, refused.stderr
    assert "OTP_REDIS_URL" in refused.stderr and "OTP_DEV=1" in refused.stderr
    assert "0.0.0.0" in refused.stderr  # noqa: S104
    assert not (tmp_path / "data").exists()  # no embedded Redis, no generated secret
    with serving(tmp_path, host="0.0.0.0", OTP_DEV="1") as (base, process):  # noqa: S104
        assert httpx.get(f"{base}/healthz").json()["checks"] == {"embedded_redis": "ok"}
        log = log_of(process)
    assert "SMS go to the console sender (development setup" in log


def test_the_development_setup_with_a_secret_of_its_own_needs_twilio_too(tmp_path: Path) -> None:
    """Only the pure development setup (no Redis URL, no secret) may fall back to the console."""
    result = run_otp(tmp_path, "serve", OTP_SECRET_KEY=SECRET, OTP_PORT=str(free_port()))
    assert result.returncode == 2, result.stderr
    assert "OTP_TWILIO_ACCOUNT_SID" in result.stderr


def test_a_worker_without_twilio_exits_2_naming_what_is_missing(redis_url: str, tmp_path: Path) -> None:
    result = run_otp(tmp_path, "worker", "--burst", OTP_REDIS_URL=redis_url, OTP_SECRET_KEY=SECRET)
    assert result.returncode == 2, result.stderr
    for name in TWILIO_NAMES:
        assert name in result.stderr
    with_console = run_otp(
        tmp_path, "worker", "--burst", OTP_REDIS_URL=redis_url, OTP_SECRET_KEY=SECRET, OTP_SMS="console"
    )
    assert with_console.returncode == 0, with_console.stderr
    assert "SMS go to the console sender (OTP_SMS=console)" in with_console.stderr


def test_otp_sms_twilio_without_twilio_settings_is_refused_even_in_development(tmp_path: Path) -> None:
    result = run_otp(tmp_path, "serve", OTP_SMS="twilio", OTP_PORT=str(free_port()))
    assert result.returncode == 2, result.stderr
    assert "OTP_SMS=twilio" in result.stderr and "OTP_TWILIO_AUTH_TOKEN" in result.stderr


def test_an_evicting_redis_stops_serve_and_worker_naming_the_policy_and_the_fix(lru_redis: str, tmp_path: Path) -> None:
    env = {"OTP_REDIS_URL": lru_redis, "OTP_SECRET_KEY": SECRET, "OTP_SMS": "console"}
    for command in (("serve", "--port", str(free_port())), ("worker", "--burst")):
        result = run_otp(tmp_path, *command, **env)
        assert result.returncode == 2, result.stderr
        assert "maxmemory-policy allkeys-lru" in result.stderr
        assert "set `maxmemory-policy noeviction`" in result.stderr  # the fix
        assert "OTP_REDIS_ALLOW_EVICTION=1" in result.stderr  # and the override
        assert "Traceback" not in result.stderr


def test_allowing_eviction_starts_serve_with_a_warning_on_every_start(lru_redis: str, tmp_path: Path) -> None:
    env = {"OTP_REDIS_URL": lru_redis, "OTP_SECRET_KEY": SECRET, "OTP_WORKER": "off", "OTP_REDIS_ALLOW_EVICTION": "1"}
    with serving(tmp_path, **env) as (base, process):
        assert httpx.get(f"{base}/readyz").json()["checks"] == {"redis": "ok", "redis_config": "ok"}
        log = log_of(process)
    warning = next(line for line in log.splitlines() if "redis eviction policy" in line)
    assert "WARNING" in warning and "allkeys-lru" in warning and "OTP_REDIS_ALLOW_EVICTION" in warning


# -- the decision itself, in one place (otp.startup.sms_choice) --------------------------------------

TWILIO: dict[str, Any] = {
    "twilio_account_sid": "AC" + "0" * 32,
    "twilio_auth_token": "token",
    "twilio_from": "+15005550006",
    "public_url": "https://otp.example",
}


@pytest.mark.parametrize(
    ("given", "bind", "expected"),
    [
        ({}, "127.0.0.1", "console"),  # the pure development setup
        ({}, "::1", "console"),
        ({}, "localhost", "console"),
        ({}, None, "console"),  # `otp worker` beside a development `otp serve` (its socket and secret)
        ({"dev": True}, "0.0.0.0", "console"),  # noqa: S104
        ({"sms": "console", "redis_url": "redis://r/0", "secret_keys": (SECRET,)}, "0.0.0.0", "console"),  # noqa: S104
        ({**TWILIO, "redis_url": "redis://r/0", "secret_keys": (SECRET,)}, "0.0.0.0", "twilio"),  # noqa: S104
        (TWILIO, "127.0.0.1", "twilio"),  # Twilio wins in development too
        ({"redis_url": "redis://r/0"}, "127.0.0.1", "refused"),
        ({"secret_keys": (SECRET,)}, "127.0.0.1", "refused"),
        ({}, "0.0.0.0", "refused"),  # noqa: S104
        ({}, "10.1.2.3", "refused"),
        ({"sms": "twilio"}, "127.0.0.1", "refused"),
    ],
)
def test_the_console_sender_runs_only_when_chosen_or_in_the_pure_development_setup(
    given: dict[str, Any], bind: str | None, expected: str
) -> None:
    settings = Settings(**given)
    try:
        choice = startup.sms_choice(settings, dev_setup=startup.is_dev_setup(settings, bind=bind))
    except ConfigError:
        choice = "refused"
    assert choice == expected


def test_build_sender_never_falls_back_to_the_console_on_its_own(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="OTP_TWILIO_ACCOUNT_SID"):
        build_sender(make_settings(redis_url))
    assert build_sender(make_settings(redis_url, sms="console")).name == "console"


def test_an_unknown_otp_sms_is_refused_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match="OTP_SMS='email' must be one of: auto, twilio, console"):
        Settings.from_env({"OTP_SMS": "email"})


def test_the_console_warning_with_twilio_configured_says_to_unset_otp_sms(caplog: pytest.LogCaptureFixture) -> None:
    """Every Twilio setting given and OTP_SMS=console: naming the Twilio variables again would not
    help; OTP_SMS is what keeps the codes in the log."""
    twilio = Settings(
        sms="console",
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="token",
        twilio_from="+15005550006",
        public_url="https://otp.example.com",
    )
    with caplog.at_level(logging.WARNING, logger="otp"):
        assert startup.resolve_sms(twilio, dev_setup=False).sms == "console"
        startup.resolve_sms(Settings(sms="console"), dev_setup=False)
    with_twilio, without = (r.getMessage() for r in caplog.records)
    assert "unset OTP_SMS (or set it to auto or twilio) for real SMS" in with_twilio
    assert "OTP_TWILIO_ACCOUNT_SID" not in with_twilio
    assert "for real SMS set OTP_TWILIO_ACCOUNT_SID" in without
