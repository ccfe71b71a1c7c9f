"""What `otp serve` and `otp worker` decide before they serve or send: which SMS sender runs, whether
the development setup may run on the address given, and whether the Redis they were given keeps
the guarantees otp relies on (``otp.core.deployment`` judges; this refuses, or logs).

Fail safe (DESIGN §2): a setup that looks like production never falls back to a development
behaviour. The console sender, which writes every code to the log, runs only when asked for
(``OTP_SMS=console``) or in the pure development setup: no ``OTP_REDIS_URL``, no
``OTP_SECRET_KEY``, and a loopback bind (``OTP_DEV=1`` lifts the last condition, for a container
that binds 0.0.0.0). Anything else needs Twilio, or the process exits with status 2 naming what is
missing."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import time
from typing import Any

from otp.core.deployment import Finding, Level, failures, redis_findings
from otp.errors import ConfigError
from otp.settings import Settings
from otp.storage import server_config
from otp.storage.errors import REDIS_ERRORS
from otp.storage.transient import is_transient

log = logging.getLogger("otp")

CONSOLE = "console"
TWILIO = "twilio"
TWILIO_VARIABLES = "OTP_TWILIO_ACCOUNT_SID, OTP_TWILIO_AUTH_TOKEN, OTP_TWILIO_FROM, OTP_PUBLIC_URL"
# How long startup waits for Redis to answer (it may be starting beside otp), then gives up.
REDIS_WAIT = 30.0
REDIS_RETRY = 1.0
EXIT_REDIS_LOST = 1  # `otp serve` gave up on its embedded Redis


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_dev_setup(settings: Settings, *, bind: str | None) -> bool:
    """The pure development setup, judged on what the operator set (before `otp serve` fills in its
    embedded Redis and generated secret): no OTP_REDIS_URL, no OTP_SECRET_KEY and, for `otp serve`,
    a loopback bind or OTP_DEV=1. `otp worker` binds nothing (``bind=None``): beside a development
    `otp serve` it takes that one's socket and secret from the data folder."""
    if settings.redis_url or settings.secret_keys:
        return False
    return bind is None or is_loopback(bind) or settings.dev


def refuse_dev_setup_on_network(settings: Settings) -> None:
    """Without OTP_REDIS_URL `otp serve` runs its development setup; on an address other machines
    reach (the Docker image binds 0.0.0.0) only when OTP_DEV=1 says so."""
    if settings.redis_url or settings.dev or is_loopback(settings.host):
        return
    raise ConfigError(
        f"OTP_REDIS_URL is not set, so `otp serve` would run its development setup (an embedded Redis in "
        f"{settings.data_dir}/, a generated secret, SMS codes written to the log) on {settings.host}, which "
        f"other machines can reach. For production set OTP_REDIS_URL, OTP_SECRET_KEY and the Twilio settings "
        f"({TWILIO_VARIABLES}); to run the development setup on {settings.host} anyway, set OTP_DEV=1"
    )


