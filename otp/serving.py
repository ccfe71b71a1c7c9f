"""uvicorn's HTTP/1.1 protocol with the read deadlines it lacks against slow clients.

uvicorn (0.54, h11) has no header-read timeout: ``timeout_keep_alive`` runs only after a response,
is cancelled by the first byte of the next request, and never runs for a fresh connection, so a
client that connects and sends nothing, or trickles its request head a byte at a time, holds a
connection (and a slot of ``limit_concurrency``) for as long as it likes. Nor does it time a body
the app never reads. ``DeadlineH11Protocol`` adds one timer per connection, for whichever phase is
waiting on the client:

- **head**: from the moment a request head is awaited (connection made, or the previous response
  finished) the whole head must arrive within ``header_timeout``; it is a deadline, not an idle
  timer, so trickling doesn't extend it. On expiry the connection is closed, with a 408 first if
  part of a head had arrived.
- **unread body**: after a response, a body the app didn't read (it answered 401 first, or a 408
  for a slow body) must finish within ``body_timeout``, or the connection is closed.

Nor does h11 bound a request head that arrives whole: it checks its 16 KiB only while a head is
incomplete, so a 60 KB head in one read was accepted. ``HeadLimitedConnection`` counts the bytes
(and lines) of each head before h11 parses it, in whatever reads it arrives, pipelined heads
included: beyond ``MAX_HEAD`` bytes or ``MAX_HEADER_LINES`` header lines the answer is a JSON 431
naming ``headers`` and the connection is closed.

The body the app does read has its own deadline where it is read (``otp.web.body.read_limited``,
OTP_BODY_TIMEOUT), which answers 408 naming ``body``. Beyond ``OTP_MAX_CONNECTIONS`` open
connections uvicorn answers 503 (``limit_concurrency``), so the deadlines above are what bound how
long slow clients can hold those slots.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, cast

import h11
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

HEAD = "head"
UNREAD_BODY = "unread body"
MAX_HEAD = 16 * 1024  # bytes of a request head: request line, header lines and the blank line
MAX_HEADER_LINES = 100  # header lines of a request head (the request line not counted)
# Where a head ends, as h11 finds it (a bare LF is accepted as a line end).
_HEAD_END = re.compile(rb"\n\r?\n")


def _json_error(status: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message, "field": "headers"}}).encode()
    head = (
        f"HTTP/1.1 {status}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class HeadLimitedConnection(h11.Connection):
    """h11's connection, refusing a request head over ``MAX_HEAD`` bytes or ``MAX_HEADER_LINES``
    header lines before h11 parses it, complete or not.

    While the client's next head is awaited (``their_state`` IDLE) the receive buffer holds only
    that head's bytes (and whatever follows it): each ``next_event`` scans what arrived since the
    last one, so trickling a head costs linear time, not quadratic. A refused head sets
    ``refused`` (the message of the 431) and from then on ``next_event`` answers PAUSED, which
    stops uvicorn reading; the protocol below answers and closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused: str | None = None
        self._scanned = 0  # bytes of the awaited head already scanned for its end
        self._lines = 0  # line ends in those bytes

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        if self.their_state is h11.IDLE:
            if self.refused is None:
                self.refused = self._check_head()
            if self.refused is not None:
                return h11.PAUSED
        event = super().next_event()
        if isinstance(event, h11.Request):
            self._scanned = self._lines = 0
        return event

    def _check_head(self) -> str | None:
        # h11's buffer (a bytearray): searched in place, from where the last scan stopped (two
        # bytes back, for an end split across reads), never past MAX_HEAD.
        data = self._receive_buffer._data
        stop = min(len(data), MAX_HEAD)
        start = max(0, self._scanned - 2)
        end = _HEAD_END.search(data, start, stop)
        if end is None:
            self._lines += data.count(b"\n", self._scanned, stop)
            self._scanned = stop
            # So far: the request line's end and one per complete header line.
            headers = self._lines - 1
        else:
            # The line ends before the blank line's: the request line's and all but the last
            # header line's (the end found may start a byte or two before the last scan stopped).
            at = end.start()
            headers = self._lines + data.count(b"\n", self._scanned, at) - data.count(b"\n", at, self._scanned)
        if headers > MAX_HEADER_LINES:
            return f"headers: a request head may have at most {MAX_HEADER_LINES} header lines"
        if end is None and len(data) >= MAX_HEAD:
            return f"headers: a request head may be at most {MAX_HEAD} bytes"
        return None


