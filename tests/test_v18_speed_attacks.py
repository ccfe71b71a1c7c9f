"""Hostile-client attacks on the v18 speed-ups that held: pipelined answers stay whole and in
order with the response head held until its body (otp.serving.HeadWithBody), a refused
100-continue and a 431 after an answer on the same connection; `otp worker` and a dev `otp serve`
stop cleanly on SIGTERM under uvloop; an unannounced retry is not starved by a flood of announced
starts (the worker's announced-partition rounds)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from delivery_fixtures import live_service
from test_access_log import credentials, serving
from test_delivery_faults import worker_env
from test_response_writes import connect

from otp.edge.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="module")
def served(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(redis_server.url, tmp_path_factory.mktemp("speed")) as (base, _process):
        yield base


def read_responses(
    sock: socket.socket, count: int, *, head_only: frozenset[int] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """``count`` responses read off ``sock`` in order: (status line, body)."""
    data = b""
    out: list[tuple[bytes, bytes]] = []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed after {out!r}, pending {data!r}")
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}
        if status.startswith(b"HTTP/1.1 1"):
            out.append((status, b""))
            continue
        length = 0 if len(out) in head_only else int(headers.get(b"content-length", b"0"))
        while len(data) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("closed mid-body")
            data += chunk
        out.append((status, data[:length]))
        data = data[length:]
    return out


def test_pipelined_answers_come_back_whole_and_in_order(served: str, redis_server: EmbeddedRedis) -> None:
    key, _ = credentials(redis_server.url, "pipelined")
    post = (
        b"POST /v1/verifications HTTP/1.1\r\nHost: otp\r\n"
        + f"Authorization: Bearer {key}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    unauth = (
        b"POST /v1/verifications HTTP/1.1\r\nHost: otp\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    health = b"GET /healthz HTTP/1.1\r\nHost: otp\r\n\r\n"
    head = b"HEAD /healthz HTTP/1.1\r\nHost: otp\r\n\r\n"
    with connect(served) as sock:
        sock.sendall(post + health + head + unauth + health)
        answers = read_responses(sock, 5, head_only=frozenset({2}))
    statuses = [s.split(b" ")[1] for s, _ in answers]
    assert statuses == [b"400", b"200", b"200", b"401", b"200"], answers
    assert json.loads(answers[0][1])["error"]["field"] == "to"
    assert answers[2][1] == b""


def test_expect_continue_refused_before_the_body_then_the_next_request(served: str) -> None:
    head = (
        b"POST /v1/verifications HTTP/1.1\r\nHost: otp\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    )
    with connect(served) as sock:
        sock.sendall(head)
        ((status, _),) = read_responses(sock, 1)
        assert status.startswith(b"HTTP/1.1 401"), status
        sock.sendall(b"{}" + b"GET /healthz HTTP/1.1\r\nHost: otp\r\n\r\n")
        ((status, _),) = read_responses(sock, 1)
        assert status.startswith(b"HTTP/1.1 200"), status


def test_an_oversized_head_pipelined_after_an_answer(served: str) -> None:
    health = b"GET /healthz HTTP/1.1\r\nHost: otp\r\n\r\n"
    big = b"GET /healthz HTTP/1.1\r\nHost: otp\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n"
    with connect(served) as sock:
        sock.sendall(health + big)
        answers = read_responses(sock, 2)
    assert [s.split(b" ")[1] for s, _ in answers] == [b"200", b"431"], answers


def stop_with_sigterm(process: subprocess.Popen[str], timeout: float) -> tuple[float, str]:
    """SIGTERM ``process``; how long it took to exit and what it wrote (killed if it never did)."""
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return time.monotonic() - began, (out or "") + (err or "")


async def test_otp_worker_stops_on_sigterm_under_uvloop(redis_url: str) -> None:
    async with live_service(redis_url, worker=False) as live:
        env = worker_env(redis_url, live.stub.url, live.base)
        worker = subprocess.Popen([sys.executable, "-m", "otp", "worker"], env=env, stderr=subprocess.PIPE, text=True)
        try:
            await asyncio.sleep(3.0)
            to = "+14155550123"
            await live.start(to)
            deadline = time.monotonic() + 10
            while not any(m.to == to for m in live.stub.messages) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert any(m.to == to for m in live.stub.messages)
        finally:
            took, err = await asyncio.to_thread(stop_with_sigterm, worker, 15)
        assert worker.returncode == 0, err
        assert took < 3.0, (took, err)
        assert "worker stopped" in err, err
        assert "Traceback" not in err, err


def test_dev_serve_stops_on_sigterm_under_uvloop_with_its_worker_and_embedded_redis(tmp_path: Path) -> None:
    from test_serve import clean_env, otp_command, wait_until_ready

    from otp.edge.embedded_redis import free_port

    port = free_port()
    data = tmp_path / "data"
    env = clean_env(OTP_DATA_DIR=str(data), OTP_PORT=str(port), OTP_ARGON2_MEMORY_KIB="8192", OTP_ARGON2_TIME_COST="1")
    process = subprocess.Popen(
        otp_command("serve"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process)
        time.sleep(1.0)
    finally:
        took, out = stop_with_sigterm(process, 20)
    assert process.returncode == 0, out
    assert took < 5.0, (took, out)
    assert "Traceback" not in out, out


async def test_a_retry_nobody_announces_is_not_starved_by_a_flood_of_announced_starts(redis_url: str) -> None:
    from delivery_fixtures import new_number
    from test_worker_wakeups import running_worker

    async with live_service(redis_url, worker=False) as live:
        async with running_worker(live, redis_url, sweep_interval=0.25, max_idle=1.0) as worker:
            live.stub.fail_next(1, status=503)  # the first send is retried after its backoff, unannounced
            victim = new_number()
            began = time.monotonic()
            await live.start(victim)

            async def flood() -> None:
                for _ in range(80):
                    await live.http.post("/v1/verifications", json={"to": new_number()}, headers=live.auth)

            flooding = asyncio.create_task(flood())
            try:
                while not any(m.to == victim for m in live.stub.messages) and time.monotonic() - began < 10:
                    await asyncio.sleep(0.01)
                took = time.monotonic() - began
                still_flooding = not flooding.done()
            finally:
                await flooding
            assert worker._listening
            assert any(m.to == victim for m in live.stub.messages)
            assert still_flooding, "the flood ended before the retry went out: no attack"
            assert took < 1.5, took
