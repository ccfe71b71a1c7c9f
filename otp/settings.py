"""Frozen settings read once from ``OTP_*`` environment variables and validated at startup."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from otp.core.line_types import FAIL_MODES, LookupConfig
from otp.core.line_types import MODES as LOOKUP_MODES
from otp.core.phone import DEFAULT_BLOCKED_TYPES, NUMBER_TYPES
from otp.core.policy import MODES, PolicyConfig
from otp.core.validators import parse_duration
from otp.errors import ConfigError

# The fraud and rate-limit defaults (PolicyConfig's fields, with the reasons for their values,
# are in otp/core/policy.py): OTP_* variables override them one by one.
POLICY_DEFAULTS = PolicyConfig(
    number_sends_per_hour=10,
    number_sends_per_day=20,
    resend_cooldown=10.0,
    failed_checks_per_hour=10,
    ip_sends_per_hour=20,
    key_sends_per_minute=1000,
    key_checks_per_minute=1200,
    allowed_countries=frozenset(),  # empty: every country
    blocked_number_types=DEFAULT_BLOCKED_TYPES,
    pumping_mode="enforce",
    prefix_daily_floor=20,
    prefix_hourly_floor=6,
    range_daily_floor=8,
    country_daily_floor=20,
    ip_pumping_daily_floor=3,
    pumping_ratio=0.5,
    block_base=300.0,
    block_max=43200.0,
    proven_share=0.5,
    unproven_country_floor=4,
    unproven_tenant_floor=100,
    unproven_share=1.0,
    known_good_days=30.0,
)

# OTP_LOG_FORMAT: one JSON object per line, or a readable line (otp/logs.py).
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# Twilio Lookup line types (otp.core.line_types): off by default, since each Lookup is paid
# (OTP_LOOKUP_PRICE: Twilio's list price for line_type_intelligence, USD) and the numbers
# phonenumbers can't decide are mostly the US's and Canada's. Fail open: a Lookup outage must not
# lock real users out (their numbers get phonenumbers' verdict, as with OTP_LOOKUP=off, and the
# audit record says so); 2 s bounds what a slow Lookup adds to a start. Answers are kept 30 days
# (no OTP_ variable): numbers rarely change type, and each Lookup is paid.
LOOKUP_DEFAULTS = LookupConfig(
    mode="off", fail_closed=False, timeout=2.0, price=Decimal("0.008"), cache_ttl=30 * 86400.0
)

SMS_MODES = ("auto", "twilio", "console")  # OTP_SMS


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    secret_keys: tuple[str, ...] = ()
    code_length: int = 6
    code_ttl: float = 600.0
    max_check_attempts: int = 5
    max_sends: int = 5
    codes_kept: int = 3
    retention: float = 86400.0
    token_max_age: float = 300.0
    # How long after an approval the same right code gets the same approval and token again, for
    # at most this many checks of it (no OTP_ variable: not a knob worth turning).
    approval_replay: float = 60.0
    approval_replays: int = 3
    host: str = "127.0.0.1"
    port: int = 8000
    default_region: str = "US"
    partitions: int = 16
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19456
    argon2_parallelism: int = 1
    data_dir: str = ".otp"
    worker: bool = True
    app_name: str = "otp"
    public_url: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: str = field(default="", repr=False)
    # GET /metrics answers only "Authorization: Bearer <this>"; empty: /metrics is off (404).
    metrics_token: str = field(default="", repr=False)
    # The sender pool (otp.core.senders: ADDRESS[:TYPE[:MPS[:COUNTRIES]]], comma-separated).
    twilio_from: str = ""
    # An expected wait for a sender's slot past this is announced (metric, audit event).
    sender_max_wait: float = 30.0
    twilio_messaging_service_sid: str = ""
    # The Messaging Services /v2 MessagingConfigurations may name; empty: any MG sid.
    twilio_messaging_services: frozenset[str] = frozenset()
    twilio_api_url: str = ""
    twilio_timeout: float = 10.0
    webotp_domain: str = ""
    delivery_poll_after: float = 300.0
    # A number that replied STOP (Twilio 21610) stays opted out this long (otp.core.optouts).
    opt_out_ttl: float = 365 * 86400.0
    sms_prices: str = ""
    # Daily spend budgets (otp.core.budget), in the price table's currency: everything, and per
    # destination country ("*" for every other one); None / empty: no budget. Days in this zone.
    budget_daily: Decimal | None = None
    budget_country: Mapping[str, Decimal] = field(default_factory=dict)
    budget_timezone: str = "UTC"
    sms_lease: float = 30.0
    sms_retry_base: float = 1.0
    audit_maxlen: int = 1_000_000
    # Webhooks (otp.core.urlguard): plain http and private/loopback targets only where allowed
    # (development, tests); events queued per tenant before the oldest is dropped.
    webhook_allow_private: bool = False
    webhook_queue_cap: int = 50_000
    webhook_retry_base: float = 2.0
    # Slow clients (otp/serving.py): the request head and the body each arrive within their
    # timeout or the connection is closed / the request answered 408; above max_connections open
    # connections uvicorn answers 503.
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 1000
    policy: PolicyConfig = POLICY_DEFAULTS
    lookup: LookupConfig = LOOKUP_DEFAULTS
    log_level: str = "INFO"
    dev_mode: bool = False
    # One of LOG_FORMATS; "" (unset): the shell picks, text at a terminal and JSON otherwise
    # (otp/logs.py), so the default depends on where stderr goes, not on this file.
    log_format: str = ""
    # Audit events older than this are trimmed as new ones are written (OTP_AUDIT_MAXLEN still caps
    # their number): lib.lua's audit().
    audit_retention: float = 30 * 86400.0
    # Which SMS sender a worker runs (otp.startup.sms_choice, the one place that decides): "auto"
    # is Twilio, or the console sender in the pure development setup only; "console" writes every
    # code to the log, on purpose.
    sms: str = "auto"
    # OTP_DEV=1: the development setup (embedded Redis, console SMS) may bind a non-loopback address.
    dev: bool = False
    # OTP_REDIS_ALLOW_EVICTION=1: a Redis that may evict keys is a warning instead of a refusal.
    redis_allow_eviction: bool = False

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        d = cls()  # the defaults: the dataclass fields above are their one home
        settings = cls(
            redis_url=reader.text("OTP_REDIS_URL") or None,
            secret_keys=reader.secret_keys("OTP_SECRET_KEY"),
            code_length=reader.integer("OTP_CODE_LENGTH", d.code_length, low=4, high=10),
            code_ttl=reader.duration("OTP_CODE_TTL", d.code_ttl, low=30.0, high=86400.0),
            max_check_attempts=reader.integer("OTP_MAX_CHECK_ATTEMPTS", d.max_check_attempts, low=1, high=100),
            max_sends=reader.integer("OTP_MAX_SENDS", d.max_sends, low=1, high=20),
            codes_kept=reader.integer("OTP_CODES_KEPT", d.codes_kept, low=1, high=10),
            retention=reader.duration("OTP_RETENTION", d.retention, low=60.0, high=90 * 86400.0),
            token_max_age=reader.duration("OTP_TOKEN_MAX_AGE", d.token_max_age, low=1.0, high=86400.0),
            host=reader.text("OTP_HOST") or d.host,
            port=reader.integer("OTP_PORT", d.port, low=0, high=65535),
            default_region=reader.region("OTP_DEFAULT_REGION", d.default_region),
            partitions=reader.power_of_two("OTP_PARTITIONS", d.partitions),
            argon2_time_cost=reader.integer("OTP_ARGON2_TIME_COST", d.argon2_time_cost, low=1, high=20),
            argon2_memory_kib=reader.integer("OTP_ARGON2_MEMORY_KIB", d.argon2_memory_kib, low=8, high=4 * 1024 * 1024),
            argon2_parallelism=reader.integer("OTP_ARGON2_PARALLELISM", d.argon2_parallelism, low=1, high=16),
            data_dir=reader.text("OTP_DATA_DIR") or d.data_dir,
            worker=reader.switch("OTP_WORKER", d.worker),
            app_name=reader.app_name("OTP_APP_NAME", d.app_name),
            public_url=(reader.text("OTP_PUBLIC_URL") or "").rstrip("/"),
            twilio_account_sid=reader.text("OTP_TWILIO_ACCOUNT_SID") or "",
            twilio_auth_token=reader.text("OTP_TWILIO_AUTH_TOKEN") or "",
            metrics_token=reader.text("OTP_METRICS_TOKEN") or "",
            twilio_from=reader.text("OTP_TWILIO_FROM") or "",
            sender_max_wait=reader.duration("OTP_SENDER_MAX_WAIT", d.sender_max_wait, low=0.0, high=86400.0),
            twilio_messaging_service_sid=reader.text("OTP_TWILIO_MESSAGING_SERVICE_SID") or "",
            twilio_messaging_services=reader.messaging_services("OTP_TWILIO_MESSAGING_SERVICES"),
            twilio_api_url=(reader.text("OTP_TWILIO_API_URL") or "").rstrip("/"),
            twilio_timeout=reader.duration("OTP_TWILIO_TIMEOUT", d.twilio_timeout, low=0.1, high=120.0),
            webotp_domain=reader.text("OTP_WEBOTP_DOMAIN") or "",
            delivery_poll_after=reader.duration(
                "OTP_DELIVERY_POLL_AFTER", d.delivery_poll_after, low=1.0, high=86400.0
            ),
            opt_out_ttl=reader.duration("OTP_OPT_OUT_TTL", d.opt_out_ttl, low=60.0, high=10 * 365 * 86400.0),
            sms_prices=reader.text("OTP_SMS_PRICES") or "",
            budget_daily=reader.budget_amount("OTP_BUDGET_DAILY"),
            budget_country=reader.budget_countries("OTP_BUDGET_COUNTRY"),
            budget_timezone=reader.timezone("OTP_BUDGET_TIMEZONE", d.budget_timezone),
            sms_lease=reader.duration("OTP_SMS_LEASE", d.sms_lease, low=0.5, high=3600.0),
            sms_retry_base=reader.duration("OTP_SMS_RETRY_BASE", d.sms_retry_base, low=0.01, high=600.0),
            audit_maxlen=reader.integer("OTP_AUDIT_MAXLEN", d.audit_maxlen, low=1000, high=1_000_000_000),
            webhook_allow_private=reader.switch("OTP_WEBHOOK_ALLOW_PRIVATE", d.webhook_allow_private),
            webhook_queue_cap=reader.integer("OTP_WEBHOOK_QUEUE_CAP", d.webhook_queue_cap, low=16, high=10_000_000),
            webhook_retry_base=reader.duration("OTP_WEBHOOK_RETRY_BASE", d.webhook_retry_base, low=0.01, high=600.0),
            header_timeout=reader.duration("OTP_HEADER_TIMEOUT", d.header_timeout, low=0.1, high=300.0),
            body_timeout=reader.duration("OTP_BODY_TIMEOUT", d.body_timeout, low=0.1, high=300.0),
            max_connections=reader.integer("OTP_MAX_CONNECTIONS", d.max_connections, low=1, high=1_000_000),
            policy=reader.policy(),
            lookup=reader.lookup(d.lookup),
            log_level=reader.choice("OTP_LOG_LEVEL", d.log_level.lower(), LOG_LEVELS).upper(),
            log_format=reader.choice("OTP_LOG_FORMAT", "json", LOG_FORMATS) if reader.text("OTP_LOG_FORMAT") else "",
            audit_retention=reader.duration(
                "OTP_AUDIT_RETENTION", d.audit_retention, low=3600.0, high=10 * 365 * 86400.0
            ),
            sms=reader.choice("OTP_SMS", d.sms, SMS_MODES),
            dev=reader.switch("OTP_DEV", d.dev),
            redis_allow_eviction=reader.switch("OTP_REDIS_ALLOW_EVICTION", d.redis_allow_eviction),
        )
        reader.twilio(settings)
        if settings.metrics_token and len(settings.metrics_token) < 32:
            reader.errors.append("OTP_METRICS_TOKEN is shorter than 32 characters; use `otp keys secret`")
        if settings.redis_url:
            from otp.storage.client import parse

            try:
                parse(settings.redis_url)
            except ConfigError as exc:
                reader.errors.append(str(exc))
        reader.raise_if_errors()
        return settings


def _span(seconds: float) -> str:
    """A range bound as the variables are written (``3650d``, not ``3.1536e+08s``): the largest
    unit that gives a whole number."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class _Reader:
    """Collects every bad variable so the operator sees them all at once."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []

    def text(self, name: str) -> str | None:
        value = self.env.get(name)
        return value.strip() if value is not None else None

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.errors.append(f"{name}={raw!r} is not an integer")
            return default
        if not low <= value <= high:
            self.errors.append(f"{name}={value} is out of range ({low}..{high})")
        return value

    def app_name(self, name: str, default: str) -> str:
        """The name in every SMS without a name of its own: the same rule as /v2's FriendlyName."""
        raw = self.text(name)
        if not raw:
            return default
        from otp.core.messages import validate_app_name
        from otp.errors import InvalidInput

        try:
            return validate_app_name(raw, name)
        except InvalidInput as exc:
            self.errors.append(f"{name}: {exc.message}")
            return default

    def duration(self, name: str, default: float, *, low: float, high: float) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = parse_duration(raw)
        except ValueError as exc:
            self.errors.append(f"{name}: {exc}")
            return default
        if not low <= value <= high:
            self.errors.append(f"{name}={raw!r} is out of range ({_span(low)}..{_span(high)})")
        return value

    def switch(self, name: str, default: bool) -> bool:
        raw = (self.text(name) or "").lower()
        if not raw:
            return default
        if raw in {"1", "on", "true", "yes"}:
            return True
        if raw in {"0", "off", "false", "no"}:
            return False
        self.errors.append(f"{name}={raw!r} must be on or off")
        return default

    def region(self, name: str, default: str) -> str:
        raw = (self.text(name) or default).upper()
        if not re.fullmatch(r"[A-Z]{2}", raw):
            self.errors.append(f"{name}={raw!r} must be a two-letter ISO country code")
        return raw

    def power_of_two(self, name: str, default: int) -> int:
        value = self.integer(name, default, low=1, high=256)
        if value & (value - 1):
            self.errors.append(f"{name}={value} must be a power of two (1, 2, 4 … 256)")
        return value

    def secret_keys(self, name: str) -> tuple[str, ...]:
        raw = self.text(name)
        if not raw:
            return ()
        keys = tuple(part.strip() for part in raw.split(",") if part.strip())
        for key in keys:
            if len(key) < 32:
                self.errors.append(f"{name} holds a key shorter than 32 characters; use `otp keys secret`")
                break
        return keys

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.errors.append(f"{name}={raw!r} is not a number")
            return default
        if not low <= value <= high:
            self.errors.append(f"{name}={value:g} is out of range ({low:g}..{high:g})")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = (self.text(name) or default).lower()
        if raw not in choices:
            self.errors.append(f"{name}={raw!r} must be one of: {', '.join(choices)}")
            return default
        return raw

    def budget_amount(self, name: str) -> Decimal | None:
        from otp.core.budget import parse_amount

        raw = self.text(name)
        if not raw:
            return None
        try:
            return parse_amount(raw, name)
        except ValueError as exc:
            self.errors.append(str(exc))
            return None

    def budget_countries(self, name: str) -> dict[str, Decimal]:
        from otp.core.budget import parse_country_budgets

        try:
            return parse_country_budgets(self.text(name) or "")
        except ValueError as exc:
            self.errors.append(str(exc))
            return {}

    def timezone(self, name: str, default: str) -> str:
        raw = self.text(name) or default
        try:
            ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError):
            self.errors.append(f"{name}={raw!r} is not an IANA time zone (e.g. UTC, Europe/London)")
            return default
        return raw

    def messaging_services(self, name: str) -> frozenset[str]:
        sids = frozenset(part.strip() for part in (self.text(name) or "").split(",") if part.strip())
        bad = sorted(s for s in sids if not re.fullmatch(r"MG[0-9a-fA-F]{32}", s))
        if bad:
            which = (
                f"{bad[0]} is not a Messaging Service SID"
                if len(bad) == 1
                else f"{', '.join(bad)} are not Messaging Service SIDs"
            )
            self.errors.append(f"{name}: {which} (MG and 32 hex digits)")
        return sids

    def countries(self, name: str) -> frozenset[str]:
        raw = (self.text(name) or "").upper()
        if raw in ("", "*"):
            return frozenset()
        codes = frozenset(part.strip() for part in raw.split(",") if part.strip())
        bad = sorted(c for c in codes if not re.fullmatch(r"[A-Z]{2}", c))
        if bad:
            self.errors.append(f"{name}: {', '.join(bad)} are not two-letter ISO country codes")
        return codes

    def number_types(self, name: str) -> frozenset[str]:
        raw = self.text(name)
        if raw is None:
            return POLICY_DEFAULTS.blocked_number_types
        types = frozenset(part.strip().lower() for part in raw.split(",") if part.strip())
        unknown = sorted(types - NUMBER_TYPES)
        if unknown:
            self.errors.append(
                f"{name}: unknown number type(s) {', '.join(unknown)}; known: {', '.join(sorted(NUMBER_TYPES))}"
            )
        return types

    def policy(self) -> PolicyConfig:
        d = POLICY_DEFAULTS
        return PolicyConfig(
            number_sends_per_hour=self.integer(
                "OTP_NUMBER_SENDS_PER_HOUR", d.number_sends_per_hour, low=1, high=10_000
            ),
            number_sends_per_day=self.integer("OTP_NUMBER_SENDS_PER_DAY", d.number_sends_per_day, low=1, high=100_000),
            resend_cooldown=self.duration("OTP_RESEND_COOLDOWN", d.resend_cooldown, low=0.0, high=3600.0),
            failed_checks_per_hour=self.integer(
                "OTP_FAILED_CHECKS_PER_HOUR", d.failed_checks_per_hour, low=1, high=100
            ),
            ip_sends_per_hour=self.integer("OTP_IP_SENDS_PER_HOUR", d.ip_sends_per_hour, low=1, high=1_000_000),
            key_sends_per_minute=self.integer(
                "OTP_KEY_SENDS_PER_MINUTE", d.key_sends_per_minute, low=1, high=10_000_000
            ),
            key_checks_per_minute=self.integer(
                "OTP_KEY_CHECKS_PER_MINUTE", d.key_checks_per_minute, low=1, high=10_000_000
            ),
            allowed_countries=self.countries("OTP_ALLOWED_COUNTRIES"),
            blocked_number_types=self.number_types("OTP_BLOCKED_NUMBER_TYPES"),
            pumping_mode=self.choice("OTP_PUMPING_MODE", d.pumping_mode, MODES),
            prefix_daily_floor=self.integer(
                "OTP_PUMPING_PREFIX_DAILY_FLOOR", d.prefix_daily_floor, low=1, high=10_000_000
            ),
            prefix_hourly_floor=self.integer(
                "OTP_PUMPING_PREFIX_HOURLY_FLOOR", d.prefix_hourly_floor, low=1, high=10_000_000
            ),
            range_daily_floor=self.integer(
                "OTP_PUMPING_RANGE_DAILY_FLOOR", d.range_daily_floor, low=1, high=10_000_000
            ),
            ip_pumping_daily_floor=self.integer(
                "OTP_PUMPING_IP_DAILY_FLOOR", d.ip_pumping_daily_floor, low=1, high=10_000_000
            ),
            proven_share=self.number("OTP_PUMPING_PROVEN_SHARE", d.proven_share, low=0.0, high=1.0),
            unproven_country_floor=self.integer(
                "OTP_PUMPING_UNPROVEN_COUNTRY_FLOOR", d.unproven_country_floor, low=0, high=10_000_000
            ),
            unproven_tenant_floor=self.integer(
                "OTP_PUMPING_UNPROVEN_TENANT_FLOOR", d.unproven_tenant_floor, low=0, high=10_000_000
            ),
            unproven_share=self.number("OTP_PUMPING_UNPROVEN_SHARE", d.unproven_share, low=0.0, high=100.0),
            known_good_days=self.duration(
                "OTP_PUMPING_KNOWN_GOOD", d.known_good_days * 86400, low=0.0, high=365 * 86400.0
            )
            / 86400,
            country_daily_floor=self.integer(
                "OTP_PUMPING_COUNTRY_DAILY_FLOOR", d.country_daily_floor, low=1, high=10_000_000
            ),
            pumping_ratio=self.number("OTP_PUMPING_RATIO", d.pumping_ratio, low=0.0, high=100.0),
            block_base=self.duration("OTP_PUMPING_BLOCK_BASE", d.block_base, low=1.0, high=86400.0),
            block_max=self.duration("OTP_PUMPING_BLOCK_MAX", d.block_max, low=1.0, high=7 * 86400.0),
        )

    def lookup(self, d: LookupConfig) -> LookupConfig:
        return LookupConfig(
            mode=self.choice("OTP_LOOKUP", d.mode, LOOKUP_MODES),
            fail_closed=self.choice("OTP_LOOKUP_FAIL", "closed" if d.fail_closed else "open", FAIL_MODES) == "closed",
            timeout=self.duration("OTP_LOOKUP_TIMEOUT", d.timeout, low=0.1, high=30.0),
            price=self.price("OTP_LOOKUP_PRICE", d.price),
            cache_ttl=d.cache_ttl,
        )

    def price(self, name: str, default: Decimal) -> Decimal:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = Decimal(raw)
        except InvalidOperation:
            self.errors.append(f"{name}={raw!r} is not a number")
            return default
        if not value.is_finite() or not 0 <= value <= 100:
            self.errors.append(f"{name}={raw!r} is not a price (0..100, in the price table's currency)")
            return default
        return value

    def twilio(self, settings: Settings) -> None:
        if settings.lookup.mode != "off" and not settings.twilio_configured:
            self.errors.append(
                f"OTP_LOOKUP={settings.lookup.mode} needs Twilio: set OTP_TWILIO_ACCOUNT_SID and OTP_TWILIO_AUTH_TOKEN"
            )
        if bool(settings.twilio_account_sid) != bool(settings.twilio_auth_token):
            self.errors.append("OTP_TWILIO_ACCOUNT_SID and OTP_TWILIO_AUTH_TOKEN must be set together")
        if settings.twilio_configured and not (settings.twilio_from or settings.twilio_messaging_service_sid):
            self.errors.append("OTP_TWILIO_FROM or OTP_TWILIO_MESSAGING_SERVICE_SID must be set to send through Twilio")
        if settings.twilio_from:
            from otp.core.senders import parse as parse_senders

            try:
                parse_senders(settings.twilio_from)
            except ValueError as exc:
                self.errors.append(f"OTP_TWILIO_FROM: {exc}")
            if settings.twilio_messaging_service_sid:
                # Which one would carry a send was ambiguous; the pool names each sender's part.
                self.errors.append(
                    "OTP_TWILIO_FROM and OTP_TWILIO_MESSAGING_SERVICE_SID are both set: list the Messaging Service "
                    "in OTP_TWILIO_FROM instead (MG…:messaging_service:<MPS>)"
                )
        if settings.twilio_configured and not settings.public_url:
            self.errors.append("OTP_PUBLIC_URL must be set with Twilio: it is where delivery reports come back")
        if settings.sms_prices:
            from otp.core.messages import parse_price_table

            try:
                parse_price_table(settings.sms_prices)
            except ValueError as exc:
                self.errors.append(f"OTP_SMS_PRICES: {exc}")

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(self.errors))
