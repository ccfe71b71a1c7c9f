"""Slow clients against a real `otp serve` (issue 11: 150 slow-header and 150 slow-body
connections stayed open indefinitely). With OTP_HEADER_TIMEOUT / OTP_BODY_TIMEOUT of half a second,
each is closed (a partial head after a 408, a slow body read by the app after a 408 naming
``body``) within a bounded time, while a normal request still succeeds; above
OTP_MAX_CONNECTIONS open connections the answer is 503 until the deadlines reap the slow ones."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from test_access_log import credentials, serving

from otp.edge.embedded_redis import EmbeddedRedis
from otp.errors import ConfigError
from otp.settings import Settings

TIMEOUTS = {"OTP_HEADER_TIMEOUT": "500ms", "OTP_BODY_TIMEOUT": "500ms"}
# Far above the half-second deadlines, far below "indefinitely": the polling bound of each test.
BOUND = 8.0


@pytest.fixture(scope="module")
def served(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `otp serve` with 0.5 s deadlines for the tests below (spawned once: it takes a second)."""
    with serving(redis_server.url, tmp_path_factory.mktemp("slow"), **TIMEOUTS) as (base, _process):
        yield base


@pytest.fixture
def server(served: str, redis_server: EmbeddedRedis) -> tuple[str, str, str]:
    """(base URL, a /v1 API key, a /v2 Basic header), the keys made for this test."""
    v1_key, v2_auth = credentials(redis_server.url, "slow")
    return served, v1_key, v2_auth


def open_socket(base: str, first_bytes: bytes = b"") -> socket.socket:
    url = urlparse(base)
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=5)
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def wait_closed(
    socks: list[socket.socket], *, trickle: bytes = b"", silent: frozenset[socket.socket] = frozenset()
) -> dict[socket.socket, bytes]:
    """Poll until the server has closed every socket (bounded by BOUND), sending ``trickle`` on
    each open one (but the ``silent``) about every 0.2 s meanwhile; returns what each received."""
    received = {s: b"" for s in socks}
    open_ = set(socks)
    deadline = time.monotonic() + BOUND
    next_trickle = time.monotonic()
    while open_ and time.monotonic() < deadline:
        if trickle and time.monotonic() >= next_trickle:
            next_trickle = time.monotonic() + 0.2
            for sock in open_ - silent:
                try:
                    sock.send(trickle)
                except OSError:
                    pass  # closed under us: the recv below sees it
        readable, _, _ = select.select(list(open_), [], [], 0.05)
        for sock in readable:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if chunk:
                received[sock] += chunk
            else:
                open_.discard(sock)
    for sock in socks:
        sock.close()
    assert not open_, f"{len(open_)} of {len(socks)} connections still open after {BOUND}s"
    return received


def status_and_json(raw: bytes) -> tuple[int, object]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body) if body else None


def test_slow_and_silent_request_heads_are_closed_and_others_are_served(server: tuple[str, str, str]) -> None:
    base, key, _ = server
    silent = [open_socket(base) for _ in range(75)]
    partial = [open_socket(base, b"GET /healthz HTTP/1.1\r\nHost: otp\r\nX-Slow: ") for _ in range(75)]
    # Meanwhile, on their own connections, ordinary requests are answered.
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    started = time.monotonic()
    # Trickling a byte every 0.2 s doesn't extend the deadline: it is one for the whole head.
    received = wait_closed(silent + partial, trickle=b"a", silent=frozenset(silent))
    assert time.monotonic() - started < BOUND
    for sock in silent:
        assert received[sock] == b""  # nothing sent, nothing to answer: just closed
    for sock in partial:
        status, body = status_and_json(received[sock])
        assert status == 408
        assert body["error"]["field"] == "headers"  # type: ignore[index]
    assert httpx.get(f"{base}/healthz", headers={"Authorization": f"Bearer {key}"}, timeout=5).status_code == 200


