"""A loopback stand-in for Twilio's Messages API, for tests and local demos.

It answers the two calls the real `twilio` SDK makes for SMS (create and fetch a Message) in the
wire format of the 2010-04-01 API, and then posts status callbacks signed with the account's auth
token exactly as Twilio does (`X-Twilio-Signature` over the full callback URL plus the sorted POST
parameters), so the code under test runs its real signature check.  Per recipient it can script
the awkward cases a real carrier produces: undelivered, failed, late, duplicated, reordered and
early callbacks, silence, rejection, server errors and slow answers.

Stdlib only, apart from `twilio.request_validator` for the signature, so the signing can never
drift from the validator the application uses.  Run it by hand with
``python -m otp.devtools.twilio_stub --port 8099 --account-sid AC... --auth-token ...``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import json
import re
import secrets
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Final

from twilio.request_validator import RequestValidator

from otp.core.messages import segments

API_VERSION: Final = "2010-04-01"
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
    "early": frozenset({"count"}),
    "silent": frozenset(),
    "reject": frozenset({"code", "message"}),
}
# Twilio assigns a sender from the Messaging Service's pool; this is its magic always-valid test number.
SERVICE_SENDER: Final = "+15005550006"
# Gap between consecutive callbacks of one message: long enough that arrival order is the posting order.
CALLBACK_GAP: Final = 0.02
CALLBACK_TIMEOUT: Final = 5.0

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_CREATE_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
_FETCH_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages/(?P<sid>[^/]+)\.json$")

_ERROR_MESSAGES: Final[dict[int, str]] = {
    20003: "Authenticate",
    20004: "Method not allowed",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "Invalid 'To' Phone Number",
    21602: "Message body is required.",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
    21604: "A 'To' phone number is required.",
    21609: "Invalid StatusCallback url",
    21610: "Attempt to send to unsubscribed recipient",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
}
# Where a status sits in a message's life; the stored status only ever moves forward, so
# callbacks that the stub posts out of order do not rewind what a GET reports.
_RANK: Final[dict[str, int]] = {
    "accepted": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
}
_PRICE_PER_SEGMENT: Final = 0.0079


def count_segments(body: str) -> int:
    return segments(body)


def error_body(code: int, status: int, message: str | None = None) -> dict[str, Any]:
    """Twilio's legacy error document; the SDK turns it into a `TwilioRestException`."""
    return {
        "code": code,
        "message": message or _ERROR_MESSAGES.get(code, HTTPStatus(status).phrase),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment.astimezone(UTC))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class StubMessage:
    """One accepted message as the stub holds it; `messages` hands out copies."""

    sid: str
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    status: str
    error_code: int | None
    error_message: str | None
    date_created: datetime
    num_segments: int
    price: str | None
    date_updated: datetime | None = None
    date_sent: datetime | None = None
    outcome: str = "delivered"

    def resource(self, *, fresh: bool = False) -> dict[str, Any]:
        """The `api.v2010.account.message` JSON document.  ``fresh`` is the create answer: a
        Messaging Service message has no sender and no segment count until it is dispatched."""
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        pending_service = fresh and self.messaging_service_sid is not None
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": _rfc2822(self.date_created),
            "date_sent": _rfc2822(self.date_sent),
            "date_updated": _rfc2822(self.date_updated or self.date_created),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": None if pending_service else self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": "0" if pending_service else str(self.num_segments),
            "price": self.price,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
            "to": self.to,
            "uri": f"{uri}.json",
        }


@dataclass(frozen=True)
class _Script:
    outcome: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Step:
    """One status change; ``posts`` is how many identical callbacks announce it (0 = none)."""

    status: str
    error_code: int | None = None
    posts: int = 1


@dataclass(frozen=True)
class _Plan:
    steps: tuple[_Step, ...]
    delay: float = 0.0
    early: int = 0  # steps played inside the create request, before its answer
    instant: bool = False  # steps applied at once (nothing is posted, so there is nothing to pace)


