"""Service Rate Limits and their Buckets on /v2, driven by the official `twilio` SDK against a
served otp and held to Twilio's OpenAPI document (``test_twilio_compat``'s contract): every call of
both resources, Twilio's codes for their refusals and caps, one account's rate limits out of every
other's reach, and the buckets enforced on starts, with the injected clock standing in for time."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import Clock
from test_twilio_compat import RELAXED, V2, new_number, retry_after, serve, service
from twilio.base.exceptions import TwilioException, TwilioRestException

from otp.core import rate_limits
from otp.storage import keys as keyspace

RK_SID = re.compile(r"RK[0-9a-f]{32}")
BL_SID = re.compile(r"BL[0-9a-f]{32}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def v2(redis_url: str, clock: Clock) -> Iterator[V2]:
    # 3 an hour: what a RateLimits value with no Rate Limit of its name gets.
    with serve(redis_url, limits={**RELAXED, "number_sends_per_hour": 3}, clock=clock) as live:
        yield live


def _code(call: Callable[[], Any]) -> tuple[int, int, str]:
    """(status, code, message) of a refused SDK call (a list's page raises a plain TwilioException)."""
    with pytest.raises(TwilioException) as caught:
        call()
    error = caught.value
    if isinstance(error, TwilioRestException):
        return error.status, error.code, error.msg
    body = json.loads(error.args[1].text)
    return int(body["status"]), int(body["code"]), str(body["message"])


def _redis(url: str, read: Callable[[aioredis.Redis], Any]) -> Any:
    async def run() -> Any:
        client = aioredis.Redis.from_url(url)
        try:
            return await read(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


# -- the resources --------------------------------------------------------------------------------


def test_rate_limits_are_created_listed_fetched_updated_and_deleted(v2: V2) -> None:
    svc = v2.client().verify.v2.services(service(v2.client()).sid)
    first = svc.rate_limits.create(unique_name="end_user_ip", description="Per end-user IP")
    assert RK_SID.fullmatch(first.sid) and (first.unique_name, first.description) == ("end_user_ip", "Per end-user IP")
    assert (first.service_sid, first.account_sid) == (svc._solution["sid"], v2.account[0])
    assert first.url == f"{v2.base}/v2/Services/{first.service_sid}/RateLimits/{first.sid}"
    assert first.links == {"buckets": f"{first.url}/Buckets"}
    second = svc.rate_limits.create(unique_name="user.id")
    assert second.description is None

    # One per page: the SDK follows next_page_url back to us.
    assert [r.sid for r in svc.rate_limits.list(page_size=1)] == [first.sid, second.sid]
    fetched = svc.rate_limits(first.sid).fetch()
    assert (fetched.sid, fetched.unique_name, fetched.date_created) == (first.sid, "end_user_ip", first.date_created)
    # As Twilio allows, the unique name addresses it too.
    assert svc.rate_limits("user.id").fetch().sid == second.sid

    updated = svc.rate_limits(second.sid).update(description="Per user")
    assert (updated.unique_name, updated.description) == ("user.id", "Per user")
    assert svc.rate_limits(second.sid).fetch().description == "Per user"

    assert svc.rate_limits(first.sid).delete() is True
    assert _code(lambda: svc.rate_limits(first.sid).fetch())[:2] == (404, 20404)
    assert _code(lambda: svc.rate_limits(first.sid).delete())[:2] == (404, 20404)
    assert [r.sid for r in svc.rate_limits.list()] == [second.sid]
    # Its name is free again.
    assert svc.rate_limits.create(unique_name="end_user_ip").sid != first.sid


def test_buckets_are_created_listed_fetched_updated_and_deleted(v2: V2) -> None:
    svc = v2.client().verify.v2.services(service(v2.client()).sid)
    limit = svc.rate_limits.create(unique_name="user_id")
    buckets = svc.rate_limits(limit.sid).buckets
    minute = buckets.create(max=5, interval=60)
    assert BL_SID.fullmatch(minute.sid) and (minute.max, minute.interval) == (5, 60)
    assert (minute.rate_limit_sid, minute.service_sid, minute.account_sid) == (
        limit.sid,
        limit.service_sid,
        v2.account[0],
    )
    assert minute.url == f"{limit.url}/Buckets/{minute.sid}"
    hour = buckets.create(max=20, interval=3600)

    assert [b.sid for b in buckets.list(page_size=1)] == [minute.sid, hour.sid]
    assert (buckets(hour.sid).fetch().max, buckets(hour.sid).fetch().interval) == (20, 3600)
    changed = buckets(hour.sid).update(max=30)
    assert (changed.max, changed.interval) == (30, 3600)
    moved = buckets(hour.sid).update(interval=86_400)
    assert (moved.max, moved.interval) == (30, 86_400)

    assert buckets(minute.sid).delete() is True
    assert _code(lambda: buckets(minute.sid).fetch())[:2] == (404, 20404)
    assert _code(lambda: buckets(minute.sid).update(max=1))[:2] == (404, 20404)
    assert _code(lambda: buckets(minute.sid).delete())[:2] == (404, 20404)
    assert [b.sid for b in buckets.list()] == [hour.sid]
    # A bucket sid under another rate limit of the service is not there.
    other = svc.rate_limits.create(unique_name="ip")
    assert _code(lambda: svc.rate_limits(other.sid).buckets(hour.sid).fetch())[:2] == (404, 20404)


@pytest.mark.parametrize(
    ("params", "status", "code", "field"),
    [
        ({"unique_name": ""}, 400, 60200, "UniqueName"),
        ({"unique_name": "user id"}, 400, 60209, "UniqueName"),
        ({"unique_name": "user\n"}, 400, 60209, "UniqueName"),
        ({"unique_name": "x" * 65}, 400, 60209, "UniqueName"),
        ({"unique_name": "ok", "description": "d" * 257}, 400, 60200, "Description"),
    ],
)
def test_rate_limit_parameters_are_refused_naming_them(
    v2: V2, params: dict[str, str], status: int, code: int, field: str
) -> None:
    svc = v2.client().verify.v2.services(service(v2.client()).sid)
    got_status, got_code, message = _code(lambda: svc.rate_limits.create(**params))
    assert (got_status, got_code) == (status, code)
    assert field in message


def test_a_unique_name_is_taken_once_per_service(v2: V2) -> None:
    client = v2.client()
    svc = client.verify.v2.services(service(client).sid)
    svc.rate_limits.create(unique_name="user_id")
    status, code, message = _code(lambda: svc.rate_limits.create(unique_name="user_id"))
    assert (status, code) == (400, 60208) and "UniqueName" in message
    # Another service of the account has names of its own.
    assert client.verify.v2.services(service(client).sid).rate_limits.create(unique_name="user_id").sid


def test_concurrent_creates_of_one_name_make_one_rate_limit(v2: V2) -> None:
    svc = v2.client().verify.v2.services(service(v2.client()).sid)

    def create(_: int) -> int:
        try:
            svc.rate_limits.create(unique_name="user_id")
        except TwilioRestException as exc:
            return int(exc.code)
        return 201

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = sorted(pool.map(create, range(16)))
    assert outcomes == [201] + [60208] * 15
    assert [r.unique_name for r in svc.rate_limits.list()] == ["user_id"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"max": 0, "interval": 60}, "Max"),
        ({"max": rate_limits.MAX_COUNT + 1, "interval": 60}, "Max"),
        ({"max": 5, "interval": 0}, "Interval"),
        ({"max": 5, "interval": rate_limits.MAX_INTERVAL + 1}, "Interval"),
        ({"max": "five", "interval": 60}, "Max"),
    ],
)
def test_bucket_parameters_are_60200_naming_them(v2: V2, params: dict[str, Any], field: str) -> None:
    svc = v2.client().verify.v2.services(service(v2.client()).sid)
    buckets = svc.rate_limits(svc.rate_limits.create(unique_name="u").sid).buckets
    status, code, message = _code(lambda: buckets.create(**params))
    assert (status, code) == (400, 60200) and f"`{field}`" in message


