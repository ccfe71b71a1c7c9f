"""The Twilio stand-in, driven by the real `twilio` SDK: if these pass, code that talks to Twilio
through the SDK can be tested against the stub without the network."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from otp.devtools.twilio_stub import TwilioStub, count_segments
from otp.edge.embedded_redis import free_port

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "stub-test-auth-token"
SERVICE_SID = "MG" + "2" * 32
FROM = "+15005550006"
TO = "+15017122661"
SID = re.compile(r"^SM[0-9a-f]{32}$")
CALLBACK_FIELDS = {"MessageSid", "SmsSid", "AccountSid", "From", "To", "MessageStatus", "SmsStatus", "ApiVersion"}


class StubHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no type hints
    """Sends whatever the SDK addresses to Twilio (api.twilio.com, or any edge/region host such as
    api.dublin.ie1.twilio.com) to the stub instead."""

    _TWILIO = re.compile(r"^https://(?:[a-z0-9-]+\.)*twilio\.com(?=/|$)", re.IGNORECASE)

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")
        self.urls: list[str] = []
        if self.session is not None:
            self.session.trust_env = False  # a proxy from the environment must not see loopback traffic

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        url = self._TWILIO.sub(self.base_url, url, count=1)
        self.urls.append(url)
        return super().request(method, url, *args, **kwargs)


@dataclass
class Received:
    url: str
    params: dict[str, str]
    signature: str
    token: str
    at: float


@dataclass
class Receiver:
    """A tiny status-callback endpoint on 127.0.0.1 that keeps what Twilio (the stub) posted."""

    answer: int = 204
    calls: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def callback_url(self, query: str = "tenant=acme&v=1") -> str:
        return f"{self.base}/twilio/status?{query}"

    def statuses(self) -> list[str]:
        return [c.params["MessageStatus"] for c in self.calls]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            with lock:
                state.calls.append(
                    Received(
                        url=state.base + self.path,
                        params=dict(urllib.parse.parse_qsl(body, keep_blank_values=True)),
                        signature=self.headers.get("X-Twilio-Signature", ""),
                        token=self.headers.get("I-Twilio-Idempotency-Token", ""),
                        at=time.monotonic(),
                    )
                )
            self.send_response(state.answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    state.server.shutdown()
    state.server.server_close()


@pytest.fixture
def stub() -> Iterator[TwilioStub]:
    with TwilioStub(ACCOUNT_SID, AUTH_TOKEN) as running:
        yield running


def sdk(stub: TwilioStub, *, password: str = AUTH_TOKEN, timeout: float | None = None, **kwargs: Any) -> Client:
    return Client(ACCOUNT_SID, password, http_client=StubHttpClient(stub.url, timeout=timeout), **kwargs)


def send(client: Client, receiver: Receiver | None = None, to: str = TO, **kwargs: Any) -> Any:
    kwargs.setdefault("from_", FROM)
    kwargs.setdefault("body", "Your code is 123456")
    if receiver is not None:
        kwargs.setdefault("status_callback", receiver.callback_url())
    return client.messages.create(to=to, **kwargs)


def assert_signed(receiver: Receiver) -> None:
    validator = RequestValidator(AUTH_TOKEN)
    for call in receiver.calls:
        assert "?" in call.url  # the query string is part of what Twilio signs
        assert validator.validate(call.url, call.params, call.signature), call
        assert not RequestValidator("another-token").validate(call.url, call.params, call.signature)


def test_create_answers_like_twilio_and_posts_signed_callbacks(stub: TwilioStub, receiver: Receiver) -> None:
    message = send(sdk(stub), receiver)

    assert SID.match(message.sid)
    assert message.status == "queued"
    assert (message.account_sid, message.to, message.from_) == (ACCOUNT_SID, TO, FROM)
    assert message.body == "Your code is 123456"
    assert (message.num_segments, message.num_media, message.direction) == ("1", "0", "outbound-api")
    assert (message.price, message.price_unit, message.error_code, message.error_message) == (None, "USD", None, None)
    assert message.api_version == "2010-04-01"
    assert message.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message.sid}.json"
    assert message.date_created is not None and message.date_created.tzinfo is not None
    assert "media" in message.subresource_uris

    stub.wait_for_callbacks(3)
    assert receiver.statuses() == ["queued", "sent", "delivered"]
    assert_signed(receiver)
    for call in receiver.calls:
        assert CALLBACK_FIELDS <= set(call.params)
        assert call.params["MessageSid"] == call.params["SmsSid"] == message.sid
        assert call.params["MessageStatus"] == call.params["SmsStatus"]
        assert (call.params["AccountSid"], call.params["To"], call.params["From"]) == (ACCOUNT_SID, TO, FROM)
        assert call.params["ApiVersion"] == "2010-04-01"
        assert "ErrorCode" not in call.params
    assert [status for _, _, status in stub.callbacks_sent] == [204, 204, 204]
    assert stub.callbacks_sent[0][0] == receiver.callback_url()

    recorded = stub.messages
    assert len(recorded) == 1
    assert (recorded[0].sid, recorded[0].status, recorded[0].num_segments) == (message.sid, "delivered", 1)
    fetched = sdk(stub).messages(message.sid).fetch()
    assert (fetched.status, fetched.date_sent is not None, fetched.price) == ("delivered", True, "-0.00790")


def test_messaging_service_message_is_accepted_without_a_sender(stub: TwilioStub, receiver: Receiver) -> None:
    message = send(sdk(stub), receiver, from_=None, messaging_service_sid=SERVICE_SID)

    assert (message.status, message.from_, message.messaging_service_sid) == ("accepted", None, SERVICE_SID)
    stub.wait_for_callbacks(3)
    assert receiver.statuses() == ["queued", "sent", "delivered"]
    assert all(c.params["MessagingServiceSid"] == SERVICE_SID and c.params["From"] for c in receiver.calls)
    assert_signed(receiver)


@pytest.mark.parametrize(
    ("outcome", "statuses", "code"),
    [("undelivered", ["sent", "undelivered"], "30003"), ("failed", ["failed"], "30008")],
)
def test_unsuccessful_outcomes_carry_an_error_code(
    stub: TwilioStub, receiver: Receiver, outcome: str, statuses: list[str], code: str
) -> None:
    stub.script(TO, outcome)
    message = send(sdk(stub), receiver)

    stub.wait_for_callbacks(len(statuses))
    assert receiver.statuses() == statuses
    assert receiver.calls[-1].params["ErrorCode"] == code
    assert all("ErrorCode" not in c.params for c in receiver.calls[:-1])
    assert_signed(receiver)
    fetched = sdk(stub).messages(message.sid).fetch()
    assert (fetched.status, fetched.error_code) == (outcome, int(code))
    assert fetched.error_message


def test_scripts_apply_per_number_and_default_to_delivered(stub: TwilioStub, receiver: Receiver) -> None:
    stub.script("+447700900123", "failed", error_code=30007)
    client = sdk(stub)
    send(client, receiver, to="+447700900123")
    stub.wait_for_callbacks(1)
    send(client, receiver)
    stub.wait_for_callbacks(4)
    assert receiver.statuses() == ["failed", "queued", "sent", "delivered"]
    assert receiver.calls[0].params["ErrorCode"] == "30007"
    with pytest.raises(ValueError, match="unknown outcome"):
        stub.script(TO, "lost")
    with pytest.raises(TypeError, match="dealy"):
        stub.script(TO, "delayed", dealy=1)


def test_delayed_callbacks_start_after_the_delay(stub: TwilioStub, receiver: Receiver) -> None:
    stub.script(TO, "delayed", delay=0.4)
    started = time.monotonic()
    send(sdk(stub), receiver)

    time.sleep(0.2)
    assert receiver.calls == []
    stub.wait_for_callbacks(3)
    assert receiver.statuses() == ["queued", "sent", "delivered"]
    assert receiver.calls[0].at - started >= 0.4
    assert_signed(receiver)


def test_duplicate_posts_every_callback_twice(stub: TwilioStub, receiver: Receiver) -> None:
    stub.script(TO, "duplicate")
    send(sdk(stub), receiver)

    stub.wait_for_callbacks(6)
    assert receiver.statuses() == ["queued", "queued", "sent", "sent", "delivered", "delivered"]
    first, second = receiver.calls[0::2], receiver.calls[1::2]
    for a, b in zip(first, second, strict=True):
        assert (a.params, a.signature, a.token) == (b.params, b.signature, b.token)
    assert len({c.token for c in first}) == 3
    assert_signed(receiver)


def test_out_of_order_posts_delivered_before_sent_but_the_record_ends_delivered(
    stub: TwilioStub, receiver: Receiver
) -> None:
    stub.script(TO, "out_of_order")
    message = send(sdk(stub), receiver)

    stub.wait_for_callbacks(3)
    assert receiver.statuses() == ["queued", "delivered", "sent"]
    assert receiver.calls[1].at < receiver.calls[2].at
    assert_signed(receiver)
    assert sdk(stub).messages(message.sid).fetch().status == "delivered"


def test_early_callbacks_arrive_before_create_returns(stub: TwilioStub, receiver: Receiver) -> None:
    stub.script(TO, "early")
    message = send(sdk(stub), receiver)
    arrived_before_answer = receiver.statuses()

    assert arrived_before_answer == ["queued", "sent"]
    assert all(c.params["MessageSid"] == message.sid for c in receiver.calls)
    assert message.status == "queued"  # the answer is the one Twilio built before dispatching
    stub.wait_for_callbacks(3)
    assert receiver.statuses() == ["queued", "sent", "delivered"]
    assert_signed(receiver)

    stub.script("+15017122662", "early", count=3)
    send(sdk(stub), receiver, to="+15017122662")
    assert receiver.statuses()[3:] == ["queued", "sent", "delivered"]


def test_silent_posts_nothing_but_a_fetch_settles_it(stub: TwilioStub, receiver: Receiver) -> None:
    stub.script(TO, "silent")
    message = send(sdk(stub), receiver)

    assert message.status == "queued"
    fetched = sdk(stub).messages(message.sid).fetch()
    assert (fetched.sid, fetched.status, fetched.error_code) == (message.sid, "delivered", None)
    time.sleep(0.15)
    assert receiver.calls == [] and stub.callbacks_sent == []


def test_reject_raises_twilio_rest_exception(stub: TwilioStub) -> None:
    stub.script(TO, "reject")
    with pytest.raises(TwilioRestException) as caught:
        send(sdk(stub))
    assert (caught.value.status, caught.value.code) == (400, 21211)
    assert TO in caught.value.msg

    stub.script(TO, "reject", code=21610, message="Attempt to send to unsubscribed recipient")
    with pytest.raises(TwilioRestException) as caught:
        send(sdk(stub))
    assert (caught.value.status, caught.value.code) == (400, 21610)
    assert "unsubscribed" in caught.value.msg
    assert stub.messages == []


@pytest.mark.parametrize("status", [500, 503, 429])
def test_fail_next_fails_once_then_recovers(stub: TwilioStub, receiver: Receiver, status: int) -> None:
    stub.fail_next(1, status)
    client = sdk(stub)
    with pytest.raises(TwilioRestException) as caught:
        send(client, receiver)
    assert caught.value.status == status
    assert caught.value.code == 20000 + status
    assert stub.messages == []

    message = send(client, receiver)
    assert message.status == "queued"
    assert [m.sid for m in stub.messages] == [message.sid]


def test_hang_next_outlasts_a_client_timeout_but_the_message_went_out(stub: TwilioStub, receiver: Receiver) -> None:
    stub.hang_next(1, 0.5)
    client = sdk(stub, timeout=0.15)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        send(client, receiver)
    assert time.monotonic() - started < 0.45
    assert len(stub.messages) == 1  # Twilio accepted it even though the answer never arrived

    stub.wait_for_callbacks(3)  # ...and delivers it, so a retry would send the code twice
    assert receiver.statuses() == ["queued", "sent", "delivered"]
    message = send(client, receiver)
    assert message.sid != stub.messages[0].sid


def test_wrong_credentials_get_401(stub: TwilioStub) -> None:
    with pytest.raises(TwilioRestException) as caught:
        send(sdk(stub, password="wrong-token"))
    assert (caught.value.status, caught.value.code) == (401, 20003)

    other_account = "AC" + "9" * 32  # right credentials, someone else's account in the URL
    with pytest.raises(TwilioRestException) as caught:
        send(sdk(stub, account_sid=other_account))
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert stub.messages == []


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"to": "5017122661"}, 21211),
        ({"to": "+0123456789"}, 21211),
        ({"from_": None}, 21603),
        ({"body": None}, 21602),
        ({"status_callback": "ftp://example.test/cb"}, 21609),
    ],
)
def test_invalid_requests_get_twilio_validation_errors(stub: TwilioStub, fields: dict[str, Any], code: int) -> None:
    to = fields.pop("to", TO)
    with pytest.raises(TwilioRestException) as caught:
        send(sdk(stub), to=to, **fields)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert stub.messages == []


def test_fetch_of_an_unknown_sid_is_404(stub: TwilioStub) -> None:
    with pytest.raises(TwilioRestException) as caught:
        sdk(stub).messages("SM" + "0" * 32).fetch()
    assert (caught.value.status, caught.value.code) == (404, 20404)


def test_edge_and_region_hosts_are_redirected_too(stub: TwilioStub) -> None:
    http = StubHttpClient(stub.url)
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http, edge="dublin", region="ie1")
    message = send(client)
    assert message.status == "queued"
    assert http.urls == [f"{stub.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"]
    assert StubHttpClient._TWILIO.match("https://api.dublin.ie1.twilio.com/2010-04-01")
    assert not StubHttpClient._TWILIO.match("https://api.twilio.com.evil.test/2010-04-01")


def test_unreachable_or_failing_receivers_are_recorded_not_raised(stub: TwilioStub, receiver: Receiver) -> None:
    dead = f"http://127.0.0.1:{free_port()}/status"
    client = sdk(stub)
    stub.script(TO, "failed")
    send(client, status_callback=dead)
    stub.wait_for_callbacks(1)
    assert stub.callbacks_sent == [(dead, stub.callbacks_sent[0][1], 0)]

    receiver.answer = 500
    send(client, receiver)
    stub.wait_for_callbacks(2)
    assert stub.callbacks_sent[1][2] == 500
    assert len(stub.messages) == 2


def test_messages_without_a_callback_still_settle(stub: TwilioStub) -> None:
    message = send(sdk(stub))
    deadline = time.monotonic() + 2
    while stub.messages[0].status != "delivered" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sdk(stub).messages(message.sid).fetch().status == "delivered"
    assert stub.callbacks_sent == []


def test_wait_for_callbacks_times_out(stub: TwilioStub) -> None:
    with pytest.raises(TimeoutError):
        stub.wait_for_callbacks(1, timeout=0.05)


def test_segment_counts() -> None:
    assert count_segments("a" * 160) == 1
    assert count_segments("a" * 161) == 2
    assert count_segments("€" * 80) == 1  # extension characters take two septets...
    assert count_segments("€" * 81) == 2  # ...so 81 of them overflow one segment
    assert count_segments("é" * 160) == 1  # in the GSM basic set
    assert count_segments("ł" * 70) == 1
    assert count_segments("ł" * 71) == 2
    assert count_segments("👍" * 35) == 1  # one emoji is two UTF-16 units
    assert count_segments("👍" * 36) == 2


def test_long_unicode_body_reports_its_segments(stub: TwilioStub) -> None:
    message = send(sdk(stub), body="Kod weryfikacyjny: 123456. " * 3 + "Zażółć gęślą jaźń")
    assert message.num_segments == "2"


@dataclass
class StubMain:
    """`python -m otp.devtools.twilio_stub` running: the line it printed first; once stopped, its
    exit status and the rest of what it printed."""

    first: str
    returncode: int | None = None
    output: str = ""


@contextmanager
def stub_main(*args: str) -> Iterator[StubMain]:
    """The stand-in's command line run with ``args``, stopped (SIGTERM) after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "otp.devtools.twilio_stub", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        ran = StubMain(process.stdout.readline())
        yield ran
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    ran.output, ran.returncode = output, process.returncode


