"""`TwilioStub`: the stand-in's state (messages, scripts, injected failures), its lifecycle and
the controls tests use; it plays each accepted message's plan on a thread of its own."""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from otp.devtools.twilio_stub.account import Account
from otp.devtools.twilio_stub.api import Server
from otp.devtools.twilio_stub.callbacks import CALLBACK_TIMEOUT, Callbacks, Sent
from otp.devtools.twilio_stub.lookups import Lookups
from otp.devtools.twilio_stub.plans import Plan, Script, Step, plan
from otp.devtools.twilio_stub.wire import (
    PRICE_PER_SEGMENT,
    SERVICE_SENDER,
    StubMessage,
    count_segments,
    error_body,
    now,
)

# Gap between consecutive callbacks of one message: long enough that arrival order is the posting order.
CALLBACK_GAP: Final = 0.02


@dataclass(frozen=True)
class Accepted:
    """A create the stub recorded: the answer to give, the plan to play, and how long to stall."""

    message: StubMessage
    answer: dict[str, Any]
    plan: Plan
    hang: float


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host = host
        self.port = port
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._callbacks = Callbacks(auth_token, self._lock, self.say)
        self._messages: list[StubMessage] = []
        self._by_sid: dict[str, StubMessage] = {}
        self._scripts: dict[str, Script] = {}
        self._prices: dict[str, float] = {}
        self._failures: list[int] = []
        self._hangs: list[float] = []
        self._workers: list[threading.Thread] = []
        self._stopping = threading.Event()
        # Lookup v2 line types: scripted answers, failures, slowness, and the calls made.
        self.lookups = Lookups(self._stopping)
        # The account's status, numbers, short codes and Messaging Services (what `otp doctor` reads).
        self.account = Account(account_sid)
        self._server: Server | None = None
        self._serve_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("TwilioStub already started")
        self._stopping.clear()
        self._server = Server((self.host, self.port), self)
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
            server.hang_up()
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
        checked = Script.checked(outcome, options)
        with self._lock:
            self._scripts[to] = checked

    def price(self, to: str, per_segment: float) -> None:
        """What future messages to ``to`` are billed per segment (else `wire.PRICE_PER_SEGMENT`):
        the stand-in fills ``price`` in on the Message resource once it is delivered or undelivered."""
        with self._lock:
            self._prices[to] = per_segment

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
    def callbacks_sent(self) -> list[Sent]:
        """(url, params, status the receiver answered; 0 if it could not be reached), in post order."""
        with self._lock:
            return self._callbacks.sent()

    def wait_for_callbacks(self, count: int, timeout: float = 5.0) -> None:
        """Block until at least ``count`` callbacks have been posted (and answered or refused)."""
        self._callbacks.wait_for(count, timeout)

    # -- what the HTTP handler asks ----------------------------------------------------------------

    def take_failure(self) -> int | None:
        """The status an injected failure makes the next create answer, if one is pending."""
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def accept(self, fields: Mapping[str, str]) -> Accepted | dict[str, Any]:
        """Records a valid create (its fields checked already), or returns the error document a
        "reject" script answers instead."""
        to, body = fields.get("To", ""), fields.get("Body", "")
        service = fields.get("MessagingServiceSid") or None
        with self._lock:
            script = self._scripts.get(to, Script("delivered"))
            if script.outcome == "reject":
                code = int(script.options.get("code", 21211))
                default = f"Invalid 'To' Phone Number: {to}" if code == 21211 else None
                self.say(f"  -> 400 error {code} (reject)")
                return error_body(code, 400, script.options.get("message", default))
            message = StubMessage(
                sid="SM" + secrets.token_hex(16),
                account_sid=self.account_sid,
                to=to,
                from_=fields.get("From") or SERVICE_SENDER,
                messaging_service_sid=service,
                body=body,
                status_callback=fields.get("StatusCallback") or None,
                status="accepted" if service else "queued",
                error_code=None,
                error_message=None,
                date_created=now(),
                num_segments=count_segments(body),
                price=None,
                outcome=script.outcome,
                received_at=self._clock(),
                price_per_segment=self._prices.get(to, PRICE_PER_SEGMENT),
            )
            self._messages.append(message)
            self._by_sid[message.sid] = message
            answer = message.resource(fresh=True)
            hang = self._hangs.pop(0) if self._hangs else 0.0
        self.say(f"  -> 201 {message.sid} ({script.outcome})")
        return Accepted(message, answer, plan(script), hang)

    def before_answer(self, accepted: Accepted) -> None:
        """What happens inside the create request: instant steps, early callbacks, a slow answer."""
        message, steps = accepted.message, accepted.plan
        if steps.instant:
            for step in steps.steps:
                self._apply(message, step)
        for step in steps.steps[: steps.early]:
            self._announce(message, step)
            self._stopping.wait(CALLBACK_GAP)
        if accepted.hang:
            self._stopping.wait(accepted.hang)

    def after_answer(self, accepted: Accepted) -> None:
        """The rest of the plan, on its own thread (even when the client hung up: Twilio would
        deliver what it accepted)."""
        steps = accepted.plan.steps[accepted.plan.early :]
        if accepted.plan.instant or not steps:
            return
        message = accepted.message
        worker = threading.Thread(
            target=self._play,
            args=(message, steps, accepted.plan.delay),
            name=f"twilio-stub-{message.sid}",
            daemon=True,
        )
        with self._lock:
            self._workers = [w for w in self._workers if w.is_alive()]
            self._workers.append(worker)
        worker.start()

    def listed(self, to: str | None, since: Any) -> list[dict[str, Any]]:
        """Messages newest first, filtered by recipient and creation time as Twilio's list does."""
        with self._lock:
            return [
                m.resource()
                for m in reversed(self._messages)
                if (not to or m.to == to) and (since is None or m.date_created >= since)
            ]

    def fetched(self, sid: str) -> dict[str, Any] | None:
        with self._lock:
            message = self._by_sid.get(sid)
            return None if message is None else message.resource()

    def say(self, line: str) -> None:
        if self._log is not None:
            self._log(line)

    # -- playing a plan ------------------------------------------------------------------------------

    def _play(self, message: StubMessage, steps: Sequence[Step], delay: float) -> None:
        # The first gap lets the create answer reach the client before the first callback does.
        if self._stopping.wait(delay + CALLBACK_GAP):
            return
        for index, step in enumerate(steps):
            if index and self._stopping.wait(CALLBACK_GAP):
                return
            self._announce(message, step)

    def _apply(self, message: StubMessage, step: Step) -> None:
        with self._lock:
            message.advance(step.status, step.error_code)

    def _announce(self, message: StubMessage, step: Step) -> None:
        self._apply(message, step)
        self._callbacks.announce(message, step)
