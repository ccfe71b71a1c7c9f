"""The HTTP side: Basic auth, the routes of the Messages API, the request checks Twilio makes
before it accepts a message, and JSON answers with Twilio's headers."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import secrets
import socket
import threading
import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from otp.devtools.twilio_stub.callbacks import valid_callback
from otp.devtools.twilio_stub.wire import ERROR_MESSAGES, error_body

if TYPE_CHECKING:
    from otp.devtools.twilio_stub.stub import TwilioStub

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_CREATE_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
_FETCH_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages/(?P<sid>[^/]+)\.json$")
# Lookup v2 (lookups.twilio.com): no account in the path, the credentials name it.
_LOOKUP_PATH = re.compile(r"^/v2/PhoneNumbers/(?P<number>[^/]+)$")
# The account's own resources (`otp doctor` reads them): the Account, its numbers and short codes,
# and Messaging v1's Services (messaging.twilio.com: no account in the path either).
_ACCOUNT_PATHS = {
    "account": re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)\.json$"),
    "numbers": re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/IncomingPhoneNumbers\.json$"),
    "short_codes": re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/SMS/ShortCodes\.json$"),
}
_SERVICE_PATH = re.compile(r"^/v1/Services/(?P<sid>[^/]+)$")


def invalid_create(fields: Mapping[str, str]) -> tuple[int, str] | None:
    """The error code and message Twilio answers a create it cannot accept with, if any."""
    to, callback = fields.get("To", ""), fields.get("StatusCallback") or None
    if not to:
        return 21604, ERROR_MESSAGES[21604]
    if not _E164.match(to):
        return 21211, f"Invalid 'To' Phone Number: {to}"
    if not fields.get("From") and not fields.get("MessagingServiceSid"):
        return 21603, ERROR_MESSAGES[21603]
    if not fields.get("Body"):
        return 21602, ERROR_MESSAGES[21602]
    if callback is not None and not valid_callback(callback):
        return 21609, f"Invalid StatusCallback url: {callback}"
    return None


def _account_route(path: str) -> tuple[str, str] | None:
    """(which resource, the account or Messaging Service sid the path names), if it names one."""
    service = _SERVICE_PATH.match(path)
    if service is not None:
        return "service", urllib.parse.unquote(service["sid"])
    for kind, pattern in _ACCOUNT_PATHS.items():
        found = pattern.match(path)
        if found is not None:
            return kind, found["account"]
    return None


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], stub: TwilioStub) -> None:
        self.stub = stub
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, Handler)

    def opened(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(connection)

    def hang_up(self) -> None:
        """Ends every kept-alive connection: a stopped stand-in answers nothing more, as a Twilio
        out of reach wouldn't (their threads would otherwise go on serving them)."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "Twilio.stub"
    sys_version = ""
    # As Twilio's API: HTTP/1.1, connections kept alive between requests (every answer has a
    # Content-Length), so a pooled client reuses them as it would Twilio's.
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.server.opened(self.connection)

    def finish(self) -> None:
        self.server.closed(self.connection)
        super().finish()

    def do_POST(self) -> None:
        self._handle("POST")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the stub reports through its own `log`, not stderr noise per request

    def _handle(self, method: str) -> None:
        try:
            # Read whatever the answer: an unread body would be taken for the connection's next request.
            self._body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urllib.parse.urlsplit(self.path).path
            lookup = _LOOKUP_PATH.match(path)
            if lookup is not None:
                self._lookup(method, urllib.parse.unquote(lookup["number"]), path)
                return
            if self._account_resource(method, path):
                return
            create, fetch = _CREATE_PATH.match(path), _FETCH_PATH.match(path)
            match = create or fetch
            if match is None:
                self._send(404, error_body(20404, 404, f"The requested resource {path} was not found"))
                return
            if not self._authorized(match["account"]):
                self._refuse()
                return
            if create and method == "POST":
                self._create()
            elif create and method == "GET":
                self._list(path)
            elif fetch and method == "GET":
                self._fetch(fetch["sid"], path)
            else:
                self._send(405, error_body(20004, 405))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to answer

    def _lookup(self, method: str, number: str, path: str) -> None:
        stub = self.server.stub
        if not self._authorized(stub.account_sid):
            self._send(401, error_body(20003, 401), {"WWW-Authenticate": 'Basic realm="Twilio API"'})
            return
        if method != "GET":
            self._send(405, error_body(20004, 405))
            return
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        status, document = stub.lookups.handle(number, query.get("Fields", ""), f"https://lookups.twilio.com{path}")
        stub.say(f"GET Lookup {query.get('Fields', '')} -> {status}")
        self._send(status, document)

    def _account_resource(self, method: str, path: str) -> bool:
        """Answers a request for the account's own resources; False: the path names none."""
        route = _account_route(path)
        if route is None:
            return False
        kind, name = route
        stub = self.server.stub
        if not self._authorized(stub.account_sid if kind == "service" else name):
            self._refuse()
            return True
        if method != "GET":
            self._send(405, error_body(20004, 405))
            return True
        status, document = self._account_document(kind, name, urllib.parse.urlsplit(self.path).query)
        stub.say(f"GET {path} -> {status}")
        self._send(status, document)
        return True

    def _account_document(self, kind: str, name: str, query: str) -> tuple[int, dict[str, Any]]:
        account = self.server.stub.account
        fields = dict(urllib.parse.parse_qsl(query))
        if kind == "account":
            return 200, account.document(self.server.stub.auth_token)
        if kind == "numbers":
            return 200, account.numbers_page(fields.get("PhoneNumber", ""), query)
        if kind == "short_codes":
            return 200, account.short_codes_page(fields.get("ShortCode", ""), query)
        service = account.service(name)
        if service is None:
            return 404, error_body(20404, 404, f"The requested resource /Services/{name} was not found")
        return 200, service

    def _refuse(self) -> None:
        self._send(
            401,
            {**error_body(20003, 401), "detail": "Your AccountSid or AuthToken was incorrect."},
            {"WWW-Authenticate": 'Basic realm="Twilio API"'},
        )

    def _authorized(self, url_account: str) -> bool:
        scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        stub = self.server.stub
        return (
            secrets.compare_digest(user, stub.account_sid)
            and secrets.compare_digest(password.encode(), stub.auth_token.encode())
            and url_account == user
        )

    def _create(self) -> None:
        stub = self.server.stub
        form = urllib.parse.parse_qs(self._body.decode(), keep_blank_values=True)
        fields = {name: values[-1] for name, values in form.items()}
        stub.say(f"POST Messages.json {fields}")
        failure = stub.take_failure()
        if failure is not None:
            code = 20000 + failure if 400 <= failure < 600 else 20500
            self._send(failure, error_body(code, failure))
            return
        problem = invalid_create(fields)
        if problem is not None:
            self._send(400, error_body(problem[0], 400, problem[1]))
            return
        accepted = stub.accept(fields)
        if isinstance(accepted, dict):
            self._send(400, accepted)
            return
        stub.before_answer(accepted)
        try:
            self._send(201, accepted.answer)
        finally:
            stub.after_answer(accepted)

    def _list(self, path: str) -> None:
        """Messages newest first, filtered by ``To`` and ``DateSent>`` as Twilio's list does."""
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        after = query.get("DateSent>")
        since = datetime.fromisoformat(after.replace("Z", "+00:00")) if after else None
        found = self.server.stub.listed(query.get("To"), since)
        size = int(query.get("PageSize", "50"))
        self.server.stub.say(f"GET Messages.json {query} -> {len(found)}")
        self._send(
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

    def _fetch(self, sid: str, path: str) -> None:
        answer = self.server.stub.fetched(sid)
        self.server.stub.say(f"GET {sid} -> {answer['status'] if answer else 404}")
        if answer is None:
            self._send(404, error_body(20404, 404, f"The requested resource {path} was not found"))
        else:
            self._send(200, answer)

    def _send(self, status: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Twilio-Request-Id", "RQ" + secrets.token_hex(16))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()