def test_main_serves_and_prints_what_it_receives() -> None:
    port = free_port()
    args = ["--port", str(port), "--account-sid", ACCOUNT_SID, "--auth-token", AUTH_TOKEN, "--script", f"{TO}=silent"]
    with stub_main(*args) as process:
        first = process.first
        assert f"http://127.0.0.1:{port}" in first, first
        http = StubHttpClient(f"http://127.0.0.1:{port}")
        message = send(Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http))
        assert Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http).messages(message.sid).fetch().status == "delivered"
    assert process.returncode == 0
    assert message.sid in process.output and "silent" in process.output


def test_main_scripts_error_codes_and_lookup_answers_from_the_command_line() -> None:
    port = free_port()
    stop, unregistered, landline, app = "+15017122662", "+15017122663", "+15017122664", "+15017122665"
    args = ["--port", str(port), "--account-sid", ACCOUNT_SID, "--auth-token", AUTH_TOKEN]
    args += ["--script", f"{stop}=reject:21610", "--script", f"{unregistered}=failed:30034"]
    args += ["--lookup", f"{landline}=landline", "--lookup", f"{app}=nonFixedVoip:Google"]
    with stub_main(*args) as process:
        assert f"http://127.0.0.1:{port}" in process.first
        client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=StubHttpClient(f"http://127.0.0.1:{port}"))
        with pytest.raises(TwilioRestException) as refused:
            send(client, to=stop)
        assert refused.value.code == 21610
        failed = send(client, to=unregistered)
        deadline = time.monotonic() + 10
        while (fetched := client.messages(failed.sid).fetch()).status != "failed" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (fetched.status, fetched.error_code) == ("failed", 30034)
        types = {
            n: client.lookups.v2.phone_numbers(n).fetch(fields="line_type_intelligence").line_type_intelligence
            for n in (landline, app, TO)
        }
        assert types[landline]["type"] == "landline"
        assert (types[app]["type"], types[app]["carrier_name"]) == ("nonFixedVoip", "Google")
        assert types[TO]["type"] == "mobile"
    assert "-> 400 error 21610 (reject)" in process.output


def test_main_refuses_a_code_for_an_outcome_that_carries_none() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "otp.devtools.twilio_stub", "--script", f"{TO}=delivered:30003"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert process.returncode == 2
    assert "+NUMBER=OUTCOME[:CODE]" in process.stderr and "undelivered, failed, reject only" in process.stderr


def test_the_stand_in_keeps_connections_alive_like_twilio_and_hangs_up_when_stopped(stub: TwilioStub) -> None:
    path, form = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", {"To": TO, "From": FROM, "Body": "hi"}
    connection = http.client.HTTPConnection("127.0.0.1", stub.port, timeout=5)
    try:
        for _ in range(2):  # refused before the form is read: the second request is still understood
            connection.request("POST", path, urllib.parse.urlencode(form), {"Authorization": "Basic bm9ib2R5Og=="})
            answer = connection.getresponse()
            answer.read()
            assert (answer.status, answer.version, answer.will_close) == (401, 11, False)  # HTTP/1.1, kept open
        stub.stop()
        with pytest.raises((http.client.HTTPException, OSError)):
            connection.request("POST", path, urllib.parse.urlencode(form))
            connection.getresponse()
    finally:
        connection.close()