def _plan(script: _Script) -> _Plan:
    outcome, options = script.outcome, script.options
    delivered = (_Step("queued"), _Step("sent"), _Step("delivered"))
    if outcome == "undelivered":
        return _Plan((_Step("sent"), _Step("undelivered", int(options.get("error_code", 30003)))))
    if outcome == "failed":
        return _Plan((_Step("failed", int(options.get("error_code", 30008))),))
    if outcome == "delayed":
        return _Plan(delivered, delay=float(options.get("delay", 1.0)))
    if outcome == "duplicate":
        return _Plan(tuple(dataclasses.replace(step, posts=2) for step in delivered))
    if outcome == "out_of_order":
        return _Plan((delivered[0], delivered[2], delivered[1]))
    if outcome == "early":
        return _Plan(delivered, early=max(0, min(int(options.get("count", 2)), len(delivered))))
    if outcome == "silent":
        return _Plan(tuple(dataclasses.replace(step, posts=0) for step in delivered[1:]), instant=True)
    return _Plan(delivered)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Twilio does not follow redirects from a callback URL; the 3xx is recorded as the answer.
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], stub: TwilioStub) -> None:
        self.stub = stub
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "Twilio.stub"
    sys_version = ""

    def do_POST(self) -> None:
        self.server.stub._handle(self, "POST")

    def do_GET(self) -> None:
        self.server.stub._handle(self, "GET")

    def do_PUT(self) -> None:
        self.server.stub._handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.stub._handle(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the stub reports through its own `log`, not stderr noise per request


class TwilioStub:
    """A Twilio Messages API on 127.0.0.1.  Use as a context manager, or `start()` / `stop()`."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host = host
        self.port = port
        self._log = log
        self._validator = RequestValidator(auth_token)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        self._lock = threading.Lock()
        self._callbacks_changed = threading.Condition(self._lock)
        self._messages: list[StubMessage] = []
        self._by_sid: dict[str, StubMessage] = {}
        self._callbacks: list[tuple[str, dict[str, str], int]] = []
        self._scripts: dict[str, _Script] = {}
        self._failures: list[int] = []
        self._hangs: list[float] = []
        self._workers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("TwilioStub already started")
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = int(self._server.server_address[1])
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="twilio-stub", daemon=True
        )
        self._serve_thread.start()

    def stop(self) -> None:
        self._stopping.set()  # wakes hanging requests and pending callback plans
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._serve_thread is not None:
            self._serve_thread.join(timeout=5)
            self._serve_thread = None
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.join(timeout=CALLBACK_TIMEOUT + 1)

    def __enter__(self) -> TwilioStub:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("TwilioStub is not running")
        return f"http://{self.host}:{self.port}"

    # -- test controls ---------------------------------------------------------------------------

    def script(self, to: str, outcome: str, **options: Any) -> None:
        """How future messages to ``to`` go; unscripted numbers are "delivered"."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}")
        unknown = set(options) - _OPTIONS[outcome]
        if unknown:
            raise TypeError(f"outcome {outcome!r} takes no option(s) {sorted(unknown)}")
        with self._lock:
            self._scripts[to] = _Script(outcome, dict(options))

    def fail_next(self, count: int, status: int = 500) -> None:
        """The next ``count`` creates answer ``status`` with a Twilio error body and record nothing."""
        with self._lock:
            self._failures.extend([status] * count)

    def hang_next(self, count: int, seconds: float) -> None:
        """The next ``count`` creates are recorded at once but answered only after ``seconds``, as
        when Twilio accepted a message and the answer was slow: a client that times out has sent it."""
        with self._lock:
            self._hangs.extend([seconds] * count)

    @property
    def messages(self) -> list[StubMessage]:
        """Copies of every accepted message, in order, as they stand now."""
        with self._lock:
            return [dataclasses.replace(m) for m in self._messages]

    def message(self, sid: str) -> StubMessage | None:
        with self._lock:
            found = self._by_sid.get(sid)
            return None if found is None else dataclasses.replace(found)

    @property
    def callbacks_sent(self) -> list[tuple[str, dict[str, str], int]]:
        """(url, params, status the receiver answered; 0 if it could not be reached), in post order."""
        with self._lock:
            return [(url, dict(params), status) for url, params, status in self._callbacks]

    def wait_for_callbacks(self, count: int, timeout: float = 5.0) -> None:
        """Block until at least ``count`` callbacks have been posted (and answered or refused)."""
        deadline = time.monotonic() + timeout
        with self._callbacks_changed:
            while len(self._callbacks) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    statuses = [params.get("MessageStatus") for _, params, _ in self._callbacks]
                    raise TimeoutError(f"{len(self._callbacks)} of {count} callbacks after {timeout}s: {statuses}")
                self._callbacks_changed.wait(left)

    # -- HTTP ------------------------------------------------------------------------------------

    def _handle(self, request: _Handler, method: str) -> None:
        try:
            path = urllib.parse.urlsplit(request.path).path
            create, fetch = _CREATE_PATH.match(path), _FETCH_PATH.match(path)
            match = create or fetch
            if match is None:
                self._send(request, 404, error_body(20404, 404, f"The requested resource {path} was not found"))
                return
            if not self._authorized(request, match["account"]):
                self._send(
                    request,
                    401,
                    {**error_body(20003, 401), "detail": "Your AccountSid or AuthToken was incorrect."},
                    {"WWW-Authenticate": 'Basic realm="Twilio API"'},
                )
                return
            if create and method == "POST":
                self._create(request)
            elif create and method == "GET":
                self._list(request, path)
            elif fetch and method == "GET":
                self._fetch(request, fetch["sid"], path)
            else:
                self._send(request, 405, error_body(20004, 405))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to answer

    def _authorized(self, request: _Handler, url_account: str) -> bool:
        scheme, _, encoded = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (
            secrets.compare_digest(user, self.account_sid)
            and secrets.compare_digest(password.encode(), self.auth_token.encode())
            and url_account == user
        )

    def _create(self, request: _Handler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(request.rfile.read(length).decode(), keep_blank_values=True)
        fields = {name: values[-1] for name, values in form.items()}
        self._say(f"POST Messages.json {fields}")

        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            code = 20000 + failure if 400 <= failure < 600 else 20500
            self._send(request, failure, error_body(code, failure))
            return

        to, body = fields.get("To", ""), fields.get("Body", "")
        sender, service = fields.get("From") or None, fields.get("MessagingServiceSid") or None
        callback = fields.get("StatusCallback") or None
        problem: tuple[int, str] | None = None
        if not to:
            problem = (21604, _ERROR_MESSAGES[21604])
        elif not _E164.match(to):
            problem = (21211, f"Invalid 'To' Phone Number: {to}")
        elif sender is None and service is None:
            problem = (21603, _ERROR_MESSAGES[21603])
        elif not body:
            problem = (21602, _ERROR_MESSAGES[21602])
        elif callback is not None and not _valid_callback(callback):
            problem = (21609, f"Invalid StatusCallback url: {callback}")
        if problem is not None:
            self._send(request, 400, error_body(problem[0], 400, problem[1]))
            return

        with self._lock:
            script = self._scripts.get(to, _Script("delivered"))
            if script.outcome == "reject":
                code = int(script.options.get("code", 21211))
                default = f"Invalid 'To' Phone Number: {to}" if code == 21211 else None
                rejected = error_body(code, 400, script.options.get("message", default))
            else:
                rejected = None
                message = StubMessage(
                    sid="SM" + secrets.token_hex(16),
                    account_sid=self.account_sid,
                    to=to,
                    from_=sender or SERVICE_SENDER,
                    messaging_service_sid=service,
                    body=body,
                    status_callback=callback,
                    status="accepted" if service else "queued",
                    error_code=None,
                    error_message=None,
                    date_created=_now(),
                    num_segments=count_segments(body),
                    price=None,
                    outcome=script.outcome,
                )
                self._messages.append(message)
                self._by_sid[message.sid] = message
                answer = message.resource(fresh=True)
            hang = self._hangs.pop(0) if self._hangs and rejected is None else 0.0
        if rejected is not None:
            self._send(request, 400, rejected)
            return

        self._say(f"  -> 201 {message.sid} ({script.outcome})")
        plan = _plan(script)
        if plan.instant:
            for step in plan.steps:
                self._apply(message, step)
        for step in plan.steps[: plan.early]:
            self._announce(message, step)
            self._stopping.wait(CALLBACK_GAP)
        if hang:
            self._stopping.wait(hang)
        try:
            self._send(request, 201, answer)
        finally:
            # Even when the client hung up, Twilio would deliver what it accepted.
            if not plan.instant:
                self._dispatch(message, plan)

    def _list(self, request: _Handler, path: str) -> None:
        """Messages newest first, filtered by ``To`` and ``DateSent>`` as Twilio's list does."""
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.path).query))
        after = query.get("DateSent>")
        since = datetime.fromisoformat(after.replace("Z", "+00:00")) if after else None
        with self._lock:
            found = [
                m.resource()
                for m in reversed(self._messages)
                if (not query.get("To") or m.to == query["To"]) and (since is None or m.date_created >= since)
            ]
        size = int(query.get("PageSize", "50"))
        self._say(f"GET Messages.json {query} -> {len(found)}")
        self._send(
            request,
            200,
            {
                "messages": found[:size],
                "end": max(0, min(size, len(found)) - 1),
                "first_page_uri": path,
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": path,
            },
        )

    def _fetch(self, request: _Handler, sid: str, path: str) -> None:
        with self._lock:
            message = self._by_sid.get(sid)
            answer = None if message is None else message.resource()
        self._say(f"GET {sid} -> {answer['status'] if answer else 404}")
        if answer is None:
            self._send(request, 404, error_body(20404, 404, f"The requested resource {path} was not found"))
        else:
            self._send(request, 200, answer)

    def _send(
        self, request: _Handler, status: int, document: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(document).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(payload)))
        request.send_header("Twilio-Request-Id", "RQ" + secrets.token_hex(16))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(payload)
        request.wfile.flush()

    # -- status callbacks ------------------------------------------------------------------------

    def _dispatch(self, message: StubMessage, plan: _Plan) -> None:
        steps = plan.steps[plan.early :]
        if not steps:
            return
        worker = threading.Thread(
            target=self._play, args=(message, steps, plan.delay), name=f"twilio-stub-{message.sid}", daemon=True
        )
        with self._lock:
            self._workers = [w for w in self._workers if w.is_alive()]
            self._workers.append(worker)
        worker.start()

    def _play(self, message: StubMessage, steps: Sequence[_Step], delay: float) -> None:
        # The first gap lets the create answer reach the client before the first callback does.
        if self._stopping.wait(delay + CALLBACK_GAP):
            return
        for index, step in enumerate(steps):
            if index and self._stopping.wait(CALLBACK_GAP):
                return
            self._announce(message, step)

    def _apply(self, message: StubMessage, step: _Step) -> None:
        with self._lock:
            if _RANK.get(step.status, 0) < _RANK.get(message.status, 0):
                return  # a late, out-of-order callback: the record already moved past it
            now = _now()
            message.status = step.status
            message.date_updated = now
            message.error_code = step.error_code
            message.error_message = (
                None if step.error_code is None else _ERROR_MESSAGES.get(step.error_code, f"Error {step.error_code}")
            )
            if step.status in {"sent", "delivered", "undelivered"}:
                message.date_sent = message.date_sent or now
            if step.status in {"delivered", "undelivered"}:
                message.price = f"-{_PRICE_PER_SEGMENT * message.num_segments:.5f}"

    def _announce(self, message: StubMessage, step: _Step) -> None:
        self._apply(message, step)
        if message.status_callback is None or step.posts == 0:
            return
        params = {
            "AccountSid": message.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_ or SERVICE_SENDER,
            "MessageSid": message.sid,
            "MessageStatus": step.status,
            "SmsSid": message.sid,
            "SmsStatus": step.status,
            "To": message.to,
        }
        if message.messaging_service_sid is not None:
            params["MessagingServiceSid"] = message.messaging_service_sid
        if step.error_code is not None:
            params["ErrorCode"] = str(step.error_code)
        # A duplicate is Twilio retrying one event: same body, same signature, same idempotency token.
        token = f"{secrets.token_hex(16)}-{message.sid}"
        for _ in range(step.posts):
            self._post(message.status_callback, params, token)

    def _post(self, url: str, params: dict[str, str], token: str) -> None:
        signature: str = self._validator.compute_signature(url, params)
        # The scheme was checked to be http(s) when the message was created (_valid_callback).
        request = urllib.request.Request(  # noqa: S310
            url,
            data=urllib.parse.urlencode(params).encode(),
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
                "I-Twilio-Idempotency-Token": token,
                "User-Agent": "TwilioProxy/1.1",
            },
        )
        try:
            with self._opener.open(request, timeout=CALLBACK_TIMEOUT) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError):
            status = 0  # refused, timed out, or not a URL urllib can open: recorded, never raised
        self._say(f"  callback {params['MessageStatus']} {params['MessageSid']} -> {url} [{status}]")
        with self._callbacks_changed:
            self._callbacks.append((url, dict(params), status))
            self._callbacks_changed.notify_all()

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log(line)