class HeadWithBody:
    """A request cycle's transport that holds its response head until the first body write and
    sends the two in one ``write``: uvicorn writes them apart, one send syscall (and, for the
    client, one more segment to wait for) each, on every response. Only the head is held, so a
    streamed body still goes out chunk by chunk; a 100 Continue (written before the response
    starts) is not held; closing sends what is held first."""

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle = cycle
        self._held = b""
        self._head_seen = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._head_seen and self._cycle.response_started and not self._cycle.response_complete:
            self._head_seen = True
            self._held = bytes(data)
            return
        if self._held:
            data, self._held = self._held + bytes(data), b""
        if data:
            self._transport.write(data)

    def close(self) -> None:
        # uvloop raises on a write to a closing transport (asyncio ignores it): a held head then has no reader.
        if self._held and not self._transport.is_closing():
            self._transport.write(self._held)
            self._held = b""
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _timeout_response(timeout: float) -> bytes:
    message = f"headers: the request head was not received within {timeout:g}s"
    return _json_error("408 Request Timeout", "request_timeout", message)


class DeadlineH11Protocol(H11Protocol):
    header_timeout = 10.0
    body_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        # In place of uvicorn's plain h11.Connection (nothing has used it yet).
        limit = self.config.h11_max_incomplete_event_size
        self.conn = self._limited = HeadLimitedConnection(
            h11.SERVER, limit if limit is not None else DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def handle_events(self) -> None:
        # Run on new data and after each response (a pipelined head waits in h11's buffer).
        before = self.cycle
        super().handle_events()
        if self.cycle is not None and self.cycle is not before:
            # A new request's cycle, made just now; its task runs from the loop's next turn.
            self.cycle.transport = cast(asyncio.Transport, HeadWithBody(self.transport, self.cycle))
        if self._limited.refused is not None and not self.transport.is_closing():
            refusal = _json_error("431 Request Header Fields Too Large", "headers_too_large", self._limited.refused)
            self.transport.write(refusal)
            self.transport.close()
            self._set_phase(None)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_phase(None)
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Arm the deadline of the phase the connection is now in; one already running for the
        same phase keeps its original expiry."""
        if self.transport.is_closing():
            self._set_phase(None)
        elif self.conn.their_state is h11.IDLE:
            self._set_phase(HEAD)
        elif self.conn.their_state is h11.SEND_BODY and self.cycle is not None and self.cycle.response_complete:
            self._set_phase(UNREAD_BODY)
        else:
            # The app has the request (and reads its body under its own deadline), or the client
            # is done sending and waits for the answer.
            self._set_phase(None)

    def _set_phase(self, phase: str | None) -> None:
        if phase == self._phase:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase
        if phase is not None:
            timeout = self.header_timeout if phase == HEAD else self.body_timeout
            self._deadline = self.loop.call_later(timeout, self._expired, phase)

    def _expired(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        # Part of a head arrived: say why before closing (h11 holds those bytes, unparsed).
        if phase == HEAD and self.conn.trailing_data[0]:
            self.transport.write(_timeout_response(self.header_timeout))
        self.transport.close()


def http_protocol(*, header_timeout: float, body_timeout: float) -> type[DeadlineH11Protocol]:
    """The protocol class for ``uvicorn.run(http=…)``: uvicorn instantiates it per connection
    with its own arguments, so the timeouts travel as class attributes."""
    attributes = {"header_timeout": header_timeout, "body_timeout": body_timeout}
    return cast(type[DeadlineH11Protocol], type("DeadlineH11Protocol", (DeadlineH11Protocol,), attributes))