def test_a_missing_bucket_parameter_is_60200_naming_it(v2: V2) -> None:
    svc = v2.client().verify.v2.services(service(v2.client()).sid)
    limit = svc.rate_limits.create(unique_name="u")
    path = f"/v2/Services/{limit.service_sid}/RateLimits/{limit.sid}/Buckets"
    answer = v2.raw("POST", path, auth=v2.account, data={"Max": "5"})
    assert (answer.status_code, answer.json()["code"]) == (400, 60200) and "`Interval`" in answer.json()["message"]


def test_one_bucket_per_interval(v2: V2) -> None:
    svc = v2.client().verify.v2.services(service(v2.client()).sid)
    buckets = svc.rate_limits(svc.rate_limits.create(unique_name="u").sid).buckets
    buckets.create(max=5, interval=60)
    hour = buckets.create(max=10, interval=3600)
    assert _code(lambda: buckets.create(max=3, interval=60))[:2] == (400, 60211)
    assert _code(lambda: buckets(hour.sid).update(interval=60))[:2] == (400, 60211)
    assert buckets(hour.sid).update(interval=3600, max=11).max == 11  # its own interval is no clash


def test_a_service_holds_at_most_its_cap_of_rate_limits_and_buckets(v2: V2) -> None:
    svc = v2.client().verify.v2.services(service(v2.client()).sid)
    for i in range(rate_limits.MAX_RATE_LIMITS):
        svc.rate_limits.create(unique_name=f"limit{i}")
    assert _code(lambda: svc.rate_limits.create(unique_name="one_more"))[:2] == (400, 60207)
    assert len(svc.rate_limits.list(page_size=1000)) == rate_limits.MAX_RATE_LIMITS
    svc.rate_limits("limit0").delete()
    limit = svc.rate_limits.create(unique_name="one_more")

    buckets = svc.rate_limits(limit.sid).buckets
    for i in range(rate_limits.MAX_BUCKETS):
        buckets.create(max=5, interval=60 * (i + 1))
    assert _code(lambda: buckets.create(max=5, interval=7))[:2] == (400, 60210)


