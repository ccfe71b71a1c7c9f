"""Readiness (``GET /readyz``): can this process serve requests now? Every Redis primary answers
(on a Cluster each one, with the cluster ``ok``), and their configuration keeps otp's guarantees
(``otp.core.deployment``'s verdict, the same rules as at startup, so a Redis that someone turns
to ``allkeys-lru`` while otp runs makes it unready).

The verdict is kept ``ttl`` seconds: a probe every second must not run ``INFO`` on every primary
each time, nor a burst of concurrent probes when the verdict runs out (the first reads it, the
others wait for that read: /readyz is unauthenticated). Workers are not part of it: an API
process serves without them (their liveness is the ``otp_worker_last_seen_seconds`` gauge).

A verdict that turns to failed is logged once (WARNING, each failed check with its fix: the
operator learns why the load balancer took the process out), and its recovery too (INFO); a
probe that reads the same verdict again logs nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from otp.core.deployment import Finding, failures, redis_findings
from otp.storage import server_config
from otp.storage.errors import STORAGE_ERRORS

OK = "ok"
UNAVAILABLE = "unavailable"
UNKNOWN = "unknown"
VERDICT_TTL = 5.0  # seconds a configuration verdict is reused

log = logging.getLogger("otp.readiness")


class Readiness:
    def __init__(
        self,
        client: Any,
        *,
        allow_eviction: bool,
        clock: Callable[[], float],
        ttl: float = VERDICT_TTL,
    ) -> None:
        self.client = client
        self.allow_eviction = allow_eviction
        self.clock = clock
        self.ttl = ttl
        self._verdict: tuple[float, list[Finding]] | None = None  # (read at, failures)
        self._reading = asyncio.Lock()  # one configuration read at a time
        # The failed checks last logged; startup refused a bad configuration, so none to begin with.
        self._logged: frozenset[str] = frozenset()

    async def checks(self) -> dict[str, str]:
        """``{"redis": …, "redis_config": …}``; ready when both are ``ok``. A failed configuration
        names its checks (``failed: redis eviction policy (primary)``)."""
        try:
            await server_config.ping_primaries(self.client)
            failed = await self._failures()
        except STORAGE_ERRORS:
            return {"redis": UNAVAILABLE, "redis_config": UNKNOWN}
        config = OK if not failed else "failed: " + ", ".join(f.check for f in failed)
        return {"redis": OK, "redis_config": config}

    def _fresh(self) -> list[Finding] | None:
        now = self.clock()
        if self._verdict is not None and 0 <= now - self._verdict[0] < self.ttl:
            return self._verdict[1]
        return None

    async def _failures(self) -> list[Finding]:
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        async with self._reading:
            fresh = self._fresh()  # read by the probe this one waited for
            if fresh is not None:
                return fresh
            configs = await server_config.read(self.client)
            failed = failures(redis_findings(configs, allow_eviction=self.allow_eviction))
            self._verdict = (self.clock(), failed)
            self._log_change(failed)
            return failed

    def _log_change(self, failed: list[Finding]) -> None:
        """Says so when the set of failed checks changes: a WARNING for a new failure, an INFO when
        none is left."""
        now = frozenset(f.check for f in failed)
        if now == self._logged:
            return
        if now:
            log.warning(
                "Redis configuration no longer keeps otp's guarantees, so /readyz answers 503: %s",
                "; ".join(f"{f.check}: {f.detail} (fix: {f.fix})" for f in failed),
            )
        else:
            log.info("Redis configuration keeps otp's guarantees again: /readyz is ready")
        self._logged = now
