"""otp's long-running processes run on uvloop, the loop the benchmark measured (otp/event_loop.py)."""

from __future__ import annotations

import asyncio

from otp import event_loop


def test_the_worker_loop_is_uvloop_and_hands_back_what_its_coroutine_returns() -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.run(which()).startswith("uvloop")
