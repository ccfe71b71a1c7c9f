"""The access log of a real `otp serve`: one clean line per request, no number in it, no
tracebacks; and the masking of every other line.

(Issue 11: the masking filter once set ``record.args = None`` on uvicorn's access records, and
uvicorn's AccessFormatter, which unpacks those args, wrote a ``--- Logging error ---`` traceback
of ~5 KB for every request instead of the line. Since issue 16 the access line is otp's own
(otp/web/access_log.py): it names the route's template, never the target a client sent.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlsplit

import httpx
import pytest
from conftest import SECRET
from processes import stop
from test_serve import clean_env, otp_command

from otp.core import apikeys
from otp.edge.embedded_redis import free_port
from otp.logs import mask_target
from otp.storage.client import connect
from otp.storage.store import Store


@contextlib.contextmanager
def serving(redis_url: str, tmp_path: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`otp serve` on a free port against the test Redis, its log on a pipe; ready when /healthz answers."""
    port = free_port()
    process = subprocess.Popen(
        otp_command("serve"),
        env=clean_env(
            OTP_REDIS_URL=redis_url,
            OTP_SECRET_KEY=SECRET,
            OTP_PORT=str(port),
            OTP_WORKER="off",
            OTP_DATA_DIR=str(tmp_path / "data"),
            OTP_ARGON2_MEMORY_KIB="8192",
            OTP_ARGON2_TIME_COST="1",
            **env,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"otp serve exited: {process.stdout.read() if process.stdout else ''}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError("otp serve did not come up")
            time.sleep(0.05)
        yield base, process
    finally:
        stop(process)


def read_log_until(process: subprocess.Popen[str], needle: str, timeout: float = 10.0) -> str:
    """What the server has logged so far, read until ``needle`` shows up (bounded)."""
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    text = ""
    deadline = time.monotonic() + timeout
    # To the end of the line that holds it.
    while not (needle in text and text.endswith("\n")) and time.monotonic() < deadline:
        text += process.stdout.read() or ""
        time.sleep(0.05)
    return text


# The last request of each test: its access line is the one route that is "unmatched".
LAST = "unmatched"


def access_lines(log: str) -> list[dict[str, Any]]:
    """The JSON log's access lines (a pipe is not a terminal: the log is JSON), but the
    readiness polls of `serving`."""
    lines = [json.loads(line) for line in log.splitlines()]
    return [line for line in lines if line["logger"] == "otp.access" and line["route"] != "/healthz"]


def test_access_lines_are_written_without_numbers_or_logging_errors(redis_url: str, tmp_path: Path) -> None:
    with serving(redis_url, tmp_path) as (base, process):
        with httpx.Client(base_url=base) as client:
            assert client.delete("/v1/safelist/+15017122661").status_code == 401
            assert client.get("/v1/audit", params={"number": "+15017122661"}).status_code == 401
            # A national number, no "+": the audit filter accepts it, so the line must not show it either.
            assert client.get("/v1/audit?number=5017122661&since=1h").status_code == 401
            assert client.get("/v1/verifications/VE0123456789abcdef0123456789abcdef").status_code == 401
            assert client.get("/last-one").status_code == 404
        log = read_log_until(process, LAST)
    assert "Logging error" not in log, log[:3000]
    assert "Traceback" not in log, log[:3000]
    assert "15017122661" not in log
    assert "5017122661" not in log
    # One line per request, each naming the route's template: no target, no query, no id.
    shown = [(line["method"], line["route"], line["status"]) for line in access_lines(log)]
    assert shown == [
        ("DELETE", "/v1/safelist/{entry}", 401),
        ("GET", "/v1/audit", 401),
        ("GET", "/v1/audit", 401),
        ("GET", "/v1/verifications/{id}", 401),
        ("GET", "unmatched", 404),
    ], log
    assert all(len(line) < 400 for line in log.splitlines()), "one short line per request, not a traceback each"


def test_x_forwarded_for_is_believed_only_from_the_addresses_in_forwarded_allow_ips(
    redis_url: str, tmp_path: Path
) -> None:
    """README "Docker": otp passes nothing of its own to uvicorn, whose FORWARDED_ALLOW_IPS (default
    127.0.0.1 and ::1) says whose X-Forwarded-For to believe. Behind Docker's published port the
    proxy connects from the bridge gateway, so that address must be named; 127.0.0.2 stands for it
    here, and 127.0.0.1 for any other client (no longer trusted once the variable is set)."""
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    with serving(redis_url, tmp_path, FORWARDED_ALLOW_IPS="127.0.0.2") as (base, process):
        # The same server, reached from another source address (any 127/8 one binds on Linux).
        via_gateway = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with via_gateway, httpx.Client() as direct:
            assert via_gateway.get(f"{base}/v1/audit", headers=forwarded).status_code == 401
            assert direct.get(f"{base}/last-one", headers=forwarded).status_code == 404
        lines = access_lines(read_log_until(process, LAST))
    assert [(line["route"], line["client"]) for line in lines] == [("/v1/audit", "203.0.113.9"), (LAST, "127.0.0.1")]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_other_log_lines_of_otp_serve_mask_numbers_in_their_arguments(tmp_path: Path, fmt: str) -> None:
    """A path with a number in an error line (/v2 fetches a verification by its To) is masked
    whichever logger writes it."""
    script = (
        f"import logging; from otp import logs; logs.setup('INFO', {fmt!r}); "
        "logging.getLogger('otp.twilio_compat').warning("
        "'storage error on %s %s: %s', 'GET', '/v2/Services/VA1/Verifications/+15017122661', 'ConnectionError'); "
        "logging.getLogger('otp').warning({'to': '+15017122661'}); "
        # As typed: a path's national number, a formatted one in a dict, one in the message.
        "logging.getLogger('otp').warning('unhandled error on %s %s', 'GET', '/v2/Attempts/501-712-2661'); "
        "logging.getLogger('otp').warning({'to': '+1 (501) 712-2661'}); "
        "logging.getLogger('otp').warning('sending to \uff0b1.501.712.2661 failed')"
    )
    result = subprocess.run(
        [*otp_command()[:1], "-c", script], capture_output=True, text=True, timeout=30, cwd=tmp_path, env=clean_env()
    )
    assert result.returncode == 0, result.stderr
    assert "15017122661" not in result.stderr
    # The messages without their timestamps, whose milliseconds may read 501 or 712.
    if fmt == "json":
        messages = [json.loads(line)["message"] for line in result.stderr.splitlines()]
    else:
        messages = [line.split(" ", 3)[-1] for line in result.stderr.splitlines()]
    assert messages == [
        "storage error on GET /v2/Services/VA1/Verifications/+1*******2661: ConnectionError",
        "{'to': '+1*******2661'}",
        "unhandled error on GET /v2/Attempts/*******2661",
        "{'to': '+1*******2661'}",
        "sending to +1*******2661 failed",
    ]
    assert not any("501" in m or "712" in m for m in messages)
    assert "Logging error" not in result.stderr


# Numbers as people type them, each in a request target (sent byte for byte), and the access line
# each must give. Digits other than the last four never reach the log.
VA = "VA0123456789abcdef0123456789abcdef"
VE = "VE0123456789abcdef0123456789abcdef"
VE_DIGITS_LAST = "VEabcdef01234567890123456789012345"
FULLWIDTH = "".join(f"%EF%BC%{0x90 + int(d):02X}" for d in "15017122661")  # １５０１７１２２６６１
TYPED = [
    ("GET", "/v1/audit?number=%2B1+501+712+2661", "/v1/audit?number=…"),
    ("GET", "/v1/audit?number=%2B1%20(501)%20712-2661&since=1h", "/v1/audit?number=…&since=…"),
    ("GET", "/v1/audit?number=501-712-2661", "/v1/audit?number=…"),
    ("GET", "/v1/audit?number=%2B150171%322661", "/v1/audit?number=…"),
    ("GET", "/v1/audit?number=%EF%BC%8B15017122661", "/v1/audit?number=…"),
    ("GET", "/v2/Attempts?ChannelData.To=%2B1.501.712.2661", "/v2/Attempts?ChannelData.To=…"),
    # A number as a parameter's name is masked like one in the path.
    ("GET", "/v1/audit?%2B15017122661", "/v1/audit?+1*******2661"),
    ("DELETE", "/v1/safelist/%2B1%20(501)%20712-2661", "/v1/safelist/+1*******2661"),
    ("DELETE", "/v1/safelist/+1%20501%20712%202661", "/v1/safelist/+1*******2661"),
    ("DELETE", "/v1/safelist/501-712-2661", "/v1/safelist/*******2661"),
    ("DELETE", "/v1/safelist/(501)%20712-2661", "/v1/safelist/(*******2661"),
    ("DELETE", "/v1/safelist/501.712.2661", "/v1/safelist/*******2661"),
    ("DELETE", "/v1/safelist/%2B150171%322661", "/v1/safelist/+1*******2661"),
    ("DELETE", "/v1/safelist/%EF%BC%8B15017122661", "/v1/safelist/+1*******2661"),
    ("DELETE", f"/v1/safelist/%EF%BC%8B{FULLWIDTH}", "/v1/safelist/+1*******2661"),
    ("DELETE", "/v1/safelist/%252B15017122661", "/v1/safelist/+1*******2661"),
    # Punctuation phonenumbers reads as separators that NFKC keeps: hyphen U+2010, minus U+2212,
    # brackets; and a no-break space, which NFKC makes a space.
    ("DELETE", "/v1/safelist/%2B1%E2%80%90501%E2%80%90712%E2%80%902661", "/v1/safelist/+1*******2661"),
    ("DELETE", "/v1/safelist/501%E2%88%92712%E2%88%922661", "/v1/safelist/*******2661"),
    ("DELETE", "/v1/safelist/+1[501]712%C2%A02661", "/v1/safelist/+1*******2661"),
    ("DELETE", "/v1/safelist/tel:+15017122661", "/v1/safelist/tel:+1*******2661"),
    ("GET", f"/v2/Services/{VA}/Verifications/%2B1.501.712.2661", f"/v2/Services/{VA}/Verifications/+1*******2661"),
    ("GET", f"/v2/Services/{VA}/Verifications/501%20712%202661", f"/v2/Services/{VA}/Verifications/*******2661"),
    # Ids are not numbers: digits glued to their hex letters stay, so lines stay greppable.
    ("GET", f"/v1/verifications/{VE}", f"/v1/verifications/{VE}"),
    ("GET", f"/v1/verifications/{VE_DIGITS_LAST}", f"/v1/verifications/{VE_DIGITS_LAST}"),
    # Decoding never lets a control character into the line.
    ("GET", "/v1/safelist/%0Afake%20line", "/v1/safelist/%0Afake%20line"),
]


def raw_status(base: str, method: str, target: str, headers: dict[str, str]) -> int:
    """One request with ``target`` exactly as given (httpx would re-encode it)."""
    url = urlparse(base)
    head = f"{method} {target} HTTP/1.1\r\nHost: otp\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=10) as sock:
        sock.sendall(head.encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return int(received.split(b" ", 2)[1])


def credentials(redis_url: str, name: str, *, admin: bool = False) -> tuple[str, str]:
    """A new /v1 API key (the bare token) and a /v2 Basic header (account SID and auth token),
    for tests that talk to a spawned `otp serve`."""

    async def make() -> tuple[str, str]:
        client = connect(redis_url)
        try:
            _, v1 = await apikeys.create(Store(client, partitions=16), f"{name}-v1", admin=admin)
            _, v2 = await apikeys.create(Store(client, partitions=16), f"{name}-v2", twilio=True)
        finally:
            await client.aclose()
        _, sid, token = v2.split("_")
        return v1, "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()

    return asyncio.run(make())


def _keys(redis_url: str) -> tuple[str, str]:
    v1, v2 = credentials(redis_url, "log", admin=True)
    return f"Bearer {v1}", v2


@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "with-key"])
def test_numbers_as_people_type_them_never_reach_the_log(redis_url: str, tmp_path: Path, authenticated: bool) -> None:
    v1, v2 = _keys(redis_url)
    with serving(redis_url, tmp_path) as (base, process):
        for method, target, _ in TYPED:
            auth = (v2 if target.startswith("/v2/") else v1) if authenticated else None
            status = raw_status(base, method, target, {"Authorization": auth} if auth else {})
            assert status < 500 and (authenticated or status in (401, 405)), (target, status)
        assert raw_status(base, "GET", "/last-one", {}) == 404
        log = read_log_until(process, LAST)
    assert "Logging error" not in log and "Traceback" not in log, log[:3000]
    access = access_lines(log)
    assert len(access) == len(TYPED) + 1, log
    for (method, target, _), line in zip(TYPED, access[:-1], strict=True):
        assert line["method"] == method, (target, line)
        # A template: no digit but the API's version (/v1, /v2).
        assert not re.search(r"\d", line["route"].replace("/v1/", "").replace("/v2/", "")), (target, line)
    # Nothing any line shows (the access lines' and whatever the handlers logged), the times
    # and request ids aside, holds the number's digits, however they were typed.
    shown = json.dumps(
        [
            {k: v for k, v in json.loads(line).items() if k not in ("timestamp", "duration_ms", "request_id")}
            for line in log.splitlines()
        ]
    )
    # Nor the random ports (otp's, in uvicorn's "running on" line, and Redis's): 37125 holds 712.
    for sid in (VA, VE, VE_DIGITS_LAST, f":{urlsplit(base).port}", f":{urlsplit(redis_url).port}"):
        shown = shown.replace(sid, "")
    for digits in ("501", "712", "5017122661", "%35", "%37"):
        assert digits not in shown, (digits, log)


@pytest.mark.parametrize(("method", "target", "expected"), TYPED)
def test_mask_target_shapes_each_form(method: str, target: str, expected: str) -> None:
    """The same table through the masking of a path in a log line's arguments (an error line's
    ``request.url.path``), given as uvicorn hands a target over (its path decoded and quoted
    again, the query raw)."""
    from urllib.parse import quote, unquote

    path, mark, query = target.partition("?")
    assert mask_target(quote(unquote(path)) + mark + query) == expected
