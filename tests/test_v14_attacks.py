"""A hostile client with an API key against what issue 14 added to /v2 (and /v1): service Rate
Limits and Buckets, MessagingConfigurations, TemplateSid with substitutions, webhooks and their
event outbox, exact safe-list numbers and the account-wide fraud tenant. Each test is one attack
and the outcome the attacker sees (or doesn't), driven through the official SDK or raw HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from test_twilio_compat import V2, new_number, refused, serve, service
from webhook_receiver import Receiver, receiving

from otp.clock import SettableClock
from otp.core import apikeys, urlguard
from otp.core import services as service_records
from otp.storage import keys as keyspace
from otp.storage.store import Store

QUICK: dict[str, Any] = {"webhook_allow_private": True, "webhook_retry_base": 0.01}
MG_A = "MG" + "a" * 32
MG_B = "MG" + "b" * 32


@pytest.fixture
def v2(redis_url: str) -> Iterator[V2]:
    with serve(redis_url, **QUICK) as live:
        yield live


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from receiving()


def _redis(url: str, call: Any) -> Any:
    async def run() -> Any:
        client = aioredis.Redis.from_url(url)
        try:
            return await call(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


async def _dump(client: aioredis.Redis) -> str:
    """Every key name and every string, hash, set, sorted-set and stream value, as one text."""
    parts: list[str] = []
    async for raw in client.scan_iter("*"):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        parts.append(key)
        raw_kind = await client.type(key)
        kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
        if kind == "string":
            parts.append(str(await client.get(key)))
        elif kind == "hash":
            parts.append(str(await client.hgetall(key)))
        elif kind == "set":
            parts.append(str(await client.smembers(key)))
        elif kind == "zset":
            parts.append(str(await client.zrange(key, 0, -1)))
        elif kind == "stream":
            parts.append(str(await client.xrange(key)))
        elif kind == "list":
            parts.append(str(await client.lrange(key, 0, -1)))
    return "\n".join(parts)


def _count(url: str, pattern: str) -> int:
    async def count(client: aioredis.Redis) -> int:
        return len({k async for k in client.scan_iter(pattern)})  # SCAN may repeat a key

    return int(_redis(url, count))


# -- secrets and numbers at rest ---------------------------------------------------------------------


def test_a_rate_limits_value_never_names_a_redis_key_or_sits_in_one(v2: V2) -> None:
    # Twilio's own example passes the end user's phone number as a RateLimits value.
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    victim = new_number()
    verify.verifications.create(to=new_number(), channel="sms", rate_limits={"end_user_phone_number": victim})
    limit = verify.rate_limits.create(unique_name="user_phone")
    verify.rate_limits(limit.sid).buckets.create(max=5, interval=60)
    verify.verifications.create(to=new_number(), channel="sms", rate_limits={"user_phone": victim})
    assert victim not in _redis(str(v2.settings.redis_url), _dump)
    assert victim.lstrip("+") not in _redis(str(v2.settings.redis_url), _dump)


def test_no_auth_token_key_secret_or_number_is_kept_or_logged_for_a_webhook(
    v2: V2, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.statuses.extend([500, 404])  # a retry and a refusal: the log lines they write too
    client = v2.client()
    sid = service(client).sid
    client.verify.v2.services(sid).webhooks.create(friendly_name="x", event_types=["*"], webhook_url=receiver.url())
    auth = {"Authorization": f"Bearer {v2.v1_key}"}
    put = httpx.put(f"{v2.base}/v1/webhook", headers=auth, json={"url": receiver.url("/v1"), "event_types": ["*"]})
    assert put.status_code == 200, put.text
    to = new_number()
    started = client.verify.v2.services(sid).verifications.create(to=to, channel="sms")
    receiver.wait_for("verification.started", started.sid)
    receiver.wait_for("message.delivered", started.sid)
    httpx.post(f"{v2.base}/v1/verifications", headers=auth, json={"to": new_number()})
    dump = _redis(str(v2.settings.redis_url), _dump)
    for secret in (v2.account[1], v2.v1_key.split("_")[2]):
        assert secret not in dump
        assert secret not in caplog.text
    assert to not in caplog.text


# -- fraud tenant = account ----------------------------------------------------------------------


def test_an_accounts_services_share_one_event_queue_cap(redis_url: str, receiver: Receiver) -> None:
    # A dead endpoint per service: each service must not bring a queue of its own.
    with serve(redis_url, webhook_queue_cap=16, **QUICK) as v2:
        receiver.statuses.extend([500] * 10_000)
        client = v2.client()
        for _ in range(4):
            sid = service(client).sid
            verify = client.verify.v2.services(sid)
            verify.webhooks.create(friendly_name="dead", event_types=["*"], webhook_url=receiver.url())
            for _ in range(16):
                verify.verifications.create(to=new_number(), channel="sms")
        # 16 over 16 partitions: one queued event per partition for the whole account, in the
        # account's queue (each read atomic: a SCAN count races the worker's deletes).
        partitions = v2.settings.partitions

        async def queues(client: aioredis.Redis) -> tuple[list[int], set[str]]:
            sizes = [int(await client.zcard(keyspace.event_owner(p, v2.account[0]))) for p in range(partitions)]
            names = {k.decode() async for k in client.scan_iter("otp:*who:*")}
            return sizes, names

        sizes, names = _redis(redis_url, queues)
        assert max(sizes) <= 1, sizes
        assert names and all(name.endswith(v2.account[0]) for name in names), names


def test_concurrent_service_creates_cannot_pass_the_accounts_cap(v2: V2) -> None:
    cap = service_records.MAX_SERVICES_PER_ACCOUNT

    async def flood() -> list[int]:
        async with httpx.AsyncClient(base_url=v2.base, auth=v2.account, timeout=30) as http:
            answers = await asyncio.gather(
                *(http.post("/v2/Services", data={"FriendlyName": "Acme"}) for _ in range(cap + 30))
            )
        return [a.status_code for a in answers]

    statuses = asyncio.run(flood())
    assert statuses.count(201) == cap, statuses
    assert len(v2.client().verify.v2.services.list()) == cap


# -- rate limits and buckets ---------------------------------------------------------------------


def test_concurrent_starts_never_pass_a_buckets_max(v2: V2) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    limit = verify.rate_limits.create(unique_name="user_id")
    verify.rate_limits(limit.sid).buckets.create(max=3, interval=3600)

    def start(_: int) -> int:
        try:
            verify.verifications.create(to=new_number(), channel="sms", rate_limits={"user_id": "u1"})
            return 201
        except Exception as exc:  # the SDK's refusal
            return int(getattr(exc, "code", 0))

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(start, range(24)))
    assert outcomes.count(201) == 3, outcomes
    assert set(outcomes) == {201, 20429}, outcomes
    # Another value has its own count.
    assert verify.verifications.create(to=new_number(), channel="sms", rate_limits={"user_id": "u2"}).status


def test_another_accounts_rate_limits_configs_and_webhooks_answer_like_missing_ones(v2: V2) -> None:
    mine = v2.client().verify.v2.services(service(v2.client()).sid)
    limit = mine.rate_limits.create(unique_name="user_id")
    bucket = mine.rate_limits(limit.sid).buckets.create(max=3, interval=60)
    mine.messaging_configurations.create(country="US", messaging_service_sid=MG_A)
    hook = mine.webhooks.create(friendly_name="x", event_types=["*"], webhook_url="http://127.0.0.1:9/h")
    missing = "VA" + "0" * 32
    paths = [
        "RateLimits",
        f"RateLimits/{limit.sid}",
        "RateLimits/user_id",
        f"RateLimits/{limit.sid}/Buckets",
        f"RateLimits/{limit.sid}/Buckets/{bucket.sid}",
        "MessagingConfigurations",
        "MessagingConfigurations/US",
        "Webhooks",
        f"Webhooks/{hook.sid}",
    ]
    for path in paths:
        for method in ("GET", "POST") if path.endswith(("s", "Buckets")) else ("GET", "POST", "DELETE"):
            theirs = httpx.request(method, f"{v2.base}/v2/Services/{mine._solution['sid']}/{path}", auth=v2.other)
            none = httpx.request(method, f"{v2.base}/v2/Services/{missing}/{path}", auth=v2.other)
            assert theirs.status_code == none.status_code == 404, (method, path, theirs.text)
            body = theirs.json()
            assert body["code"] == none.json()["code"] == 20404
            assert body["message"].replace(mine._solution["sid"], missing) == none.json()["message"]
    # Nothing moved.
    assert mine.rate_limits(limit.sid).buckets(bucket.sid).fetch().max == 3
    assert mine.messaging_configurations("US").fetch().messaging_service_sid == MG_A
    assert mine.webhooks(hook.sid).fetch().status == "enabled"


# -- messaging configurations --------------------------------------------------------------------


def test_a_messaging_service_the_operator_stopped_allowing_is_not_sent_with(redis_url: str) -> None:
    with serve(redis_url, twilio_messaging_services=frozenset({MG_A, MG_B})) as v2:
        who = v2.account
        sid = service(v2.client()).sid
        v2.client().verify.v2.services(sid).messaging_configurations.create(country="US", messaging_service_sid=MG_A)
    # The operator takes MG_A off the list (it now belongs to another brand) and restarts.
    with serve(redis_url, twilio_messaging_services=frozenset({MG_B})) as v2:
        to = new_number()
        error = refused(lambda: v2.client(who).verify.v2.services(sid).verifications.create(to=to, channel="sms"))
        assert (error.status, error.code) == (400, 60200) and "MessagingConfiguration" in error.msg, error.msg
        assert [m for m in v2.stub.messages if m.messaging_service_sid == MG_A] == []


# -- templates: phishing through substitutions -------------------------------------------------------

PURPOSE = "HJ" + __import__("hashlib").sha256(b"otp/template/purpose").hexdigest()[:32]
PHISHING = [
    "visit paypal.com",
    "log in at www paypal",
    "go to https://x",
    "@evil.example #123456",
    "pаypal login",  # a Cyrillic а
    "call 0800 555 0100",  # a number to call: more than 4 digits
    "confirm\nyour account",  # a second line
    "x" * 31,  # past one segment at its worst case
    "",
    "𝐋𝐎𝐆𝐈𝐍",  # UCS-2: a second segment
]


def test_phishing_substitutions_are_refused_on_v2_and_v1(v2: V2) -> None:
    verify = v2.client().verify.v2.services(service(v2.client()).sid)
    auth = {"Authorization": f"Bearer {v2.v1_key}"}
    for value in PHISHING:
        error = refused(
            lambda value=value: verify.verifications.create(
                to=new_number(),
                channel="sms",
                template_sid=PURPOSE,
                template_custom_substitutions=json.dumps({"purpose": value}),
            )
        )
        assert (error.status, error.code) == (400, 60200) and "TemplateCustomSubstitutions" in error.msg, value
        answer = httpx.post(
            f"{v2.base}/v1/verifications",
            headers=auth,
            json={"to": new_number(), "template": "purpose", "substitutions": {"purpose": value}},
        )
        assert answer.status_code == 400 and answer.json()["error"]["field"] == "substitutions", (value, answer.text)
    assert v2.stub.messages == []


# -- SSRF ------------------------------------------------------------------------------------------

EMBEDDED_PRIVATE = [
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
    "::ffff:7f00:1",  # IPv4-mapped, hex spelling
    "::",
    "0.0.0.0",  # noqa: S104 - an address to refuse, not to bind
    "fe80::1%lo",
]


def test_ipv6_spellings_of_private_ipv4_addresses_are_refused() -> None:
    for address in EMBEDDED_PRIVATE:
        assert not urlguard.address_allowed(address, allow_private=False), address
    for address in ("64:ff9b::808:808", "2002:808:808::1", "8.8.8.8", "2606:4700::1111"):
        assert urlguard.address_allowed(address, allow_private=False), address


def test_legacy_numeric_and_odd_hosts_are_refused_when_saved(redis_url: str) -> None:
    with serve(redis_url) as v2:  # the production default
        hooks = v2.client().verify.v2.services(service(v2.client()).sid).webhooks
        for url in (
            "https://2130706433/",
            "https://0x7f.1/",
            "https://0177.0.0.1/",
            "https://127.1/",
            "https://localhost./",
            "https://[::]/",
            "https://[64:ff9b::7f00:1]/",
            "https://[2002:7f00:1::1]/",
            "https://[fe80::1%25lo]/",
            "https://0.0.0.0:6379/",
            "https://xn--/",
            "https://" + "a" * 64 + ".example/",
        ):
            error = refused(lambda url=url: hooks.create(friendly_name="x", event_types=["*"], webhook_url=url))
            assert (error.status, error.code) == (400, 60200) and "`WebhookUrl`" in error.msg, (url, error.msg)
        assert hooks.list() == []


# -- odd input: never a 500 ----------------------------------------------------------------------

ODD_FORMS: list[str | bytes] = [
    b"",
    b"UniqueName=%FF",
    b"%FF=1",
    b"UniqueName=a&UniqueName=b",
    b"Max=1&Max=2&Interval=60",
    b"Max=99999999999999999999999&Interval=60",
    b"Max=-1&Interval=1e3",
    b"Max=%00&Interval=%00",
    b"Country=%00&MessagingServiceSid=" + b"M" * 9000,
    b"EventTypes=&WebhookUrl=&FriendlyName=",
    b"EventTypes=%FF&WebhookUrl=http://x&FriendlyName=x",
    b"EventTypes=*&EventTypes=*&WebhookUrl=http%3A%2F%2F%5B%3A%3A1&FriendlyName=x",
    b"FriendlyName=" + b"\xe2\x80\xae" * 10 + b"&EventTypes=*&WebhookUrl=http://127.0.0.1:9/",
    b"Status=maybe&Version=v9",
    b"Description=" + b"d" * 300,
    b"a=" + b"b" * 17_000,
]


def test_odd_forms_on_every_new_route_get_a_4xx_naming_a_field(v2: V2) -> None:
    client = v2.client()
    sid = service(client).sid
    verify = client.verify.v2.services(sid)
    limit = verify.rate_limits.create(unique_name="user_id")
    bucket = verify.rate_limits(limit.sid).buckets.create(max=3, interval=60)
    verify.messaging_configurations.create(country="US", messaging_service_sid=MG_A)
    hook = verify.webhooks.create(friendly_name="x", event_types=["*"], webhook_url="http://127.0.0.1:9/h")
    base = f"{v2.base}/v2/Services/{sid}"
    paths = [
        "RateLimits",
        f"RateLimits/{limit.sid}",
        f"RateLimits/{limit.sid}/Buckets",
        f"RateLimits/{limit.sid}/Buckets/{bucket.sid}",
        "MessagingConfigurations",
        "MessagingConfigurations/US",
        "Webhooks",
        f"Webhooks/{hook.sid}",
        "Verifications",
    ]
    for path in paths:
        for body in ODD_FORMS:
            answer = httpx.post(
                f"{base}/{path}",
                content=body,
                auth=v2.account,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert answer.status_code < 500, (path, body[:60], answer.text)
            if answer.status_code >= 400:
                assert "`" in answer.json()["message"] or answer.status_code == 404, (path, body[:60], answer.text)
    for path, query in (
        ("RateLimits", "PageSize=0"),
        ("RateLimits", "PageSize=-1"),
        ("RateLimits", "PageSize=abc"),
        ("RateLimits", "Page=99999999999"),
        ("RateLimits", "PageSize=1000&Page=999999"),
        (f"RateLimits/{limit.sid}/Buckets", "PageSize=%FF"),
        ("Webhooks", "PageSize=1&PageSize=2"),
        ("Webhooks", "PageToken=%00"),
        ("MessagingConfigurations", "PageToken=PT1"),
    ):
        answer = httpx.get(f"{base}/{path}?{query}", auth=v2.account)
        assert answer.status_code in (200, 400), (path, query, answer.text)
    # Odd RateLimits, TemplateCustomSubstitutions and Tags on a start.
    for params in (
        {"RateLimits": "[]"},
        {"RateLimits": '{"a": [1]}'},
        {"RateLimits": '{"a": {"b": 1}}'},
        {"RateLimits": '{"a": 1e400}'},
        {"RateLimits": '{"a": null}'},
        {"RateLimits": '{"": "x"}'},
        {"RateLimits": '{"a": "x", "a": "y"}'},
        {"RateLimits": '{"user_id": "' + "x" * 129 + '"}'},
        {"RateLimits": "{" + ",".join(f'"k{i}": "v"' for i in range(11)) + "}"},
        {"TemplateSid": PURPOSE, "TemplateCustomSubstitutions": '{"purpose": ["a"]}'},
        {"TemplateSid": PURPOSE, "TemplateCustomSubstitutions": '{"purpose": "x", "other": "y"}'},
        {"TemplateSid": PURPOSE, "TemplateCustomSubstitutions": "not json"},
        {"TemplateSid": PURPOSE},
        {"TemplateSid": "HJ" + "0" * 32},
        {"TemplateSid": ""},
        {"TemplateCustomSubstitutions": '{"purpose": "x"}'},
        {"Tags": '{"a": 1}'},
        {"Tags": '{"a": "' + "x" * 257 + '"}'},
        {"Tags": "{" + ",".join(f'"t{i}": "v"' for i in range(11)) + "}"},
    ):
        answer = httpx.post(
            f"{base}/Verifications", data={"To": new_number(), "Channel": "sms", **params}, auth=v2.account
        )
        assert answer.status_code == 400, (params, answer.text)
        assert answer.json()["code"] in (60200, 60228), (params, answer.text)
    assert v2.stub.messages == []


def test_odd_v1_webhook_and_template_bodies_get_a_4xx(v2: V2) -> None:
    auth = {"Authorization": f"Bearer {v2.v1_key}", "Content-Type": "application/json"}
    for body in (
        b"",
        b"[]",
        b'{"url": 5, "event_types": ["*"]}',
        b'{"url": "http://127.0.0.1:9/", "event_types": "*"}',
        b'{"url": "http://127.0.0.1:9/", "event_types": []}',
        b'{"url": "http://127.0.0.1:9/", "event_types": [null]}',
        b'{"url": "http://127.0.0.1:9/", "event_types": ["*"], "url": "http://x"}',
        b'{"url": "http://127.0.0.1:9/", "event_types": ["' + b"*" * 65 + b'"]}',
        b'{"url": "\xff", "event_types": ["*"]}',
        b'{"url": "http://[::1", "event_types": ["*"]}',
        b'{"url": "' + b"h" * 3000 + b'", "event_types": ["*"]}',
        b'{"url": "http://127.0.0.1:9/", "event_types": ' + json.dumps(["*"] * 20).encode() + b"}",
    ):
        answer = httpx.put(f"{v2.base}/v1/webhook", headers=auth, content=body)
        assert 400 <= answer.status_code < 500, (body[:60], answer.text)
    for extra in (
        {"template": "nope"},
        {"template": 5},
        {"template": "purpose"},
        {"template": "purpose", "substitutions": []},
        {"template": "purpose", "substitutions": {"purpose": 5}},
        {"template": "purpose", "substitutions": {"purpose": {"a": "b"}}},
        {"template": "purpose", "substitutions": {"purpose": None}},
        {"template": "purpose", "substitutions": {f"k{i}": "v" for i in range(9)}},
        {"template": "purpose", "substitutions": {"k" * 10_000: "v"}},
        {"substitutions": {"purpose": "x"}},
    ):
        answer = httpx.post(f"{v2.base}/v1/verifications", headers=auth, json={"to": new_number(), **extra})
        assert answer.status_code == 400, (extra, answer.text)
    assert v2.stub.messages == []


# -- events after the tenant is gone -------------------------------------------------------------


def test_no_event_is_posted_after_its_service_is_deleted_or_its_v1_key_revoked(
    redis_url: str, receiver: Receiver
) -> None:
    clock = SettableClock()
    with serve(redis_url, clock=clock, **QUICK) as v2:
        client = v2.client()
        verify = client.verify.v2.services(service(client).sid)
        verify.webhooks.create(friendly_name="x", event_types=["verification.expired"], webhook_url=receiver.url())
        verify.verifications.create(to=new_number(), channel="sms")
        auth = {"Authorization": f"Bearer {v2.v1_key}"}
        hook = {"url": receiver.url("/v1"), "event_types": ["verification.expired"]}
        assert httpx.put(f"{v2.base}/v1/webhook", headers=auth, json=hook).status_code == 200
        assert httpx.post(f"{v2.base}/v1/verifications", headers=auth, json={"to": new_number()}).status_code == 201
        assert verify.delete() is True

        async def revoke(client: aioredis.Redis) -> bool:
            return await apikeys.revoke(Store(client, partitions=v2.settings.partitions), v2.v1_key.split("_")[1])

        assert _redis(redis_url, revoke)
        # Both SMS's delivered callbacks are in (each queues a message.delivered event) before the
        # clock moves, so no event can arrive after the wait below has seen the queue empty.
        deadline = time.monotonic() + 20
        while sum(p.get("MessageStatus") == "delivered" for _, p, _ in v2.stub.callbacks_sent) < 2:
            assert time.monotonic() < deadline, v2.stub.callbacks_sent
            time.sleep(0.02)
        clock.advance(v2.settings.code_ttl + 1)
        deadline = time.monotonic() + 20
        while _count(redis_url, "otp:*whe:*") and time.monotonic() < deadline:
            time.sleep(0.02)

        async def left(client: aioredis.Redis) -> list[Any]:
            return [(k, await client.hgetall(k)) async for k in client.scan_iter("otp:*whe:*")]

        assert _count(redis_url, "otp:*whe:*") == 0, _redis(redis_url, left)  # claimed when due, and dropped
        assert receiver.events() == []


# -- one tenant's slow endpoint ------------------------------------------------------------------


def test_a_tenants_hanging_webhook_endpoint_does_not_hold_up_another_tenants_sms(v2: V2, receiver: Receiver) -> None:
    release = threading.Event()

    def hang(handler: BaseHTTPRequestHandler) -> None:
        release.wait(4.0)  # under the post timeout (5 s): the worst a tenant's endpoint may do
        handler.send_response(200)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    receiver.extra["/hang"] = hang
    try:
        attacker = v2.client()
        verify = attacker.verify.v2.services(service(attacker).sid)
        verify.webhooks.create(friendly_name="slow", event_types=["*"], webhook_url=receiver.url("/hang"))
        verify.verifications.create(to=new_number(), channel="sms")
        deadline = time.monotonic() + 5
        while not receiver.hits.get("/hang") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert receiver.hits.get("/hang"), "the attacker's endpoint was never posted to"
        victim = v2.client(v2.other).verify.v2.services(service(v2.client(v2.other)).sid)
        to = new_number()
        asked = time.monotonic()
        victim.verifications.create(to=to, channel="sms")
        v2.code(to, timeout=5)
        assert time.monotonic() - asked < 1.5, "the victim's SMS waited behind the attacker's webhook"
    finally:
        release.set()
