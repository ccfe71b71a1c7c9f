"""The app's settings, from environment variables (README.md lists them)."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("login_app")

DEMO_PHONE = "+15017122666"
MIN_SECRET = 32


class ConfigError(Exception):
    """A setting is missing or wrong; the message names it."""


@dataclass(frozen=True)
class Config:
    otp_url: str
    otp_api_key: str
    otp_issuer: str  # the approval tokens' `iss`: otp's OTP_PUBLIC_URL, or "otp" when it has none
    secret: str  # signs the session cookie
    database: Path
    demo_phone: str
    host: str = "127.0.0.1"
    port: int = 8080
    secure_cookie: bool = False

    @property
    def audience(self) -> str:
        """The approval tokens' `aud`: the id of our API key, the ``<id>`` of ``otpk_<id>_<secret>``.
        Pinning it refuses a token otp issued to another app."""
        return self.otp_api_key.split("_")[1]

    @property
    def jwks_url(self) -> str:
        return self.otp_url + "/.well-known/jwks.json"


def _api_key(env: Mapping[str, str]) -> str:
    key = env.get("OTP_API_KEY", "").strip()
    if not key:
        # Beside a development `otp serve` started in this folder, as the other examples do.
        dev = Path(env.get("OTP_DATA_DIR", ".otp")) / "dev-api-key"
        key = dev.read_text().strip() if dev.exists() else ""
    if not key:
        raise ConfigError("set OTP_API_KEY (create one with: otp keys create login-app)")
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != "otpk" or not parts[1] or not parts[2]:
        raise ConfigError("OTP_API_KEY is not an otp API key (otpk_<id>_<secret>)")
    return key


def _secret(env: Mapping[str, str]) -> str:
    secret = env.get("LOGIN_APP_SECRET", "")
    if not secret:
        log.warning("LOGIN_APP_SECRET is not set: a random one signs sessions, so they end with this process")
        return secrets.token_urlsafe(MIN_SECRET)
    if len(secret) < MIN_SECRET:
        raise ConfigError(f"LOGIN_APP_SECRET must be at least {MIN_SECRET} characters")
    return secret


def from_env(env: Mapping[str, str] = os.environ) -> Config:
    url = env.get("OTP_URL", "http://127.0.0.1:8000").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"OTP_URL must be an http:// or https:// URL, not {url!r}")
    port = env.get("LOGIN_APP_PORT", "8080")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"LOGIN_APP_PORT must be a port number, not {port!r}")
    return Config(
        otp_url=url,
        otp_api_key=_api_key(env),
        otp_issuer=env.get("OTP_ISSUER", "otp"),
        secret=_secret(env),
        database=Path(env.get("LOGIN_APP_DB", "login_app.sqlite3")),
        demo_phone=env.get("LOGIN_APP_DEMO_PHONE", DEMO_PHONE),
        host=env.get("LOGIN_APP_HOST", "127.0.0.1"),
        port=int(port),
        secure_cookie=env.get("LOGIN_APP_SECURE_COOKIE", "") in ("1", "true", "yes"),
    )
