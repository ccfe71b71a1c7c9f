"""`otp doctor`: checks a deployment from the host it runs on and prints every finding (pass, warn
or fail) with its fix, as a table or (``--json``) an array; exits 1 on any failure.

It reads the settings as `otp serve` would, then asks Redis (version, persistence, eviction,
Cluster state: otp.core.deployment's rules; the clock) and Twilio (the account, each sender, the
Messaging Services: otp.core.twilio_checks) and judges the rest (otp.core.setup_checks). Nothing
it prints holds a secret, a token or a full phone number: each finding is scrubbed of the
configured secrets and masked before it is shown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import zip_longest
from urllib.parse import unquote, urlsplit

from otp import startup
from otp.clock import SYSTEM
from otp.core.deployment import Finding, Level, failures, redis_findings
from otp.core.phone import mask_numbers
from otp.core.setup_checks import (
    clock_findings,
    development_switch_findings,
    metrics_finding,
    public_url_finding,
    secret_findings,
    sms_finding,
)
from otp.core.terminal_text import clean as printable
from otp.errors import ConfigError
from otp.settings import Settings

WIDTH = 120  # the table fits a terminal this wide
CHECK_WIDTH = 32
RESULT_WIDTH = 6
GAP = "  "
HIDDEN = "…"  # what a secret that found its way into a finding's text is replaced by
MIN_SCRUBBED = 8
_VARIABLE = re.compile(r"OTP_[A-Z0-9_]+")


def command(args: argparse.Namespace) -> int:
    findings = asyncio.run(examine(os.environ))
    print(as_json(findings) if args.json else table(findings))
    return 1 if failures(findings) else 0


# -- what the setup is -------------------------------------------------------------------------


def production_looking(settings: Settings) -> bool:
    """Redis and a secret of its own: a development behaviour here is a failure (DESIGN §2).
    An explicit development flag (OTP_DEV) says otherwise."""
    declared_development = settings.dev
    return bool(settings.redis_url and settings.secret_keys) and not declared_development


def sms_sender(settings: Settings) -> str:
    """What the worker would send with ("twilio" or "console"), as `otp serve` and `otp worker`
    decide it (otp.startup.sms_choice, the one place); raises ConfigError where they would refuse
    to start instead."""
    return startup.sms_choice(settings, dev_setup=startup.is_dev_setup(settings, bind=settings.host))


def _sms(settings: Settings, production: bool) -> tuple[str, Finding]:
    """The sender and its finding; "" and a failure naming what is missing where there is none."""
    try:
        sender = sms_sender(settings)
    except ConfigError as exc:
        fix = f"set {', '.join(startup.missing_twilio(settings))}, or OTP_SMS=console for the console on purpose"
        return "", Finding("sms sender", Level.FAIL, str(exc), fix)
    return sender, sms_finding(sender, production=production)


def _settings_failures(error: ConfigError) -> list[Finding]:
    lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()] or [str(error)]
    found = []
    for line in lines:
        variable = _VARIABLE.search(line)
        where = variable.group() if variable else "the OTP_* variables"
        found.append(Finding("settings", Level.FAIL, line, f"fix {where} (README, Configuration)"))
    return found


def _settings_finding(settings: Settings, production: bool) -> Finding:
    if production:
        return Finding("settings", Level.PASS, "loaded; production-looking (OTP_REDIS_URL and OTP_SECRET_KEY set)")
    return Finding("settings", Level.PASS, "loaded; a development setup (OTP_REDIS_URL or OTP_SECRET_KEY not set)")


# -- the checks --------------------------------------------------------------------------------


async def examine(environ: Mapping[str, str]) -> list[Finding]:
    """Every finding, scrubbed of the configured secrets and with numbers masked."""
    try:
        settings = Settings.from_env(environ)
    except ConfigError as exc:
        return scrub(_settings_failures(exc), _env_secrets(environ))
    production = production_looking(settings)
    sender, sms = _sms(settings, production)
    found = [_settings_finding(settings, production), sms]
    found += secret_findings(
        settings.secret_keys,
        required=bool(settings.redis_url),
        elsewhere={"OTP_METRICS_TOKEN": settings.metrics_token, "OTP_TWILIO_AUTH_TOKEN": settings.twilio_auth_token},
    )
    found += await _redis(settings)
    found.append(await public_url_finding(settings.public_url, production=production))
    found.append(metrics_finding(settings.metrics_token))
    found += development_switch_findings(
        api_url=settings.twilio_api_url,
        webhook_allow_private=settings.webhook_allow_private,
        production=production,
    )
    if sender == "twilio" and settings.twilio_configured:
        found += await asyncio.to_thread(_twilio, settings)
    return scrub(found, _secrets(settings))


def _endpoint(url: str) -> str:
    """The Redis URL without its credentials."""
    scheme, _, rest = url.partition("://")
    if scheme == "unix":
        return f"unix://{rest.split('?')[0]}"
    return f"{scheme}://{rest.split('/')[0].rpartition('@')[2]}"


def _redis_password(url: str) -> str:
    try:
        return unquote(urlsplit(url).password or "")
    except ValueError:  # a URL urlsplit can't read ([ without ]): redis-py refuses it too
        return ""


async def _redis(settings: Settings) -> list[Finding]:
    from otp.storage import server_config
    from otp.storage.client import connect
    from otp.storage.errors import STORAGE_ERRORS

    if not settings.redis_url:
        return [
            Finding(
                "redis",
                Level.WARN,
                "OTP_REDIS_URL is not set: `otp serve` starts an embedded Redis (development only)",
                "set OTP_REDIS_URL to your Redis (noeviction, appendonly yes)",
            )
        ]
    where = _endpoint(settings.redis_url)
    # ValueError: a URL redis-py can't read ("redis://[bad").
    failing: tuple[type[BaseException], ...] = (*STORAGE_ERRORS, ValueError)
    client = None
    try:
        client = connect(settings.redis_url)
        configs = await server_config.read(client)
        offsets = await server_config.clock_offsets(client, SYSTEM)
    except failing as exc:
        return [
            Finding(
                "redis connection",
                Level.FAIL,
                f"cannot use Redis at {where}: {type(exc).__name__}: {str(exc)[:200]}",
                "check OTP_REDIS_URL (host, port, password, rediss:// for TLS) and that this host may reach it",
            )
        ]
    finally:
        if client is not None:
            await client.aclose()
    # OTP_REDIS_ALLOW_EVICTION: the operator accepts losing state.
    allow_eviction = settings.redis_allow_eviction
    answered = "1 primary" if len(configs) == 1 else f"{len(configs)} primaries"
    connected = Finding("redis connection", Level.PASS, f"{where}: {answered} answered")
    return [connected, *redis_findings(configs, allow_eviction=allow_eviction), *clock_findings(offsets)]


def _twilio(settings: Settings) -> list[Finding]:
    from otp.core.senders import parse as parse_senders
    from otp.core.twilio_checks import TwilioSetup, twilio_findings
    from otp.edge.twilio_account import TwilioAccount

    source = TwilioAccount(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        api_url=settings.twilio_api_url,
        timeout=settings.twilio_timeout,
    )
    setup = TwilioSetup(
        senders=parse_senders(settings.twilio_from) if settings.twilio_from else (),
        messaging_service_sid=settings.twilio_messaging_service_sid,
        allowed_services=settings.twilio_messaging_services,
    )
    return twilio_findings(source, setup)


# -- never a secret ----------------------------------------------------------------------------


def _secrets(settings: Settings) -> list[str]:
    return [
        *settings.secret_keys,
        settings.twilio_auth_token,
        settings.metrics_token,
        _redis_password(settings.redis_url or ""),
    ]


def _env_secrets(environ: Mapping[str, str]) -> list[str]:
    """The secrets as written, when the settings did not load."""
    found = [k.strip() for k in environ.get("OTP_SECRET_KEY", "").split(",")]
    found += [environ.get("OTP_TWILIO_AUTH_TOKEN", "").strip(), environ.get("OTP_METRICS_TOKEN", "").strip()]
    return [*found, _redis_password(environ.get("OTP_REDIS_URL", "").strip())]


def scrub(findings: Iterable[Finding], secrets: Sequence[str]) -> list[Finding]:
    # Longest first, so that a secret holding another is hidden whole. Short values are left: they
    # would blank out ordinary words ("short" in "shorter"), and no finding quotes a value anyway
    # (this is the second line of defence).
    hidden = sorted({s for s in secrets if len(s) >= MIN_SCRUBBED}, key=len, reverse=True)

    def clean(text: str) -> str:
        for secret in hidden:
            text = text.replace(secret, HIDDEN)
        return mask_numbers(text)

    return [replace(f, check=clean(f.check), detail=clean(f.detail), fix=clean(f.fix)) for f in findings]


# -- output ------------------------------------------------------------------------------------


def as_json(findings: Sequence[Finding]) -> str:
    return json.dumps(
        [{"check": f.check, "level": str(f.level), "detail": f.detail, "fix": f.fix} for f in findings], indent=2
    )


def summary(findings: Sequence[Finding]) -> str:
    counts = {level: sum(1 for f in findings if f.level is level) for level in Level}
    verdict = "fix the failures above" if counts[Level.FAIL] else "ready" if not counts[Level.WARN] else "no failures"
    return (
        f"{len(findings)} checks: {counts[Level.PASS]} pass, {counts[Level.WARN]} warn, "
        f"{counts[Level.FAIL]} fail — {verdict}"
    )


def table(findings: Sequence[Finding], width: int = WIDTH) -> str:
    """check | result | detail | fix, each cell wrapped in its column, within ``width``."""
    check_width = min(CHECK_WIDTH, max(len("check"), *(len(f.check) for f in findings)))
    rest = width - check_width - RESULT_WIDTH - 3 * len(GAP)
    detail_width = rest // 2
    widths = (check_width, RESULT_WIDTH, detail_width, rest - detail_width)
    lines = [_row(("check", "result", "detail", "fix"), widths), _row(tuple("-" * w for w in widths), widths)]
    for f in findings:
        lines.extend(_wrapped((f.check, str(f.level), f.detail, f.fix or "-"), widths))
    return "\n".join([*lines, "", summary(findings)])


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return GAP.join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()


def _wrapped(cells: Sequence[str], widths: Sequence[int]) -> list[str]:
    # A finding may quote Twilio's or Redis's error text: no escape sequence or control character
    # of it reaches the terminal (otp.core.terminal_text).
    columns = [
        textwrap.wrap(printable(cell), w, break_long_words=True, break_on_hyphens=False) or [""]
        for cell, w in zip(cells, widths, strict=True)
    ]
    return [_row([c or "" for c in line], widths) for line in zip_longest(*columns, fillvalue="")]
