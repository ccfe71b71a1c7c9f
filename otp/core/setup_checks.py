"""The checks of a deployment's own settings that `otp doctor` prints beside Redis's and Twilio's:
the SMS sender, the secret keys, the clocks, the public URL, the metrics token, and the switches
meant for development only. Each returns findings (otp.core.deployment); none prints a secret.

"Production-looking" is the shell's word (OTP_REDIS_URL and OTP_SECRET_KEY set): there a
development behaviour is a failure, elsewhere a warning (DESIGN §2, "fail safe").
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping, Sequence
from itertools import pairwise
from urllib.parse import urlsplit

from otp.core import urlguard
from otp.core.deployment import Finding, Level
from otp.core.keyring import key_id
from otp.storage.server_config import ClockOffset

# Limits, expiries and blocks are stamped with the service's clock; Redis times keys out by its own.
SKEW_WARN = 1.0
SKEW_FAIL = 30.0
# Words that mark a key somebody typed or copied from an example; 5 letters or more, so that a
# random key holds one by chance about never.
PLACEHOLDERS = ("secret", "password", "passwd", "changeme", "example", "sample", "default", "dummy")
SEQUENCE_SHARE = 0.5  # at least this much of the key in runs like "abcd", "4321": typed, not drawn
MIN_RUN = 4
ROTATE = (
    "make one with `otp keys secret`; to rotate, put it first in OTP_SECRET_KEY and drop the weak one "
    "after OTP_CODE_TTL + OTP_TOKEN_MAX_AGE"
)


def sms_finding(sender: str, *, production: bool) -> Finding:
    """``sender``: "twilio" or "console" (what the worker would send with)."""
    check = "sms sender"
    if sender == "twilio":
        return Finding(check, Level.PASS, "Twilio, through the official SDK (the account is checked below)")
    if sender != "console":
        return Finding(check, Level.PASS, sender)
    detail = "the console sender: codes are written to the log, no SMS is sent (development only)"
    fix = "set OTP_TWILIO_ACCOUNT_SID, OTP_TWILIO_AUTH_TOKEN, OTP_TWILIO_FROM and OTP_PUBLIC_URL"
    return Finding(check, Level.FAIL if production else Level.WARN, detail, fix)


def _weakness(key: str) -> str | None:
    """Why a key is obviously guessable, if it is (never what it holds)."""
    if len(set(key)) == 1:
        return "one character repeated"
    for period in range(1, len(key) // 2 + 1):
        if len(key) % period == 0 and key[:period] * (len(key) // period) == key:
            return f"a {period}-character block repeated"
    if _in_sequences(key) >= SEQUENCE_SHARE * len(key):
        return "mostly runs of consecutive characters (abcd, 1234)"
    lowered = key.lower()
    if any(word in lowered for word in PLACEHOLDERS):
        return "holds a placeholder word (secret, password, example…)"
    return None


def _in_sequences(key: str) -> int:
    """How many characters stand in runs of MIN_RUN or more that step by one (up or down)."""
    total, run, step = 0, 1, 0
    for before, after in pairwise(key):
        delta = ord(after) - ord(before)
        if delta in (1, -1) and (run == 1 or delta == step):
            run, step = run + 1, delta
            continue
        total += run if run >= MIN_RUN else 0
        run, step = (2, delta) if delta in (1, -1) else (1, 0)
    return total + (run if run >= MIN_RUN else 0)


def secret_findings(keys: Sequence[str], *, required: bool, elsewhere: Mapping[str, str]) -> list[Finding]:
    """OTP_SECRET_KEY: present (``required``: `otp serve` and `otp worker` refuse to start without
    it, as with OTP_REDIS_URL set), not guessable, and not also used as another credential
    (``elsewhere``: variable → value, e.g. OTP_METRICS_TOKEN, which Prometheus holds)."""
    check = "secret keys"
    if not keys:
        return [
            Finding(
                check,
                Level.FAIL if required else Level.WARN,
                "OTP_SECRET_KEY is not set: `otp serve` and `otp worker` refuse to start with OTP_REDIS_URL set"
                if required
                else "OTP_SECRET_KEY is not set: `otp serve` makes a development secret in its data folder",
                "set OTP_SECRET_KEY (make one with `otp keys secret`) from your secret store",
            )
        ]
    problems, fix = [], ROTATE
    for index, key in enumerate(keys, start=1):
        name = f"key {index} (id {key_id(key)})"
        weakness = _weakness(key)
        if weakness:
            problems.append((Level.FAIL, f"{name}: {weakness}"))
        for variable, value in sorted(elsewhere.items()):
            if value and value == key:
                problems.append((Level.FAIL, f"{name} is also {variable}"))
                fix = f"give {variable} a value of its own; " + ROTATE
    if len(set(keys)) < len(keys):
        problems.append((Level.WARN, "the same key is listed twice"))
    if not problems:
        current = f"key 1 (id {key_id(keys[0])}) signs new codes"
        older = len(keys) - 1
        others = f", {older} older {'key' if older == 1 else 'keys'} still accepted" if older else ""
        count = "1 key" if len(keys) == 1 else f"{len(keys)} keys"
        return [Finding(check, Level.PASS, f"{count}, none obviously weak; {current}{others}")]
    level = Level.FAIL if any(lvl is Level.FAIL for lvl, _ in problems) else Level.WARN
    return [Finding(check, level, "; ".join(text for _, text in problems), fix)]


def clock_findings(offsets: Sequence[ClockOffset]) -> list[Finding]:
    """This host's clock against each Redis primary's (``TIME``)."""
    found = []
    for reading in offsets:
        # Half the round trip is how well the offset is known: judged on the part that is sure.
        skew = max(0.0, abs(reading.offset) - reading.round_trip / 2)
        side = "ahead of" if reading.offset > 0 else "behind"
        detail = f"Redis ({reading.node}) is {abs(reading.offset):.3f} s {side} this host"
        level = Level.FAIL if skew > SKEW_FAIL else Level.WARN if skew > SKEW_WARN else Level.PASS
        fix = (
            ""
            if level is Level.PASS
            else "otp stamps expiries, rate-limit windows and blocks with this host's clock while Redis times "
            "out keys by its own, so codes live longer or shorter than OTP_CODE_TTL and hosts disagree on "
            "limits: run NTP (chrony, systemd-timesyncd) on every otp and Redis host"
        )
        found.append(Finding(f"clock skew ({reading.node})", level, detail, fix))
    return found


def metrics_finding(token: str) -> Finding:
    if token:
        return Finding("metrics token", Level.PASS, "OTP_METRICS_TOKEN is set: GET /metrics needs it as a bearer token")
    return Finding(
        "metrics token",
        Level.WARN,
        "OTP_METRICS_TOKEN is not set: GET /metrics is off (404), nothing watches delivery rates or queues",
        "set OTP_METRICS_TOKEN (`otp keys secret`) and give it to Prometheus as its bearer token",
    )


def _host_kind(host: str) -> str | None:
    """ "loopback" / "private" for a host Twilio can never reach, if the name or address says so."""
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback:
        return "loopback"
    return None if urlguard.address_allowed(host, allow_private=False) else "private"


async def public_url_finding(
    url: str, *, production: bool, resolve: urlguard.Resolve = urlguard.system_resolve
) -> Finding:
    """OTP_PUBLIC_URL: where Twilio posts delivery reports, so an https address the internet reaches."""
    check = "public url"
    if not url:
        return Finding(
            check,
            Level.WARN,
            "OTP_PUBLIC_URL is not set: no delivery callbacks; sends are polled after OTP_DELIVERY_POLL_AFTER",
            "set OTP_PUBLIC_URL to the https address Twilio reaches this service at",
        )
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:  # a port out of range, a broken [IPv6] literal
        parts, host, port = urlsplit(""), "", None
    if parts.scheme not in ("https", "http") or not host:
        return Finding(check, Level.FAIL, "OTP_PUBLIC_URL is not an http(s) URL with a host", "set it to an https URL")
    shown = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    strict = Level.FAIL if production else Level.WARN
    problems = [] if parts.scheme == "https" else ["plain http: Twilio posts delivery reports in the clear"]
    kind = _host_kind(host)
    if kind:
        problems.append(f"a {kind} address Twilio cannot reach")
    if problems:
        return Finding(
            check,
            strict,
            f"{shown}: " + "; ".join(problems),
            "set OTP_PUBLIC_URL to the public https address of your load balancer or ingress",
        )
    return await _resolved_finding(check, shown, host, port or 443, resolve)


async def _resolved_finding(check: str, shown: str, host: str, port: int, resolve: urlguard.Resolve) -> Finding:
    try:
        addresses = await asyncio.wait_for(resolve(host, port), urlguard.RESOLVE_TIMEOUT)
    except (OSError, TimeoutError, UnicodeError, ValueError):
        addresses = []
    if not addresses:
        return Finding(
            check,
            Level.WARN,
            f"{shown}: the name does not resolve from this host",
            "check the DNS record: Twilio must resolve and reach it",
        )
    if not any(urlguard.address_allowed(a, allow_private=False) for a in addresses):
        return Finding(
            check,
            Level.WARN,
            f"{shown} resolves here to private addresses only",
            "fine with split-horizon DNS; otherwise publish it: Twilio must reach it from the internet",
        )
    return Finding(check, Level.PASS, f"{shown} (https, public)")


def development_switch_findings(*, api_url: str, webhook_allow_private: bool, production: bool) -> list[Finding]:
    """Switches for development and tests, in a production-looking setup."""
    if not production:
        return []
    found = []
    if api_url:
        parts = urlsplit(api_url)
        found.append(
            Finding(
                "twilio api url",
                Level.WARN,
                f"OTP_TWILIO_API_URL sends every Twilio call to {parts.scheme}://{parts.hostname or ''}"
                + (f":{parts.port}" if parts.port else "")
                + ", not Twilio",
                "unset OTP_TWILIO_API_URL unless it is a proxy you run on purpose",
            )
        )
    if webhook_allow_private:
        found.append(
            Finding(
                "webhook targets",
                Level.WARN,
                "OTP_WEBHOOK_ALLOW_PRIVATE is on: tenants' webhooks may target plain http and private addresses",
                "turn OTP_WEBHOOK_ALLOW_PRIVATE off outside development (it lets a tenant probe your network)",
            )
        )
    return found