def missing_twilio(settings: Settings) -> list[str]:
    """The variables Twilio sending still needs (Settings checks them as a set once any is given)."""
    missing = [
        name
        for name, value in (
            ("OTP_TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
            ("OTP_TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
        )
        if not value
    ]
    if not (settings.twilio_from or settings.twilio_messaging_service_sid):
        missing.append("OTP_TWILIO_FROM (or OTP_TWILIO_MESSAGING_SERVICE_SID)")
    if not settings.public_url:
        missing.append("OTP_PUBLIC_URL")
    return missing


def sms_choice(settings: Settings, *, dev_setup: bool = False) -> str:
    """``twilio`` or ``console``: the one place that decides which sender a worker runs (the shell
    records the answer in ``settings.sms``, so ``otp.app.build_sender`` asks again and gets it).
    Raises ConfigError naming what is missing rather than fall back to the console."""
    if settings.sms == CONSOLE:
        return CONSOLE
    if settings.twilio_configured:
        return TWILIO
    if settings.sms == "auto" and dev_setup:
        return CONSOLE
    missing = ", ".join(missing_twilio(settings))
    if settings.sms == TWILIO:
        raise ConfigError(f"OTP_SMS=twilio but Twilio is not configured: set {missing}")
    raise ConfigError(
        f"no SMS sender: Twilio is not configured (set {missing}). The console sender, which writes every "
        "code to the log, runs only in the development setup (no OTP_REDIS_URL, no OTP_SECRET_KEY, a "
        "loopback bind) or when chosen with OTP_SMS=console"
    )


def resolve_sms(settings: Settings, *, dev_setup: bool) -> Settings:
    """``settings`` with its sender decided (and said out loud when it is the console)."""
    choice = sms_choice(settings, dev_setup=dev_setup)
    if choice == CONSOLE:
        why = "OTP_SMS=console" if settings.sms == CONSOLE else "development setup, no Twilio settings"
        # With Twilio configured, OTP_SMS=console is the only thing between otp and real SMS.
        fix = (
            "unset OTP_SMS (or set it to auto or twilio) for real SMS"
            if settings.twilio_configured
            else f"for real SMS set {TWILIO_VARIABLES}"
        )
        log.warning(
            "SMS go to the console sender (%s): every code is written to this log and nothing is sent. "
            "DEVELOPMENT ONLY: %s",
            why,
            fix,
        )
    return settings.with_changes(sms=choice)


async def check_redis(client: Any, settings: Settings, *, wait: float = REDIS_WAIT) -> list[Finding]:
    """Every primary's configuration judged (``otp.core.deployment``): warnings are logged, and
    any failure raises ConfigError listing each with its fix, so the process does not start."""
    configs = await _configs(client, wait)
    findings = redis_findings(configs, allow_eviction=settings.redis_allow_eviction)
    for finding in findings:
        if finding.level is Level.WARN:
            log.warning("%s: %s (fix: %s)", finding.check, finding.detail, finding.fix)
    failed = failures(findings)
    if failed:
        lines = [f"{f.check}: {f.detail}\n    fix: {f.fix}" for f in failed]
        # Judged again with eviction allowed: fewer failures means an eviction policy is one.
        if len(failures(redis_findings(configs, allow_eviction=True))) < len(failed):
            lines.append(
                "to run anyway on a Redis that may evict keys (limits reset, approvals lost), set "
                "OTP_REDIS_ALLOW_EVICTION=1"
            )
        raise ConfigError("Redis does not keep otp's guarantees:\n  " + "\n  ".join(lines))
    return findings


async def check_redis_at(url: str, settings: Settings) -> list[Finding]:
    """``check_redis`` on a connection of its own (`otp serve`, before its app has one)."""
    from otp.storage.client import connect

    client = connect(url)
    try:
        return await check_redis(client, settings)
    finally:
        await client.aclose()


async def _configs(client: Any, wait: float) -> list[server_config.ServerConfig]:
    """``server_config.read``, waiting up to ``wait`` seconds for a Redis that doesn't answer yet."""
    deadline = time.monotonic() + wait  # a duration: monotonic
    while True:
        try:
            return await server_config.read(client)
        except REDIS_ERRORS as exc:
            if not is_transient(exc):
                raise ConfigError(f"could not read Redis's configuration (INFO): {exc}") from exc
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"Redis did not answer within {wait:g} s ({exc}): check OTP_REDIS_URL and that Redis is up"
                ) from exc
            log.warning("Redis does not answer yet (%s); trying again", exc)
            await asyncio.sleep(REDIS_RETRY)


class RedisWatch:
    """Between the embedded Redis's supervisor thread and `otp serve`'s main thread: when the
    supervisor gives up, the server shuts down (SIGTERM to itself, which uvicorn handles) and
    ``cmd_serve`` exits with EXIT_REDIS_LOST instead of serving 503s for ever."""

    def __init__(self) -> None:
        self.lost = ""

    def give_up(self, reason: str) -> None:
        self.lost = reason
        os.kill(os.getpid(), signal.SIGTERM)
