"""A second hostile review of issue 15 (the first: tests/test_v15_attacks.py): the sender pool (its
country restrictions, slots of jobs that never go out, a bucket that vanishes mid-burst), opt-outs
(what a tenant learns, what it may clear, what a refused start costs), Twilio's error text and
codes as an injection vector (dashboard, metrics), and Twilio's error text naming the number. Each
test is an attack; those that found a defect were written first and failed before the fix."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest
from conftest import Clock
from prometheus_client import REGISTRY
from test_delivery_truth import _sign_in, admin, settled, start, v1, v2  # noqa: F401  (fixtures)
from test_sender_pacing import US_SENDER, Pool, from_, numbers, pool_service
from test_twilio_compat import V2, new_number, serve, service
from test_v15_attacks import _all_values, _global_spent, budgeted, callback  # noqa: F401  (fixture)

from otp.settings import LOOKUP_DEFAULTS
from otp.storage import keys as keyspace
from otp.storage.client import connect
from otp.storage.store import Store

MG_US = "MG" + "b" * 32


def digits_of(e164: str) -> list[str]:
    """The runs an attacker would grep for: the full number, and its national digits."""
    return [e164[1:], e164[-10:]]


# -- Twilio's error text naming the number ----------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "Invalid 'To': {to}",  # short: fits the 64 stored bytes whole
        "To {bare} is invalid",  # written without its plus
        "To ({area}) {rest} bad",  # national, formatted
    ],
)
def test_a_short_twilio_error_naming_the_number_is_stored_and_exported_masked(
    redis_url: str, template: str, caplog: pytest.LogCaptureFixture
) -> None:
    with serve(redis_url) as live:
        to = new_number("628")
        text = template.format(to=to, bare=to[1:], area=to[2:5], rest=f"{to[5:8]}-{to[8:]}")
        live.stub.script(to, "reject", code=21211, message=text)
        with httpx.Client(base_url=live.base, headers={"Authorization": f"Bearer {live.v1_key}"}) as http:
            vid = http.post("/v1/verifications", json={"to": to}).json()["id"]
            deadline = time.monotonic() + 10
            while (attempt := http.get(f"/v1/verifications/{vid}").json()["send_attempts"][-1])["delivery"][
                "status"
            ] != "failed":
                assert time.monotonic() < deadline, attempt
                time.sleep(0.02)
        stored = attempt["delivery"]["error_message"]
        assert stored.startswith("Twilio 400") and "*******" in stored, stored
        for run in digits_of(to):
            assert run not in str(attempt)
            values = [v for v in asyncio.run(_all_values(redis_url)) if not (isinstance(v, dict) and v.get("to"))]
            assert run not in str(values)
            # The worker's log line of the failure too (otp serve masks logs again, as a belt).
            assert run not in " ".join(r.getMessage() for r in caplog.records if r.name.startswith("otp"))


# -- injection through Twilio's error text and codes -------------------------------------------------


def test_html_in_twilios_error_text_reaches_no_dashboard_page_unescaped(
    v2: V2,  # noqa: F811
    v1: httpx.Client,  # noqa: F811
    admin: httpx.Client,  # noqa: F811
) -> None:
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    to = new_number()
    v2.stub.script(to, "reject", code=21211, message=payload)
    vid = start(v1, to)["id"]
    assert "<script>" in settled(v1, vid, "failed")["delivery"]["error_message"]  # JSON carries it as text
    dashboard = _sign_in(v2, admin)
    try:
        pages = [dashboard.get(path, params={"since": "1h"}).text for path in ("/admin/", "/admin/audit")]
        pages.append(dashboard.get("/admin/audit", params={"vid": vid}).text)
    finally:
        dashboard.close()
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page


def _metrics_size() -> int:
    return sum(len(metric.samples) for metric in REGISTRY.collect())


async def test_many_distinct_error_codes_in_signed_callbacks_add_no_metric_series(budgeted: Any) -> None:  # noqa: F811
    """Error codes are no Prometheus label: a flood of distinct codes (only Twilio can sign them)
    grows no series; the dashboard's hourly counters hold one field per code, bounded by the
    codes Twilio sends."""
    vids = []
    for _ in range(3):
        answer = await budgeted.start(new_number())
        assert answer.status_code == 201, answer.text
        vids.append(answer.json()["id"])
    await budgeted.deliver()

    async def report(codes: range) -> None:
        for index, code in enumerate(codes):
            params = {"MessageStatus": "undelivered", "ErrorCode": str(code)}
            answer = await callback(budgeted, vids[index % 3], 1, params)
            assert answer.status_code == 200, answer.text

    await report(range(40001, 40004))  # the route's and the status's series exist now
    before = _metrics_size()
    await report(range(40004, 40044))
    assert _metrics_size() == before
    scrape = await budgeted.http.get("/metrics")
    assert "40004" not in scrape.text and "40043" not in scrape.text


# -- opt-outs ---------------------------------------------------------------------------------------


def test_reading_or_clearing_an_opt_out_needs_an_admin_key(
    v2: V2,  # noqa: F811
    v1: httpx.Client,  # noqa: F811
) -> None:
    to = new_number()
    v2.stub.script(to, "reject", code=21610)
    settled(v1, start(v1, to)["id"], "failed")
    sid, token = v2.account
    for auth in ({"headers": {"Authorization": f"Bearer {v2.v1_key}"}}, {"auth": (sid, token)}):
        with httpx.Client(base_url=v2.base, timeout=10, **auth) as http:
            assert http.get(f"/v1/optouts/{to}").status_code in (401, 403)
            assert http.delete(f"/v1/optouts/{to}").status_code in (401, 403)
    assert v1.post("/v1/verifications", json={"to": to}).status_code == 403  # still opted out


def test_a_number_opted_out_under_another_scope_starts_like_one_never_seen(
    v2: V2,  # noqa: F811
    v1: httpx.Client,  # noqa: F811
) -> None:
    """Tenant B's service sends US codes through its own Messaging Service: a STOP recorded for the
    operator's sender or for tenant A's Messaging Service must not show in B's answers."""
    b = v2.client(v2.other)
    b_service = service(b).sid
    b.verify.v2.services(b_service).messaging_configurations.create(country="US", messaging_service_sid=MG_US)
    elsewhere, never = new_number(), new_number()
    v2.stub.script(elsewhere, "reject", code=21610)
    settled(v1, start(v1, elsewhere)["id"], "failed")  # opted out of the operator's sender
    answers = [b.verify.v2.services(b_service).verifications.create(to=n, channel="sms") for n in (elsewhere, never)]
    assert [a.status for a in answers] == ["pending", "pending"]
    assert [len(a.send_code_attempts) for a in answers] == [1, 1]


