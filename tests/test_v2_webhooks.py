"""Verify event webhooks: /v2/Services/{sid}/Webhooks through the official `twilio` SDK, and the
events otp posts, received by a real loopback HTTP server and checked with twilio's own
RequestValidator against the account's auth token (or a /v1 key). The SMS go through the Twilio
stand-in, whose signed status callbacks drive the delivery events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from test_twilio_compat import V2, new_number, refused, serve, service
from twilio.base.exceptions import TwilioException
from webhook_receiver import Receiver, receiving

from otp.audit_fields import WEBHOOK_EVENTS
from otp.clock import SettableClock
from otp.core import apikeys
from otp.storage import keys as keyspace
from otp.storage.store import Store

QUICK: dict[str, Any] = {"webhook_allow_private": True, "webhook_retry_base": 0.01}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from receiving()


@pytest.fixture
def other_receiver() -> Iterator[Receiver]:
    yield from receiving()


@pytest.fixture
def v2(redis_url: str) -> Iterator[V2]:
    with serve(redis_url, **QUICK) as live:
        yield live


def _hooked(v2: V2, receiver: Receiver, events: list[str] | None = None, who: tuple[str, str] | None = None) -> str:
    """A new service of ``who`` with a webhook to ``receiver``; its sid."""
    client = v2.client(who)
    svc = service(client)
    client.verify.v2.services(svc.sid).webhooks.create(
        friendly_name="login page", event_types=events or ["*"], webhook_url=receiver.url()
    )
    return str(svc.sid)


def _redis_count(url: str, pattern: str) -> int:
    async def count() -> int:
        client = aioredis.Redis.from_url(url)
        try:
            return len([k async for k in client.scan_iter(pattern)])
        finally:
            await client.aclose()

    return asyncio.run(count())


# -- the resource ---------------------------------------------------------------------------------


def test_webhooks_are_created_listed_fetched_updated_and_deleted_in_twilios_shape(v2: V2, receiver: Receiver) -> None:
    hooks = v2.client().verify.v2.services(service(v2.client()).sid).webhooks
    made = hooks.create(
        friendly_name="login", event_types=["verification.approved", "message.failed"], webhook_url=receiver.url()
    )
    assert made.sid.startswith("YW") and len(made.sid) == 34
    assert (made.status, made.version, made.webhook_method) == ("enabled", "v2", "POST")
    assert made.event_types == ["verification.approved", "message.failed"]
    assert made.webhook_url == receiver.url() and made.account_sid == v2.account[0]
    assert [w.sid for w in hooks.list()] == [made.sid]
    assert hooks(made.sid).fetch().friendly_name == "login"
    changed = hooks(made.sid).update(status="disabled", event_types=["*"])
    assert (changed.status, changed.event_types) == ("disabled", ["*"])
    assert hooks(made.sid).delete() is True
    assert hooks.list() == []
    assert refused(lambda: hooks(made.sid).fetch()).code == 20404


def test_event_types_urls_and_the_cap_are_refused_naming_the_parameter(v2: V2, receiver: Receiver) -> None:
    hooks = v2.client().verify.v2.services(service(v2.client()).sid).webhooks
    bad = refused(lambda: hooks.create(friendly_name="x", event_types=["factor.created"], webhook_url=receiver.url()))
    assert (bad.status, bad.code) == (400, 60200) and "`EventTypes`" in bad.msg
    assert "verification.started" in bad.msg
    ftp = refused(lambda: hooks.create(friendly_name="x", event_types=["*"], webhook_url="ftp://example.com/"))
    assert ftp.code == 60200 and "`WebhookUrl`" in ftp.msg
    for n in range(5):
        hooks.create(friendly_name=f"hook {n}", event_types=["*"], webhook_url=receiver.url())
    sixth = refused(lambda: hooks.create(friendly_name="six", event_types=["*"], webhook_url=receiver.url()))
    assert (sixth.status, sixth.code) == (400, 60200) and "at most 5" in sixth.msg
    assert len(hooks.list()) == 5


# -- the events -----------------------------------------------------------------------------------


def test_started_and_approved_arrive_signed_with_the_accounts_auth_token(v2: V2, receiver: Receiver) -> None:
    sid = _hooked(v2, receiver)
    verify = v2.client().verify.v2.services(sid)
    to = new_number()
    started = verify.verifications.create(to=to, channel="sms", tags='{"order": "42"}')
    first = receiver.wait_for("verification.started", started.sid)
    assert first.signed_by(v2.account[1])
    assert not first.signed_by(v2.other[1])
    assert first.params["ServiceSid"] == sid and first.params["AccountSid"] == v2.account[0]
    assert (first.params["To"], first.params["Channel"], first.params["Status"]) == (to, "sms", "pending")
    assert first.params["Tags"] == '{"order":"42"}'
    assert first.headers["i-twilio-idempotency-token"] == first.params["EventSid"]
    assert verify.verification_checks.create(to=to, code=v2.code(to)).status == "approved"
    approved = receiver.wait_for("verification.approved", started.sid)
    assert approved.signed_by(v2.account[1]) and approved.params["Status"] == "approved"
    assert approved.params["EventSid"] != first.params["EventSid"]
    delivered = receiver.wait_for("message.delivered", started.sid)
    assert delivered.params["AttemptSid"] == started.send_code_attempts[0]["attempt_sid"]
    # Nothing number-shaped is kept for an event: it is read from the verification when sent.
    assert _redis_count(v2.settings.redis_url or "", "otp:*whe:*") <= 1  # at most the expiry, still due


def test_canceled_and_max_attempts_reached_are_posted(v2: V2, receiver: Receiver) -> None:
    sid = _hooked(v2, receiver, ["verification.canceled", "verification.max_attempts_reached"])
    verify = v2.client().verify.v2.services(sid)
    canceled = verify.verifications.create(to=new_number(), channel="sms")
    verify.verifications(canceled.sid).update(status="canceled")
    assert receiver.wait_for("verification.canceled", canceled.sid).signed_by(v2.account[1])
    to = new_number()
    locked = verify.verifications.create(to=to, channel="sms")
    wrong = "000000" if v2.code(to) != "000000" else "111111"
    for _ in range(5):
        verify.verification_checks.create(to=to, code=wrong)
    event = receiver.wait_for("verification.max_attempts_reached", locked.sid)
    assert event.params["Status"] == "max_attempts_reached"
    # Only the subscribed types: no started, no message events.
    assert {d.params["EventType"] for d in receiver.events()} == {
        "verification.canceled",
        "verification.max_attempts_reached",
    }


@pytest.mark.parametrize(
    ("outcome", "event", "code"),
    [
        ("delivered", "message.delivered", ""),
        ("undelivered", "message.undelivered", "30003"),
        ("failed", "message.failed", "30008"),
    ],
)
def test_delivery_outcomes_from_twilios_callbacks_are_posted_with_the_error_code(
    v2: V2, receiver: Receiver, outcome: str, event: str, code: str
) -> None:
    sid = _hooked(v2, receiver)
    to = new_number()
    v2.stub.script(to, outcome)
    started = v2.client().verify.v2.services(sid).verifications.create(to=to, channel="sms")
    posted = receiver.wait_for(event, started.sid)
    assert posted.signed_by(v2.account[1])
    assert (posted.params["DeliveryStatus"], posted.params["ErrorCode"], posted.params["SendNumber"]) == (
        outcome,
        code,
        "1",
    )


def test_a_500_then_a_200_delivers_each_event_once_under_one_event_sid(v2: V2, receiver: Receiver) -> None:
    sid = _hooked(v2, receiver, ["verification.started"])
    receiver.statuses.extend([500, 503])
    started = v2.client().verify.v2.services(sid).verifications.create(to=new_number(), channel="sms")
    receiver.wait_count(3)
    time.sleep(0.3)  # a fourth post would come within a few retry bases (10 ms): none does
    posts = receiver.events(started.sid)
    assert len(posts) == 3 and len({p.params["EventSid"] for p in posts}) == 1
    assert all(p.signed_by(v2.account[1]) for p in posts)


def test_tenants_never_see_alter_or_receive_each_others_webhooks(
    v2: V2, receiver: Receiver, other_receiver: Receiver
) -> None:
    mine = _hooked(v2, receiver)
    theirs = _hooked(v2, other_receiver, who=v2.other)
    hook = v2.client().verify.v2.services(mine).webhooks.list()[0].sid
    them = v2.client(v2.other).verify.v2
    with pytest.raises(TwilioException, match="20404"):
        them.services(mine).webhooks.list()  # the SDK's list says "Unable to fetch page" around the 404
    assert refused(lambda: them.services(mine).webhooks(hook).fetch()).code == 20404
    assert refused(lambda: them.services(mine).webhooks(hook).update(status="disabled")).code == 20404
    assert refused(lambda: them.services(theirs).webhooks(hook).delete()).code == 20404
    assert v2.client().verify.v2.services(mine).webhooks(hook).fetch().status == "enabled"
    started = v2.client().verify.v2.services(mine).verifications.create(to=new_number(), channel="sms")
    receiver.wait_for("message.delivered", started.sid)
    assert other_receiver.events(started.sid) == []


# -- time: expiry, dead endpoints -----------------------------------------------------------------


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def timed(redis_url: str, clock: SettableClock) -> Iterator[V2]:
    with serve(redis_url, clock=clock, **QUICK) as live:
        yield live


def test_expired_is_posted_at_the_codes_expiry_only_if_still_pending(
    timed: V2, receiver: Receiver, clock: SettableClock
) -> None:
    sid = _hooked(timed, receiver, ["verification.expired", "verification.approved"])
    verify = timed.client().verify.v2.services(sid)
    waiting = verify.verifications.create(to=new_number(), channel="sms")
    to = new_number()
    approved = verify.verifications.create(to=to, channel="sms")
    verify.verification_checks.create(to=to, code=timed.code(to))
    receiver.wait_for("verification.approved", approved.sid)
    clock.advance(timed.settings.code_ttl + 1)
    expired = receiver.wait_for("verification.expired", waiting.sid)
    assert expired.signed_by(timed.account[1]) and expired.params["Status"] == "expired"
    time.sleep(0.3)
    assert [d.params["EventType"] for d in receiver.events(approved.sid)] == ["verification.approved"]


def test_a_dead_endpoint_is_given_up_on_within_the_bound(timed: V2, receiver: Receiver, clock: SettableClock) -> None:
    sid = _hooked(timed, receiver, ["verification.started"])
    receiver.statuses.extend([500] * 100)
    started = timed.client().verify.v2.services(sid).verifications.create(to=new_number(), channel="sms")
    receiver.wait_count(1)
    url = timed.settings.redis_url or ""
    for _ in range(40):
        if _redis_count(url, "otp:*whe:*") == 0:
            break
        seen = len(receiver.events())
        clock.advance(3 * 3600)  # beyond the longest backoff (1 h)
        deadline = time.monotonic() + 5
        while len(receiver.events()) == seen and _redis_count(url, "otp:*whe:*") and time.monotonic() < deadline:
            time.sleep(0.02)
    assert _redis_count(url, "otp:*whe:*") == 0
    # 24 h of tries at most, whatever the count: every 3 h here, so 9 posts (the first, then 8).
    assert 2 <= len(receiver.events(started.sid)) <= 20


def test_one_tenants_queued_events_are_capped_and_the_oldest_dropped(redis_url: str, receiver: Receiver) -> None:
    with serve(redis_url, webhook_queue_cap=16, **QUICK) as v2:
        receiver.statuses.extend([500] * 1000)
        sid = _hooked(v2, receiver, ["verification.started", "verification.expired"])
        verify = v2.client().verify.v2.services(sid)
        for _ in range(30):
            verify.verifications.create(to=new_number(), channel="sms")
        # 16 over 16 partitions: one queued event per partition at most, whatever was emitted.
        assert _redis_count(redis_url, "otp:*whe:*") <= 16

        async def dropped() -> int:
            client = aioredis.Redis.from_url(redis_url)
            total = 0
            for p in range(16):
                for key in [k async for k in client.scan_iter(keyspace.audit_counter_prefix(p) + "*")]:
                    total += int(await client.hget(key, "webhook_dropped:queue_full") or 0)
            await client.aclose()
            return total

        assert asyncio.run(dropped()) > 0


def test_a_revoked_account_key_stops_its_webhooks(timed: V2, receiver: Receiver, clock: SettableClock) -> None:
    url = timed.settings.redis_url or ""

    async def account() -> tuple[str, str]:
        client = aioredis.Redis.from_url(url)
        key, token = await apikeys.create(Store(client, partitions=16), "short-lived", twilio=True)
        await client.aclose()
        return key.key_id, token.split("_")[2]

    async def revoke(key_id: str) -> None:
        client = aioredis.Redis.from_url(url)
        await apikeys.revoke(Store(client, partitions=16), key_id)
        await client.aclose()

    who = asyncio.run(account())
    sid = _hooked(timed, receiver, ["verification.expired"], who=who)
    timed.client(who).verify.v2.services(sid).verifications.create(to=new_number(), channel="sms")
    asyncio.run(revoke(who[0]))
    clock.advance(timed.settings.code_ttl + 1)
    # This service's queue only: the shared Redis may hold other tests' events, still retrying.
    queued = f"otp:*who:{sid}"
    deadline = time.monotonic() + 10
    while _redis_count(url, queued) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _redis_count(url, queued) == 0  # claimed, and dropped: nobody vouches for its secret
    assert receiver.events() == []


# -- /v1 keys -------------------------------------------------------------------------------------


def test_a_v1_key_sets_reads_and_clears_its_webhook_and_gets_its_events_signed_with_the_key(
    v2: V2, receiver: Receiver
) -> None:
    auth = {"Authorization": f"Bearer {v2.v1_key}"}
    base = v2.base
    assert httpx.get(f"{base}/v1/webhook", headers=auth).status_code == 404
    bad = httpx.put(f"{base}/v1/webhook", headers=auth, json={"url": receiver.url(), "event_types": ["nope"]})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "event_types"
    not_text = httpx.put(f"{base}/v1/webhook", headers=auth, json={"url": receiver.url(), "event_types": [1]})
    assert not_text.status_code == 400 and not_text.json()["error"]["field"] == "event_types[0]"
    put = httpx.put(
        f"{base}/v1/webhook",
        headers=auth,
        json={"url": receiver.url(), "event_types": ["verification.started", "message.failed"]},
    )
    assert put.status_code == 200, put.text
    assert httpx.get(f"{base}/v1/webhook", headers=auth).json()["event_types"] == [
        "verification.started",
        "message.failed",
    ]
    to = new_number()
    v2.stub.script(to, "failed")
    vid = httpx.post(f"{base}/v1/verifications", headers=auth, json={"to": to}).json()["id"]
    started = receiver.wait_for("verification.started", vid)
    assert started.signed_by(v2.v1_key) and started.params["KeyId"] == v2.v1_key.split("_")[1]
    failed = receiver.wait_for("message.failed", vid)
    assert failed.signed_by(v2.v1_key) and failed.params["ErrorCode"] == "30008"
    assert httpx.delete(f"{base}/v1/webhook", headers=auth).json() == {"removed": True}
    assert httpx.get(f"{base}/v1/webhook", headers=auth).status_code == 404


def test_every_event_name_is_one_of_otps_and_the_list_is_in_the_readme() -> None:
    from conftest import repo_root

    readme = (repo_root() / "docs" / "webhooks.md").read_text()
    assert all(f"`{name}`" in readme for name in WEBHOOK_EVENTS)
