"""A webhook URL is tenant input that otp's servers fetch: the SSRF attacks, each refused. When the
webhook is saved (/v2 and /v1), and at each send on the address actually connected to (DNS
rebinding), with no redirect followed, a deadline, and a bounded read of the answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest
from test_twilio_compat import V2, refused, service
from webhook_receiver import Receiver, receiving

from otp.core import urlguard
from otp.edge.webhook_sender import WebhookPoster
from otp.errors import InvalidInput

ATTACKS = [
    ("http://example.com/hook", "https"),  # plain http: only where the operator allows private targets
    ("https://127.0.0.1/hook", "loopback"),
    ("https://localhost:8443/hook", "loopback"),  # a name that resolves to loopback
    ("https://[::1]/hook", "loopback"),
    ("https://[::ffff:127.0.0.1]/hook", "loopback"),  # IPv4-mapped IPv6
    ("https://169.254.169.254/latest/meta-data/", "loopback"),  # cloud metadata (link-local)
    ("https://10.0.0.5/hook", "loopback"),
    ("https://192.168.1.1/hook", "loopback"),
    ("https://100.64.0.1/hook", "loopback"),  # shared (CGNAT) space
    ("https://0.0.0.0/hook", "loopback"),
    ("https://224.0.0.1/hook", "loopback"),  # multicast
    ("https://user:secret@example.com/hook", "credentials"),
    ("ftp://example.com/hook", "https"),
    ("file:///etc/passwd", "https"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "https"),
    ("https://exa mple.com/hook", "URL"),
]


@pytest.fixture
def v2(redis_url: str) -> Iterator[V2]:
    from test_twilio_compat import serve

    with serve(redis_url) as live:  # the production default: no private targets
        yield live


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from receiving()


def test_each_ssrf_target_is_refused_when_a_v2_webhook_is_saved(v2: V2) -> None:
    hooks = v2.client().verify.v2.services(service(v2.client()).sid).webhooks
    for url, _ in ATTACKS:
        error = refused(lambda url=url: hooks.create(friendly_name="x", event_types=["*"], webhook_url=url))
        assert (error.status, error.code) == (400, 60200), url
        assert "`WebhookUrl`" in error.msg, (url, error.msg)
    assert hooks.list() == []


def test_a_local_receiver_refused_by_default_names_the_development_switch(v2: V2) -> None:
    hooks = v2.client().verify.v2.services(service(v2.client()).sid).webhooks
    for url in ("http://127.0.0.1:8081/hook", "https://localhost:8443/hook"):
        error = refused(lambda url=url: hooks.create(friendly_name="x", event_types=["*"], webhook_url=url))
        assert "OTP_WEBHOOK_ALLOW_PRIVATE=1" in error.msg, (url, error.msg)
    # Where nothing would lift the refusal, the switch is not offered.
    error = refused(lambda: hooks.create(friendly_name="x", event_types=["*"], webhook_url="ftp://example.com/"))
    assert error.msg.endswith("must be an https URL"), error.msg


def test_where_private_targets_are_allowed_plain_http_is_named_with_https() -> None:
    with pytest.raises(InvalidInput, match="must be an http or https URL"):
        urlguard.parse("ftp://example.com/hook", "url", allow_private=True)


def test_each_ssrf_target_is_refused_when_a_v1_webhook_is_saved(v2: V2) -> None:
    auth = {"Authorization": f"Bearer {v2.v1_key}"}
    for url, _ in ATTACKS:
        answer = httpx.put(f"{v2.base}/v1/webhook", headers=auth, json={"url": url, "event_types": ["*"]})
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["error"]["field"] == "url"
    assert httpx.get(f"{v2.base}/v1/webhook", headers=auth).status_code == 404


# -- at send time ---------------------------------------------------------------------------------


def _resolving_to(address: str) -> urlguard.Resolve:
    async def resolve(host: str, port: int) -> list[str]:
        return [address]

    return resolve


async def test_a_name_that_rebinds_to_loopback_is_not_posted_to(receiver: Receiver) -> None:
    url = f"http://rebind.test:{receiver.port}/hook"
    # Saved while it resolved to a public address; it resolves to loopback at the send.
    guarded = WebhookPoster(allow_private=False, resolve=_resolving_to("127.0.0.1"))
    result = await guarded.post(url.replace("http:", "https:"), {"a": "1"}, {})
    await guarded.aclose()
    assert result.status == -1 and not result.retryable
    # The same post where private targets are allowed reaches the receiver: the address was the refusal.
    allowed = WebhookPoster(allow_private=True, resolve=_resolving_to("127.0.0.1"))
    assert (await allowed.post(url, {"a": "1"}, {})).delivered
    await allowed.aclose()
    assert len(receiver.events()) == 1


async def test_a_literal_private_address_is_refused_at_the_send(receiver: Receiver) -> None:
    poster = WebhookPoster(allow_private=False)
    result = await poster.post(f"https://127.0.0.1:{receiver.port}/hook", {"a": "1"}, {})
    await poster.aclose()
    assert result.status == -1
    assert receiver.hits == {}


def _redirect(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(302)
    handler.send_header("Location", "/hook")
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _slow(handler: BaseHTTPRequestHandler) -> None:
    time.sleep(2.0)
    handler.send_response(200)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _huge(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(50 * 1024 * 1024))
    handler.end_headers()
    try:
        for _ in range(50 * 1024):
            handler.wfile.write(b"x" * 1024)
    except OSError:
        pass  # the poster stopped reading and closed: what is under test


async def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.extra["/redirect"] = _redirect
    poster = WebhookPoster(allow_private=True)
    result = await poster.post(receiver.url("/redirect"), {"a": "1"}, {})
    await poster.aclose()
    assert result.status == 302 and not result.delivered and not result.retryable
    assert "/hook" not in receiver.hits


async def test_a_slow_endpoint_times_out_and_is_retried_later(receiver: Receiver) -> None:
    receiver.extra["/slow"] = _slow
    poster = WebhookPoster(allow_private=True, timeout=0.3)
    started = time.monotonic()
    result = await poster.post(receiver.url("/slow"), {"a": "1"}, {})
    await poster.aclose()
    assert result.status == 0 and result.retryable
    assert time.monotonic() - started < 1.5


async def test_a_huge_answer_is_not_read_beyond_a_few_kilobytes(receiver: Receiver) -> None:
    receiver.extra["/huge"] = _huge
    poster = WebhookPoster(allow_private=True, timeout=5.0)
    started = time.monotonic()
    result = await poster.post(receiver.url("/huge"), {"a": "1"}, {})
    await poster.aclose()
    assert result.delivered
    assert time.monotonic() - started < 2.0