def test_another_account_can_neither_see_nor_change_your_rate_limits(v2: V2) -> None:
    mine = v2.client().verify.v2.services(service(v2.client()).sid)
    limit = mine.rate_limits.create(unique_name="user_id")
    bucket = mine.rate_limits(limit.sid).buckets.create(max=2, interval=60)

    theirs = v2.client(v2.other).verify.v2.services(limit.service_sid)
    for call in (
        lambda: theirs.rate_limits.list(),
        lambda: theirs.rate_limits.create(unique_name="mine_now"),
        lambda: theirs.rate_limits(limit.sid).fetch(),
        lambda: theirs.rate_limits("user_id").fetch(),
        lambda: theirs.rate_limits(limit.sid).update(description="x"),
        lambda: theirs.rate_limits(limit.sid).delete(),
        lambda: theirs.rate_limits(limit.sid).buckets.list(),
        lambda: theirs.rate_limits(limit.sid).buckets.create(max=1000, interval=60),
        lambda: theirs.rate_limits(limit.sid).buckets(bucket.sid).fetch(),
        lambda: theirs.rate_limits(limit.sid).buckets(bucket.sid).update(max=1000),
        lambda: theirs.rate_limits(limit.sid).buckets(bucket.sid).delete(),
    ):
        assert _code(call)[:2] == (404, 20404)
    # Nor through a service of their own: a rate limit belongs to one service.
    own = v2.client(v2.other).verify.v2.services(service(v2.client(v2.other)).sid)
    assert _code(lambda: own.rate_limits(limit.sid).fetch())[:2] == (404, 20404)
    assert _code(lambda: own.rate_limits(limit.sid).delete())[:2] == (404, 20404)

    kept = mine.rate_limits(limit.sid).fetch()
    assert (kept.unique_name, kept.description) == ("user_id", None)
    assert [(b.sid, b.max) for b in mine.rate_limits(limit.sid).buckets.list()] == [(bucket.sid, 2)]
    # The other account's RateLimits of that name count nothing in your buckets (Max 2).
    for _ in range(3):
        own.verifications.create(to=new_number(), channel="sms", rate_limits={"user_id": "u-1"})
    for _ in range(2):
        mine.verifications.create(to=new_number(), channel="sms", rate_limits={"user_id": "u-1"})


def test_deleting_a_service_deletes_its_rate_limits_and_buckets(v2: V2, redis_url: str) -> None:
    client = v2.client()
    sid = service(client).sid
    limit = client.verify.v2.services(sid).rate_limits.create(unique_name="user_id")
    client.verify.v2.services(sid).rate_limits(limit.sid).buckets.create(max=2, interval=60)
    assert _redis(redis_url, lambda r: r.exists(keyspace.v2_rate_limits(sid))) == 1
    assert client.verify.v2.services(sid).delete() is True
    assert _redis(redis_url, lambda r: r.exists(keyspace.v2_rate_limits(sid))) == 0
    assert _code(lambda: client.verify.v2.services(sid).rate_limits(limit.sid).fetch())[:2] == (404, 20404)


# -- enforced on starts ---------------------------------------------------------------------------