@pytest.fixture
def costed(redis_url: str) -> Iterator[V2]:
    with serve(
        redis_url,
        lookup=replace(LOOKUP_DEFAULTS, mode="line_type", price=Decimal("0.008")),
        sms_prices="US=0.01,*=0.05",
        budget_daily=Decimal("100"),
    ) as live:
        yield live


def _spend_at_rest(live: V2, within: float = 10.0) -> Any:
    """The day's global spend once it stops moving: the worker settles a failed send (the status a
    client sees) before it gives the send's estimate back to the budgets."""
    deadline = time.monotonic() + within
    last = asyncio.run(_global_spent(live.settings))
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = asyncio.run(_global_spent(live.settings))
        if now == last:
            return now
        last = now
    return last


def test_a_start_to_an_opted_out_number_costs_no_lookup_no_budget_and_no_sms(costed: V2) -> None:
    to = new_number()
    costed.stub.lookups.answer(to, "mobile")
    costed.stub.script(to, "reject", code=21610)
    with httpx.Client(base_url=costed.base, headers={"Authorization": f"Bearer {costed.v1_key}"}, timeout=10) as http:
        settled(http, start(http, to)["id"], "failed")
        lookups, messages = len(costed.stub.lookups.calls), len(costed.stub.messages)
        spent = _spend_at_rest(costed)
        for _ in range(3):
            assert http.post("/v1/verifications", json={"to": to}).status_code == 403
    assert len(costed.stub.lookups.calls) == lookups
    assert len(costed.stub.messages) == messages
    assert asyncio.run(_global_spent(costed.settings)) == spent


# -- the sender pool --------------------------------------------------------------------------------


