"""Scripted outcomes: what a carrier does with a message to one recipient, as the status steps
the stub then plays (each step possibly announced by callbacks)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Final

OUTCOMES: Final = frozenset(
    {"delivered", "undelivered", "failed", "delayed", "duplicate", "out_of_order", "early", "silent", "reject"}
)
# Option names each outcome understands; anything else is a typo worth failing loudly on.
_OPTIONS: Final[dict[str, frozenset[str]]] = {
    "delivered": frozenset(),
    "undelivered": frozenset({"error_code"}),
    "failed": frozenset({"error_code"}),
    "delayed": frozenset({"delay"}),
    "duplicate": frozenset(),
    "out_of_order": frozenset(),
    "early": frozenset({"count", "error_code"}),
    "silent": frozenset(),
    "reject": frozenset({"code", "message"}),
}


@dataclass(frozen=True)
class Script:
    outcome: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def checked(cls, outcome: str, options: dict[str, Any]) -> Script:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}")
        unknown = set(options) - _OPTIONS[outcome]
        if unknown:
            raise TypeError(f"outcome {outcome!r} takes no option(s) {sorted(unknown)}")
        return cls(outcome, dict(options))


@dataclass(frozen=True)
class Step:
    """One status change; ``posts`` is how many identical callbacks announce it (0 = none)."""

    status: str
    error_code: int | None = None
    posts: int = 1


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    delay: float = 0.0
    early: int = 0  # steps played inside the create request, before its answer
    instant: bool = False  # steps applied at once (nothing is posted, so there is nothing to pace)


def plan(script: Script) -> Plan:
    outcome, options = script.outcome, script.options
    delivered = (Step("queued"), Step("sent"), Step("delivered"))
    if outcome == "undelivered":
        return Plan((Step("sent"), Step("undelivered", int(options.get("error_code", 30003)))))
    if outcome == "failed":
        return Plan((Step("failed", int(options.get("error_code", 30008))),))
    if outcome == "delayed":
        return Plan(delivered, delay=float(options.get("delay", 1.0)))
    if outcome == "duplicate":
        return Plan(tuple(dataclasses.replace(step, posts=2) for step in delivered))
    if outcome == "out_of_order":
        return Plan((delivered[0], delivered[2], delivered[1]))
    if outcome == "early":
        # With error_code the last step is undelivered (a STOP's 21610, say), still before the answer.
        code = options.get("error_code")
        steps = delivered if code is None else (*delivered[:2], Step("undelivered", int(code)))
        return Plan(steps, early=max(0, min(int(options.get("count", 2)), len(steps))))
    if outcome == "silent":
        return Plan(tuple(dataclasses.replace(step, posts=0) for step in delivered[1:]), instant=True)
    return Plan(delivered)
