"""Request heads are capped at 16 KiB and 100 header lines, against a real `otp serve`.

h11 checks its own limit only while a head is incomplete, so a 20 or 60 KB head that arrived in
one read was accepted whole (200), and a larger one got a plain-text 400. Each is now a JSON 431
naming ``headers``, however the head arrives: in one write, trickled, or after another request
on the same connection."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import h11
import pytest
from test_access_log import serving

from otp.edge.embedded_redis import EmbeddedRedis
from otp.serving import MAX_HEAD, MAX_HEADER_LINES, HeadLimitedConnection


@pytest.fixture(scope="module")
def base(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(redis_server.url, tmp_path_factory.mktemp("heads")) as (url, _process):
        yield url


def head_of(size: int, *, line: int = 1000) -> bytes:
    """A GET /healthz head of exactly ``size`` bytes, padded with X-Pad headers of about ``line``
    bytes each (one long header when ``line`` is larger than the head)."""
    start = b"GET /healthz HTTP/1.1\r\nHost: otp\r\n"
    end = b"\r\n"
    pads: list[bytes] = []
    room = size - len(start) - len(end)
    while room > 0:
        # "X-Pad: " + value + CRLF; the last one takes what is left (at least one value byte).
        take = min(line, room)
        if room - take < 11:
            take = room
        pads.append(b"X-Pad: " + b"a" * (take - 9) + b"\r\n")
        room -= take
    head = start + b"".join(pads) + end
    assert len(head) == size
    return head


def exchange(base: str, request: bytes, *, piece: int | None = None) -> bytes:
    """Send ``request`` (in one write, or ``piece`` bytes per write) and read until the server
    closes; a server that closed while we were still sending is part of what is tested."""
    url = urlparse(base)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if piece is None:
                sock.sendall(request)
            else:
                for offset in range(0, len(request), piece):
                    sock.sendall(request[offset : offset + piece])
        except OSError:
            pass  # refused mid-head and closed: the answer is read below
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            received += chunk
    return received


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The responses in ``raw`` (each with a Content-Length), in order."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        length = int(headers["content-length"])
        out.append((int(status_line.split(" ")[1]), headers, rest[:length]))
        raw = rest[length:]
    return out


def assert_431(raw: bytes, limit: str = f"{MAX_HEAD} bytes") -> None:
    assert raw, "closed without an answer"
    (status, headers, body), *more = responses(raw)
    assert status == 431, raw[:300]
    assert not more
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "headers_too_large"
    assert error["field"] == "headers"
    assert error["message"].startswith("headers: ") and limit in error["message"]


@pytest.mark.parametrize("size", [20_000, 60_000, 200_000])
@pytest.mark.parametrize("piece", [None, 1000], ids=["one-write", "trickled"])
def test_an_oversized_head_is_answered_431_json_and_closed(base: str, size: int, piece: int | None) -> None:
    assert_431(exchange(base, head_of(size), piece=piece))


@pytest.mark.parametrize("size", [20_000, 60_000])
def test_one_long_header_line_is_refused_the_same_way(base: str, size: int) -> None:
    assert_431(exchange(base, head_of(size, line=size)))


def test_the_limit_is_exactly_16_kib_of_head(base: str) -> None:
    # Head bytes are everything up to and including the blank line.
    close = b"Connection: close\r\n"
    exact = head_of(MAX_HEAD - len(close))[:-2] + close + b"\r\n"
    assert len(exact) == MAX_HEAD
    assert responses(exchange(base, exact))[0][0] == 200
    one_more = exact[:-4] + b"a" + exact[-4:]
    assert len(one_more) == MAX_HEAD + 1
    assert_431(exchange(base, one_more))


def test_too_many_header_lines_are_refused(base: str) -> None:
    def head(count: int) -> bytes:
        lines = [b"Host: otp", b"Connection: close", *(b"X-%d: 1" % i for i in range(count - 2))]
        return b"GET /healthz HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"

    assert responses(exchange(base, head(MAX_HEADER_LINES)))[0][0] == 200
    lines = f"{MAX_HEADER_LINES} header lines"
    assert_431(exchange(base, head(MAX_HEADER_LINES + 1)), lines)
    assert_431(exchange(base, head(5000), piece=500), lines)


def test_a_second_head_on_a_kept_alive_connection_is_limited_too(base: str) -> None:
    """Pipelined behind a normal request (so h11 holds it whole when its turn comes), or sent
    after the first answer: the first is served, the oversized one refused."""
    normal = b"GET /healthz HTTP/1.1\r\nHost: otp\r\n\r\n"
    pipelined = responses(exchange(base, normal + head_of(60_000)))
    assert [status for status, _, _ in pipelined] == [200, 431]
    assert json.loads(pipelined[1][2])["error"]["code"] == "headers_too_large"


def test_a_normal_request_and_a_body_past_the_head_are_unaffected(base: str) -> None:
    assert responses(exchange(base, b"GET /healthz HTTP/1.1\r\nHost: otp\r\nConnection: close\r\n\r\n"))[0][0] == 200
    # A 15 KiB body in the same write as its head is not head: it reaches the app (401 here, no key).
    body = b"{" + b" " * (15 * 1024) + b"}"
    request = (
        b"POST /v1/verifications HTTP/1.1\r\nHost: otp\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body
    assert responses(exchange(base, request))[0][0] == 401


def test_the_server_still_serves_after_refusals(base: str) -> None:
    for _ in range(20):
        assert_431(exchange(base, head_of(60_000)))
    assert responses(exchange(base, b"GET /healthz HTTP/1.1\r\nHost: otp\r\nConnection: close\r\n\r\n"))[0][0] == 200


def feed(head: bytes, piece: int) -> object:
    """What HeadLimitedConnection makes of ``head`` arriving ``piece`` bytes at a time: the h11
    Request, or the refusal message."""
    conn = HeadLimitedConnection(h11.SERVER)
    for offset in range(0, len(head), piece):
        conn.receive_data(head[offset : offset + piece])
        event = conn.next_event()
        if conn.refused is not None:
            assert event is h11.PAUSED
            return conn.refused
        if isinstance(event, h11.Request):
            return event
        assert event is h11.NEED_DATA
    raise AssertionError("neither parsed nor refused")


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1000, 100_000])
def test_heads_at_the_limits_are_parsed_however_they_are_split(piece: int) -> None:
    """Counting across reads: a blank line split between two reads, or a line end counted in one
    scan and found to start the blank line in the next, neither shifts a limit."""
    lines = [b"Host: otp", *(b"X-%d: 1" % i for i in range(MAX_HEADER_LINES - 1))]
    at_lines = b"GET /healthz HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"
    assert isinstance(feed(at_lines, piece), h11.Request)
    assert "header lines" in str(feed(at_lines[:-2] + b"X: 1\r\n\r\n", piece))
    # Bare LFs end lines for h11 too.
    assert isinstance(feed(at_lines.replace(b"\r\n", b"\n"), piece), h11.Request)
    assert "header lines" in str(feed(at_lines.replace(b"\r\n", b"\n")[:-1] + b"X: 1\n\n", piece))
    exact = head_of(MAX_HEAD)
    assert isinstance(feed(exact, piece), h11.Request)
    assert "bytes" in str(feed(exact[:-4] + b"a" + exact[-4:], piece))
