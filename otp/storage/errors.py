"""What a Redis call can raise, in one place, for the callers that must tell storage failures apart
from their own (the CLI's exit code, /readyz, best-effort writes) without importing redis."""

from __future__ import annotations

from redis.exceptions import RedisError

from otp.errors import Unavailable
from otp.storage.transient import UNAVAILABLE_ERRORS

# Raised by a Redis call itself: transient failures (UNAVAILABLE_ERRORS) and whatever else Redis
# answers (OOM under noeviction, a wrong type…). The app's 503 handlers are registered for these.
REDIS_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, RedisError)
# Those, and the typed operations' own translation of a transient one (Unavailable).
STORAGE_ERRORS: tuple[type[BaseException], ...] = (*REDIS_ERRORS, Unavailable)