def test_a_messaging_configuration_cannot_send_through_a_pool_sender_outside_its_countries(redis_url: str) -> None:
    """The operator lists its Messaging Service for US only; a tenant's MessagingConfiguration for
    GB naming it must not carry GB codes through it (routes the operator never meant to pay for)."""
    with serve(redis_url, twilio_from=f"+15005550006:long_code:100000:US,{MG_US}:messaging_service:1000:US") as live:
        client = live.client()
        sid = service(client).sid
        client.verify.v2.services(sid).messaging_configurations.create(country="GB", messaging_service_sid=MG_US)
        gb = "+447400123456"
        client.verify.v2.services(sid).verifications.create(to=gb, channel="sms")
        asyncio.run(_drained(redis_url))
        assert [m.to for m in live.stub.messages] == []


async def _drained(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        store = Store(client, partitions=16)
        deadline = time.monotonic() + 10
        while await store.outbox_depth():
            assert time.monotonic() < deadline, "the outbox never drained"
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


@pytest.mark.parametrize("to", ["+18765550123", "+12505550123", "+88213000123"])  # Jamaica, Canada, no country
async def test_a_us_only_sender_carries_no_code_to_a_number_of_another_or_no_country(
    redis_url: str, clock: Clock, to: str
) -> None:
    async with pool_service(redis_url, clock, f"{US_SENDER}:long_code:1:US") as pool:
        answer = await pool.http.post(
            "/v1/verifications", json={"to": to}, headers={"Authorization": f"Bearer {pool.key}"}
        )
        await pool.drain()
        assert [m.to for m in pool.stub.messages] == [], answer.text


async def _paced(pool: Pool, count: int) -> list[str]:
    vids = [(await pool.start(to))["id"] for to in numbers(count)]
    await asyncio.gather(*(w.run_once() for w in pool.workers))
    assert len(pool.stub.messages) == 1  # the others hold slots 1 s … count-1 s away
    return vids


async def test_slots_of_canceled_jobs_pass_and_leave_neither_a_stuck_job_nor_a_growing_queue(
    redis_url: str, clock: Clock
) -> None:
    """A slot can't be handed back (a bucket is the time its sender is next free), so a tenant that
    cancels what it started wastes those slots: they pass with the clock, nothing else."""
    async with pool_service(redis_url, clock, f"{US_SENDER}:long_code:1") as pool:
        vids = await _paced(pool, 6)
        for vid in vids:
            if (await pool.fetch(vid))["send_attempts"][0].get("queued_at_sender"):
                canceled = await pool.http.post(
                    f"/v1/verifications/{vid}/cancel", headers={"Authorization": f"Bearer {pool.key}"}
                )
                assert canceled.status_code == 200, canceled.text
        took = await pool.drain()
        assert len(pool.stub.messages) == 1 and took <= 6
        # The dead slots have passed (the last one's second too): the next code goes out at once.
        clock.advance(1)
        late = await pool.start("+14155559999")
        await asyncio.gather(*(w.run_once() for w in pool.workers))
        assert len(from_(pool.stub, US_SENDER)) == 2
        assert not (await pool.fetch(late["id"]))["send_attempts"][0].get("queued_at_sender")


async def test_a_bucket_deleted_mid_burst_sends_every_code_in_time_and_drains(redis_url: str, clock: Clock) -> None:
    """Eviction is refused at startup (noeviction), but an operator's DEL or a FLUSHDB of the pool's
    key must not lose codes, send a dead one or leave jobs behind; the pace restarts from now."""
    async with pool_service(redis_url, clock, f"{US_SENDER}:long_code:1", code_ttl=60.0) as pool:
        expiry = clock.now() + 60
        await _paced(pool, 5)
        await pool.store.client.delete(keyspace.sender_bucket(US_SENDER))
        for to in numbers(5, "+1415557"):
            await pool.start(to)
        await pool.drain()
        sent = pool.stub.messages
        assert len(sent) == 10 and max(m.received_at for m in sent) < expiry
        # The reservations made before the DEL keep their slots beside the new ones: at most double pace.
        per_second = [sum(1 for m in sent if int(m.received_at) == t) for t in {int(m.received_at) for m in sent}]
        assert max(per_second) == 2
        assert await pool.store.outbox_depth() == 0