def _valid_callback(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def _parse_script(text: str) -> tuple[str, str]:
    to, sep, outcome = text.partition("=")
    if not sep or outcome not in OUTCOMES:
        raise argparse.ArgumentTypeError(f"expected +NUMBER=OUTCOME with OUTCOME in {sorted(OUTCOMES)}")
    return to, outcome


@dataclass
class _Interrupt:
    event: threading.Event = field(default_factory=threading.Event)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="otp twilio-stub",
        description="A loopback stand-in for Twilio's Messages API (create and fetch a Message) that posts "
        "status callbacks signed with the auth token, for demos: point otp at it with "
        "OTP_TWILIO_API_URL=http://HOST:PORT and the same OTP_TWILIO_ACCOUNT_SID / OTP_TWILIO_AUTH_TOKEN. "
        "Also runs as python -m otp.devtools.twilio_stub. Stop it with Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8099, help="listen port (default 8099; 0 picks a free one)")
    parser.add_argument(
        "--account-sid",
        default="AC" + "0" * 32,
        help="the account SID requests must authenticate with (default AC followed by 32 zeros)",
    )
    parser.add_argument(
        "--auth-token",
        default="stub-auth-token",
        help="the auth token requests must authenticate with and callbacks are signed with (default stub-auth-token)",
    )
    parser.add_argument(
        "--script",
        action="append",
        type=_parse_script,
        default=[],
        metavar="+NUMBER=OUTCOME",
        help="script the outcome of every message to one recipient (repeatable); OUTCOME is one of "
        f"{', '.join(sorted(OUTCOMES))} (default delivered)",
    )
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    stub = TwilioStub(args.account_sid, args.auth_token, host=args.host, port=args.port, log=say)
    for to, outcome in args.script:
        stub.script(to, outcome)
    interrupt = _Interrupt()
    try:
        signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        pass  # not the main thread: only Ctrl-C stops it then
    with stub:
        say(f"Twilio stub listening on {stub.url} for account {args.account_sid}")
        say(f"  point the SDK's https://api.twilio.com at {stub.url}; callbacks are signed with the auth token")
        try:
            while not interrupt.event.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
    say("Twilio stub stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
