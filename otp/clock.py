"""Time as a dependency: the one place otp reads the wall clock.

Every rule that depends on "now" (expiries, token ages, hourly counters, job due times) takes it
from a `Clock` given by the shell, so tests move time instead of sleeping, and the Lua scripts get
the same "now" the Python side saw.  (Durations and timeouts are measured with `time.monotonic` or
`time.perf_counter` where they happen: those never become a stored time.)
"""

from __future__ import annotations

import time


class Clock:
    """Unix time in seconds (`now`) and milliseconds (`now_ms`); subclasses say where it comes from.

    Calling a clock is `now`: code that takes a plain ``() -> float`` (and the adapters that call
    ``verifier.clock()``) works with one unchanged."""

    def now(self) -> float:
        raise NotImplementedError

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def __call__(self) -> float:
        return self.now()


class SystemClock(Clock):
    """The wall clock: what a running service uses."""

    def now(self) -> float:
        return time.time()


class SettableClock(Clock):
    """A clock that reads what it was last set to: tests move it; it never moves on its own."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.at = start

    def now(self) -> float:
        return self.at

    def set(self, at: float) -> None:
        self.at = at

    def advance(self, seconds: float) -> None:
        self.at += seconds


SYSTEM = SystemClock()