def test_a_keep_alive_connection_gets_the_same_head_deadline(server: tuple[str, str, str]) -> None:
    """uvicorn's keep-alive timer is cancelled by the next request's first byte: after one
    answered request, a trickled second head must still be cut off."""
    base, _, _ = server
    sock = open_socket(base, b"GET /healthz HTTP/1.1\r\nHost: otp\r\n\r\n")
    first = b""
    while not first.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        assert chunk, first
        first += chunk
    assert first.startswith(b"HTTP/1.1 200")
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    received = wait_closed([sock], trickle=b"X-A: b\r\n")
    assert received[sock].startswith(b"HTTP/1.1 408")


def slow_body_head(path: str, headers: dict[str, str], length: int = 1000) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: otp",
        f"Content-Length: {length}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + b'{"to": "'


def test_slow_bodies_are_answered_408_naming_body_and_closed(server: tuple[str, str, str]) -> None:
    base, key, v2_auth = server
    v1 = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    v2 = {"Authorization": v2_auth, "Content-Type": "application/x-www-form-urlencoded"}
    native = [open_socket(base, slow_body_head("/v1/verifications", v1)) for _ in range(60)]
    twilio = [open_socket(base, slow_body_head("/v2/Services", v2)) for _ in range(30)]
    # Not even authenticated: the app answers 401 without reading, and the unread body is cut off.
    anonymous = [open_socket(base, slow_body_head("/v1/verifications", {})) for _ in range(60)]
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    received = wait_closed(native + twilio + anonymous, trickle=b"1")
    for sock in native:
        status, body = status_and_json(received[sock])
        assert status == 408, received[sock][:300]
        assert body["error"]["field"] == "body"  # type: ignore[index]
        assert body["error"]["code"] == "request_timeout"  # type: ignore[index]
    for sock in twilio:
        status, body = status_and_json(received[sock])
        assert status == 408, received[sock][:300]
        assert body["status"] == 408 and "body" in body["message"]  # type: ignore[index]
    for sock in anonymous:
        assert status_and_json(received[sock])[0] == 401
    # A body sent at a normal pace is unaffected.
    fast = httpx.post(f"{base}/v1/verifications", json={"to": "not a number"}, headers=v1, timeout=5)
    assert fast.status_code == 400 and fast.json()["error"]["field"] == "to"


def test_above_max_connections_the_answer_is_503_until_slow_clients_are_cut_off(redis_url: str, tmp_path: Path) -> None:
    with serving(redis_url, tmp_path, OTP_MAX_CONNECTIONS="20", **TIMEOUTS) as (base, _process):
        hogs = [open_socket(base) for _ in range(25)]
        # Let the server accept them all before asking (bounded poll on a fresh connection).
        deadline = time.monotonic() + BOUND
        status = 0
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                status = httpx.get(f"{base}/healthz", timeout=5).status_code
            if status == 503:
                break
            time.sleep(0.05)
        assert status == 503
        wait_closed(hogs)
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTP_HEADER_TIMEOUT", "0"),
        ("OTP_HEADER_TIMEOUT", "1h"),
        ("OTP_BODY_TIMEOUT", "slow"),
        ("OTP_MAX_CONNECTIONS", "0"),
        ("OTP_MAX_CONNECTIONS", "9" * 5000),
    ],
)
def test_bad_slow_client_settings_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({name: value})
    assert name in str(error.value)


def test_slow_client_settings_have_documented_defaults_and_accept_units() -> None:
    defaults = Settings.from_env({})
    assert (defaults.header_timeout, defaults.body_timeout, defaults.max_connections) == (10.0, 10.0, 1000)
    custom = Settings.from_env({"OTP_HEADER_TIMEOUT": "500ms", "OTP_BODY_TIMEOUT": "30s", "OTP_MAX_CONNECTIONS": "50"})
    assert (custom.header_timeout, custom.body_timeout, custom.max_connections) == (0.5, 30.0, 50)
