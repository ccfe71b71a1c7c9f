"""The HTTP side: one full verification (start → SMS delivered → check approved) and a run of many
at a fixed concurrency, with every loop bounded in count and time."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from otp.core.phone import parse

CODE = re.compile(r"(?<!\d)\d{4,10}(?!\d)")
# The SMS takes at least the worker's idle poll (100 ms) plus the stand-in's callback pacing
# (3 × 20 ms) to arrive, so the first look waits that long; then the gap grows, so a slow delivery
# under load costs a few more GETs, not dozens (each GET is otp CPU that counts per verification).
FIRST_POLL_S = 0.1
POLL_GAP_S = 0.03
POLL_GAP_GROWTH = 1.3
POLL_GAP_MAX_S = 0.2
MAX_POLLS = 200
DELIVERY_TIMEOUT_S = 20.0
# A run gives up early when this share of its verifications failed: something is broken.
MAX_ERROR_SHARE = 0.1
# The stand-in answers HTTP/1.0 (a connection per request) from a small listen backlog; reading the
# SMS from it is the phone's side, not otp's, so a refused or reset connection is simply retried.
STUB_TRIES = 3


class FlowError(RuntimeError):
    pass


def numbers(area_code: str, start: int = 0) -> Iterator[str]:
    """Distinct valid US numbers (+1 AAA 2000000 …): every verification gets its own number, so
    per-number resends and limits never come into play."""
    for n in itertools.count(start):
        if n >= 8_000_000:
            raise FlowError("ran out of numbers in the area code")
        yield f"+1{area_code}{2_000_000 + n:07d}"


def assert_valid_numbers(area_codes: Sequence[str]) -> None:
    for area in area_codes:
        for n in (0, 1_234_567, 7_999_999):
            parse(f"+1{area}{2_000_000 + n:07d}", default_region="US")  # raises InvalidInput if not


@dataclass
class Sample:
    start_ms: float
    check_ms: float
    polls: int


@dataclass
class FlowResult:
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0


class Driver:
    """Talks to otp like a client app would, and to the Twilio stand-in like the user's phone:
    the code is read from the message the stand-in accepted (its Messages API, by SID)."""

    def __init__(self, http: httpx.AsyncClient, api_key: str, stub_url: str, account_sid: str, auth_token: str):
        self.http = http
        self.auth = {"Authorization": f"Bearer {api_key}"}
        self.stub_url = stub_url
        self.account_sid = account_sid
        self.stub_auth = (account_sid, auth_token)

    def use_key(self, api_key: str) -> None:
        self.auth = {"Authorization": f"Bearer {api_key}"}

    async def start(self, base: str, to: str) -> tuple[str, float]:
        began = time.perf_counter()
        answer = await self.http.post(f"{base}/v1/verifications", json={"to": to}, headers=self.auth)
        took = (time.perf_counter() - began) * 1000
        if answer.status_code != 201:
            raise FlowError(f"start {answer.status_code}: {answer.text[:200]}")
        return str(answer.json()["id"]), took

    async def delivered(self, base: str, vid: str) -> tuple[str, int]:
        """Poll GET /v1/verifications/{id} until the last send is delivered; (message SID, polls)."""
        await asyncio.sleep(FIRST_POLL_S)
        deadline, gap = time.monotonic() + DELIVERY_TIMEOUT_S, POLL_GAP_S
        for polls in range(1, MAX_POLLS + 1):
            answer = await self.http.get(f"{base}/v1/verifications/{vid}", headers=self.auth)
            if answer.status_code != 200:
                raise FlowError(f"fetch {answer.status_code}: {answer.text[:200]}")
            attempt: dict[str, Any] = answer.json()["send_attempts"][-1]
            status = attempt["delivery"]["status"]
            if status == "delivered":
                return str(attempt["message_sid"]), polls
            if status in {"failed", "undelivered", "canceled"} or time.monotonic() > deadline:
                raise FlowError(f"delivery of {vid} ended {status!r} after {polls} polls")
            await asyncio.sleep(gap)
            gap = min(gap * POLL_GAP_GROWTH, POLL_GAP_MAX_S)
        raise FlowError(f"delivery of {vid} not seen after {MAX_POLLS} polls")

    async def code(self, message_sid: str) -> str:
        url = f"{self.stub_url}/2010-04-01/Accounts/{self.account_sid}/Messages/{message_sid}.json"
        for attempt in range(1, STUB_TRIES + 1):
            try:
                answer = await self.http.get(url, auth=self.stub_auth)
                break
            except httpx.TransportError:
                if attempt == STUB_TRIES:
                    raise
                await asyncio.sleep(0.05 * attempt)
        if answer.status_code != 200:
            raise FlowError(f"stand-in fetch {answer.status_code}: {answer.text[:200]}")
        found = CODE.search(str(answer.json()["body"]))
        if not found:
            raise FlowError(f"no code in the SMS body of {message_sid}")
        return found.group(0)

    async def check(self, base: str, vid: str, code: str) -> float:
        began = time.perf_counter()
        answer = await self.http.post(
            f"{base}/v1/verifications/check", json={"id": vid, "code": code}, headers=self.auth
        )
        took = (time.perf_counter() - began) * 1000
        if answer.status_code != 200 or answer.json().get("status") != "approved":
            raise FlowError(f"check {answer.status_code}: {answer.text[:200]}")
        return took

    async def prepare(self, base: str, to: str) -> tuple[str, str, int]:
        """Start and wait for the SMS: (verification id, code, polls), ready to be checked."""
        vid, _ = await self.start(base, to)
        sid, polls = await self.delivered(base, vid)
        return vid, await self.code(sid), polls

    async def verify(self, base: str, to: str) -> Sample:
        step = "start"
        try:
            vid, start_ms = await self.start(base, to)
            step = "delivery"
            sid, polls = await self.delivered(base, vid)
            step = "reading the SMS"
            code = await self.code(sid)
            step = "check"
            check_ms = await self.check(base, vid, code)
        except httpx.HTTPError as exc:
            raise FlowError(f"{step}: {type(exc).__name__} {exc}") from exc
        return Sample(start_ms, check_ms, polls)


async def run_flows(
    driver: Driver, bases: Sequence[str], phones: Iterator[str], *, count: int, concurrency: int, timeout_s: float
) -> FlowResult:
    """``count`` full verifications, ``concurrency`` at a time, spread round-robin over ``bases``."""
    result = FlowResult()
    indexes = itertools.count()
    max_errors = max(3, math.ceil(count * MAX_ERROR_SHARE))

    async def lane() -> None:
        while (i := next(indexes)) < count and len(result.errors) < max_errors:
            try:
                result.samples.append(await driver.verify(bases[i % len(bases)], next(phones)))
            except (FlowError, httpx.HTTPError, KeyError, ValueError) as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")

    began = time.perf_counter()
    lanes = asyncio.gather(*(lane() for _ in range(concurrency)))
    try:
        await asyncio.wait_for(lanes, timeout_s)
    except TimeoutError:
        result.errors.append(f"run stopped at its {timeout_s:.0f} s bound")
    except asyncio.CancelledError:
        # A caller stopping an endless run (flame.py): read the lanes' CancelledError, else asyncio
        # prints "_GatheringFuture exception was never retrieved" with a traceback at exit.
        if lanes.done() and not lanes.cancelled():
            lanes.exception()
        raise
    result.wall_s = time.perf_counter() - began
    return result


async def gather_bounded(jobs: Sequence[Any], concurrency: int, timeout_s: float) -> list[Any]:
    """Await coroutines ``concurrency`` at a time (all of them, or fail at the time bound)."""
    slots = asyncio.Semaphore(concurrency)

    async def one(job: Any) -> Any:
        async with slots:
            return await job

    return list(await asyncio.wait_for(asyncio.gather(*(one(j) for j in jobs)), timeout_s))


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