class Starter:
    """Starts to a new number each time, by one service, with the RateLimits given."""

    def __init__(self, v2: V2) -> None:
        self.client = v2.client()
        self.svc = self.client.verify.v2.services(service(self.client).sid)

    def __call__(self, **limits: str) -> Any:
        return self.svc.verifications.create(to=new_number(), channel="sms", rate_limits=limits)

    def retry_after(self) -> int:
        return retry_after(self.client)


def _starter(v2: V2) -> tuple[Any, Starter]:
    start = Starter(v2)
    return start.svc, start


def test_a_full_bucket_refuses_that_value_until_its_interval_has_passed(v2: V2, clock: Clock) -> None:
    svc, start = _starter(v2)
    limit = svc.rate_limits.create(unique_name="user_id")
    svc.rate_limits(limit.sid).buckets.create(max=2, interval=60)
    start(user_id="alice")
    clock.advance(10)
    start(user_id="alice")
    status, code, message = _code(lambda: start(user_id="alice"))
    assert (status, code) == (429, 20429) and "RateLimits" in message
    assert start.retry_after() == 50  # the first send leaves the minute 50 s from now
    assert start(user_id="bob").status == "pending"  # another value has buckets of its own
    clock.advance(50)
    assert start(user_id="alice").status == "pending"  # the first one left the window
    assert _code(lambda: start(user_id="alice"))[:2] == (429, 20429)
    clock.advance(10)
    assert start(user_id="alice").status == "pending"


def test_every_bucket_counts_and_a_refused_start_counts_in_none(v2: V2, clock: Clock) -> None:
    svc, start = _starter(v2)
    buckets = svc.rate_limits(svc.rate_limits.create(unique_name="user_id").sid).buckets
    buckets.create(max=2, interval=60)
    buckets.create(max=3, interval=3600)
    start(user_id="alice")
    start(user_id="alice")
    # Refused by the minute: had it counted in the hour too, the hour would be full below.
    assert _code(lambda: start(user_id="alice"))[:2] == (429, 20429)
    clock.advance(60)
    assert start(user_id="alice").status == "pending"  # the hour's third
    clock.advance(60)
    # The minute is empty now; the hour refuses, until its first send leaves it.
    assert _code(lambda: start(user_id="alice"))[:2] == (429, 20429)
    assert start.retry_after() == 3600 - 120
    clock.advance(3600 - 120)
    assert start(user_id="alice").status == "pending"


def test_a_start_another_limit_refuses_counts_in_no_bucket(v2: V2) -> None:
    svc, start = _starter(v2)
    user = svc.rate_limits(svc.rate_limits.create(unique_name="user_id").sid).buckets
    user.create(max=2, interval=600)
    ip = svc.rate_limits(svc.rate_limits.create(unique_name="ip").sid).buckets
    ip.create(max=1, interval=600)
    start(user_id="alice", ip="198.51.100.7")
    # The ip bucket refuses; the user bucket must not keep this one.
    for _ in range(3):
        assert _code(lambda: start(user_id="alice", ip="198.51.100.7"))[:2] == (429, 20429)
    assert start(user_id="alice", ip="198.51.100.8").status == "pending"  # alice's second
    assert _code(lambda: start(user_id="alice", ip="198.51.100.9"))[:2] == (429, 20429)  # her third
    # And the undefined name keeps its own per-value cap.
    for _ in range(3):
        start(session="s-1")
    assert _code(lambda: start(session="s-1"))[:2] == (429, 20429)


def test_a_name_with_no_rate_limit_keeps_the_hourly_cap_and_one_with_no_bucket_limits_nothing(v2: V2) -> None:
    svc, start = _starter(v2)
    svc.rate_limits.create(unique_name="defined")
    for _ in range(3):
        start(undefined="v")
        start(defined="v")
    assert _code(lambda: start(undefined="v"))[:2] == (429, 20429)  # number_sends_per_hour: 3
    assert start(defined="v").status == "pending"  # as at Twilio: no bucket, no limit


def test_a_rate_limit_value_never_names_a_redis_key(v2: V2, redis_url: str) -> None:
    svc, start = _starter(v2)
    svc.rate_limits(svc.rate_limits.create(unique_name="phone").sid).buckets.create(max=5, interval=60)
    start(phone="+15017122661")

    async def names(client: aioredis.Redis) -> list[str]:
        return [k.decode() async for k in client.scan_iter("otp:*")]

    found = _redis(redis_url, names)
    assert any(":rlb:" in k or "{rlb:" in k for k in found)
    assert not [k for k in found if "15017122661" in k]
