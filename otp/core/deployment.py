"""The checks a deployment must pass, as findings with the fix for each: read by `otp serve` and
`otp worker` at startup (a fail stops them) and by `otp doctor` (which prints them all).

The Redis rules are DESIGN §4's: a primary that may evict keys forgets verifications, counters and
blocks (limits reset, approvals lost), so anything but ``noeviction`` fails; without AOF a restart
loses what was written since the last snapshot, so "nothing lost" is false, which is a warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from otp.storage.server_config import ServerConfig

MIN_REDIS = (6, 2)  # XADD MINID, GETDEL, ZRANGE BYSCORE: the scripts need them
REQUIRED_POLICY = "noeviction"
DURABLE_FSYNC = ("everysec", "always")


class Level(StrEnum):
    PASS = "pass"  # noqa: S105  (a check outcome, not a password)
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    check: str  # what was checked, e.g. "redis eviction policy (primary)"
    level: Level
    detail: str  # what was found
    fix: str = ""  # what to do about it ("" on a pass)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def redis_findings(configs: Sequence[ServerConfig], *, allow_eviction: bool = False) -> list[Finding]:
    """One finding per rule per primary. ``allow_eviction`` (OTP_REDIS_ALLOW_EVICTION) turns the
    eviction failure into a warning, for an operator who accepts losing state."""
    found: list[Finding] = []
    for config in configs:
        where = f" ({config.node})"
        found.append(_version_finding(config, where))
        found.append(_eviction_finding(config, where, allow_eviction))
        found.append(_persistence_finding(config, where))
        if config.cluster_state:
            ok = config.cluster_state == "ok"
            found.append(
                Finding(
                    "redis cluster state" + where,
                    Level.PASS if ok else Level.FAIL,
                    f"cluster_state:{config.cluster_state}",
                    "" if ok else "every slot needs a primary: check `redis-cli cluster info` and the failed nodes",
                )
            )
    return found


def _version_finding(config: ServerConfig, where: str) -> Finding:
    ok = _version(config.version) >= MIN_REDIS
    wanted = ".".join(map(str, MIN_REDIS))
    return Finding(
        "redis version" + where,
        Level.PASS if ok else Level.FAIL,
        f"Redis {config.version or 'unknown'}",
        "" if ok else f"otp needs Redis {wanted} or newer",
    )


def _eviction_finding(config: ServerConfig, where: str, allow_eviction: bool) -> Finding:
    policy = config.maxmemory_policy or "unknown"
    if policy == REQUIRED_POLICY:
        return Finding("redis eviction policy" + where, Level.PASS, f"maxmemory-policy {policy}")
    return Finding(
        "redis eviction policy" + where,
        Level.WARN if allow_eviction else Level.FAIL,
        f"maxmemory-policy {policy}: Redis may evict verifications, counters and blocks "
        "(limits reset, approvals lost)" + (" — allowed by OTP_REDIS_ALLOW_EVICTION" if allow_eviction else ""),
        f"set `maxmemory-policy {REQUIRED_POLICY}` in redis.conf (or CONFIG SET) and size maxmemory for the load",
    )


def _persistence_finding(config: ServerConfig, where: str) -> Finding:
    check = "redis persistence" + where
    if not config.aof_enabled:
        return Finding(
            check,
            Level.WARN,
            "AOF is off: a restart loses what was written since the last snapshot (queued SMS, approvals)",
            "set `appendonly yes` and `appendfsync everysec` in redis.conf",
        )
    if config.appendfsync and config.appendfsync not in DURABLE_FSYNC:
        return Finding(
            check,
            Level.WARN,
            f"AOF on with appendfsync {config.appendfsync}: the OS decides when writes reach the disk",
            "set `appendfsync everysec`",
        )
    return Finding(check, Level.PASS, f"AOF on (appendfsync {config.appendfsync or 'not readable'})")


def failures(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.level is Level.FAIL]
