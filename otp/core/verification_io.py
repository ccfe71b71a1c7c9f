"""What the Verifier takes and gives: who calls, the rules of a verification, a start's options,
and the results of a start and a check."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from otp.core.rate_limits import RateLimit
from otp.core.tokens import DEFAULT_ISSUER
from otp.model import Verification


@dataclass(frozen=True)
class Caller:
    """Who is asking: an API key's id, and whether it may see every tenant's verifications."""

    key_id: str
    admin: bool = False
    ip: str = ""
    account: str = ""  # the /v2 account owning the service ``key_id``: checks are limited per account

    @property
    def fraud_tenant(self) -> str:
        """Whose pumping scopes, budgets and IP and key limits a start spends: the /v2 account for
        all of its services, since an account may create services freely and each would otherwise
        bring fresh budgets; the API key on /v1."""
        return self.account or self.key_id


@dataclass(frozen=True)
class Rules:
    """A verification's limits and lifetimes: the shell builds them from its settings."""

    code_length: int
    code_ttl: float
    max_check_attempts: int
    max_sends: int
    codes_kept: int
    retention: float
    token_max_age: float
    # How long after an approval the same right code gets the same approval and token again.
    approval_replay: float
    approval_replays: int  # … at most this many checks of it, right or wrong
    # The approval tokens' ``iss``: OTP_PUBLIC_URL when set (otp.core.tokens).
    token_issuer: str = DEFAULT_ISSUER


@dataclass(frozen=True)
class StartOptions:
    """How one start differs from the defaults: ``code`` is a caller-chosen code (Twilio's
    CustomCode); ``code_length`` and ``app_name`` override the rules for one tenant;
    ``custom_limits`` are extra per-value send limits (Twilio's RateLimits): a name the service
    defines a Rate Limit for (``rate_limits``, by unique name) counts in that rate limit's buckets,
    any other gets the per-number hourly cap."""

    channel: str = "sms"
    locale: str = ""
    risk_check: bool = True
    code: str | None = None
    code_length: int | None = None
    app_name: str = ""
    # Android's SMS Retriever hash, put last in this send's SMS (Twilio's AppHash); "" for none.
    app_hash: str = ""
    # Caller metadata (Twilio's Tags), kept on the record; a resend with tags replaces them.
    tags: dict[str, str] = field(default_factory=dict)
    custom_limits: dict[str, str] = field(default_factory=dict)
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    # This send's SMS: a template of otp.core.messages.CATALOGUE ("" the verification one) with its
    # validated substitutions, and the Messaging Service to send it with ("" the operator's sender).
    template: str = ""
    substitutions: dict[str, str] = field(default_factory=dict)
    messaging_service_sid: str = ""


@dataclass(frozen=True)
class CheckResult:
    verification: Verification
    approved: bool
    token: str | None = None

    @property
    def status(self) -> str:
        return self.verification.status


@dataclass(frozen=True)
class StartResult:
    verification: Verification
    resent: bool
    flagged: tuple[str, ...] = ()  # pumping scopes over threshold in record_only mode
