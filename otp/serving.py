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

The body the app does read has its own deadline where it is read (``otp.body.read_limited``,
OTP_BODY_TIMEOUT), which answers 408 naming ``body``. Beyond ``OTP_MAX_CONNECTIONS`` open
connections uvicorn answers 503 (``limit_concurrency``), so the deadlines above are what bound how
long slow clients can hold those slots.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD = "head"
UNREAD_BODY = "unread body"


def _timeout_response(timeout: float) -> bytes:
    body = json.dumps(
        {
            "error": {
                "code": "request_timeout",
                "message": f"headers: the request head was not received within {timeout:g}s",
                "field": "headers",
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class DeadlineH11Protocol(H11Protocol):
    header_timeout = 10.0
    body_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: str | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

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
