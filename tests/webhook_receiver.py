"""A real loopback HTTP receiver for webhook tests: records every POST (its URL, form fields and
headers) and answers with scripted statuses."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

from otp.edge.embedded_redis import free_port


@dataclass
class Delivery:
    url: str
    params: dict[str, str]
    headers: dict[str, str]

    def signed_by(self, token: str) -> bool:
        signature = self.headers.get("x-twilio-signature", "")
        return bool(signature) and bool(RequestValidator(token).validate(self.url, self.params, signature))


@dataclass
class Receiver:
    port: int
    deliveries: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in turn; then 200
    hits: dict[str, int] = field(default_factory=dict)  # path → requests of any kind
    extra: dict[str, Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def events(self, verification: str | None = None) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if verification is None or d.params["VerificationSid"] == verification]

    def wait_for(self, event_type: str, verification: str, timeout: float = 10.0) -> Delivery:
        deadline = time.monotonic() + timeout
        while True:
            found = [d for d in self.events(verification) if d.params["EventType"] == event_type]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no {event_type}: {[d.params for d in self.events()]}"
            time.sleep(0.02)

    def wait_count(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events()) < count:
            assert time.monotonic() < deadline, f"{len(self.events())} deliveries, wanted {count}"
            time.sleep(0.02)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            with receiver.lock:
                receiver.hits[self.path] = receiver.hits.get(self.path, 0) + 1
            special = receiver.extra.get(self.path)
            if special is not None:
                special(self)
                return
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length).decode()
            with receiver.lock:
                receiver.deliveries.append(
                    Delivery(
                        f"http://127.0.0.1:{receiver.port}{self.path}",
                        dict(parse_qsl(body, keep_blank_values=True)),
                        {k.lower(): v for k, v in self.headers.items()},
                    )
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    return Handler


def receiving() -> Iterator[Receiver]:
    receiver = Receiver(free_port())
    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), _handler(receiver))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
