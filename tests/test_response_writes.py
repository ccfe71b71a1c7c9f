"""`otp serve` sends a response's head and body in one write (otp.serving.HeadWithBody), so a
client's first read holds the whole answer; what must not wait for a body still doesn't: a
100 Continue, a HEAD answer, and the next answer on a kept-alive connection."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from test_access_log import credentials, serving

from otp.edge.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="module")
def served(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(redis_server.url, tmp_path_factory.mktemp("writes")) as (base, _process):
        yield base


def connect(base: str) -> socket.socket:
    url = urlparse(base)
    return socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=5)


def split_response(data: bytes) -> tuple[bytes, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return status.encode(), headers, body


def test_the_first_read_of_an_answer_holds_its_head_and_its_whole_body(
    served: str, redis_server: EmbeddedRedis
) -> None:
    key, _ = credentials(redis_server.url, "writes")
    request = b"".join(
        [
            b"POST /v1/verifications HTTP/1.1\r\nHost: otp\r\n",
            f"Authorization: Bearer {key}\r\n".encode(),
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        ]
    )
    with connect(served) as sock:
        for _ in range(3):  # and again on the kept-alive connection
            sock.sendall(request)
            status, headers, body = split_response(sock.recv(65536))
            assert status.startswith(b"HTTP/1.1 400"), status
            assert len(body) == int(headers["content-length"])
            assert json.loads(body)["error"]["field"] == "to"


def test_a_head_request_is_answered_without_a_body_to_wait_for(served: str) -> None:
    with connect(served) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: otp\r\n\r\n")
        status, _, body = split_response(sock.recv(65536))
    assert status.startswith(b"HTTP/1.1 200"), status
    assert body == b""


def test_a_100_continue_is_sent_before_the_client_sends_its_body(served: str, redis_server: EmbeddedRedis) -> None:
    key, _ = credentials(redis_server.url, "continue")
    head = (
        "POST /v1/verifications HTTP/1.1\r\nHost: otp\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    )
    with connect(served) as sock:
        sock.sendall(head.encode())
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        sock.sendall(b"{}")
        status, _, _ = split_response(interim.partition(b"\r\n\r\n")[2] or sock.recv(65536))
    assert status.startswith(b"HTTP/1.1 400"), status
