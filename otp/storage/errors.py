"""What a Redis call can raise, in one place, for the callers that must tell storage failures apart
from their own (the CLI's exit code, /readyz, best-effort writes) without importing redis."""

from __future__ import annotations

from redis.exceptions import RedisError

from otp.errors import Unavailable
from otp.storage.store import UNAVAILABLE_ERRORS

# Transient failures (UNAVAILABLE_ERRORS), the typed operations' own translation of them
# (Unavailable), and whatever else Redis answers (OOM under noeviction, a wrong type…).
STORAGE_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, RedisError, Unavailable)
