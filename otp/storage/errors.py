"""What a storage failure looks like to the layers above, so they classify it without importing redis."""

from __future__ import annotations

from redis.exceptions import RedisError

from otp.storage.store import UNAVAILABLE_ERRORS

# Transient failures (UNAVAILABLE_ERRORS) and any other reply Redis refuses with: to a client both
# are "storage is unavailable", never its own fault (SlotNotCoveredError and OSError are not RedisErrors).
STORAGE_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, RedisError)
