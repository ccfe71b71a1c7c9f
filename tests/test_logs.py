"""The log of `otp serve` as a log pipeline reads it: one JSON object per line from every logger,
one access line per request naming the route's template and the request id (echoed in
``X-Request-Id``), no phone number anywhere; text at a terminal or on request."""

from __future__ import annotations

import json
import logging
import os
import pty
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SECRET, Clock, RecordingSender, make_settings, running_service
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from test_serve import clean_env, otp_command, wait_until_ready

from otp.app import App
from otp.edge.embedded_redis import free_port
from otp.errors import ConfigError
from otp.logs import RequestIds
from otp.settings import Settings
from otp.web import errors as web_errors

TO = "+15017122661"
NATIONAL = "5017122661"
GENERATED = re.compile(r"[0-9a-f]{16}")
METRICS_TOKEN = "metrics-token-0123456789abcdefghijklmnop"


def read_until(process: subprocess.Popen[str], needle: str, timeout: float = 10.0) -> str:
    """What the server has written to stderr so far, read to the end of the line that holds
    ``needle`` (bounded)."""
    assert process.stderr is not None
    os.set_blocking(process.stderr.fileno(), False)
    text = ""
    deadline = time.monotonic() + timeout
    while not (needle in text and text.endswith("\n")) and time.monotonic() < deadline:
        text += process.stderr.read() or ""
        time.sleep(0.05)
    return text


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    """The development setup (embedded Redis, console sender) with stderr on its own pipe and
    OTP_LOG_FORMAT unset: a pipe is not a terminal, so the log is JSON."""
    port = free_port()
    env = clean_env(
        OTP_DATA_DIR=str(tmp_path / "data"), OTP_PORT=str(port), OTP_ARGON2_MEMORY_KIB="8192", OTP_ARGON2_TIME_COST="1"
    )
    process = subprocess.Popen(
        otp_command("serve"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process)
        yield base, tmp_path / "data", process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def stop(process: subprocess.Popen[str], already: str) -> str:
    """Stop the server; its whole stderr (what was read already, then the rest)."""
    assert process.stderr is not None
    process.terminate()
    os.set_blocking(process.stderr.fileno(), True)
    rest = process.stderr.read()  # to the end: the process has exited
    process.wait(timeout=15)
    return already + rest


def access_line(lines: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    found = [line for line in lines if line["logger"] == "otp.access" and line.get("request_id") == request_id]
    assert len(found) == 1, (request_id, found)
    return found[0]


def test_every_line_of_otp_serve_is_json_and_each_request_has_one_access_line_with_its_id(
    served: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    base, data_dir, process = served
    admin = {"Authorization": f"Bearer {(data_dir / 'dev-api-key').read_text().strip()}"}
    with httpx.Client(base_url=base) as client:
        given = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
        safelist = client.delete(f"/v1/safelist/{TO}", headers=admin)
        unknown = client.get(f"/no/such/page/{NATIONAL}?to={TO}")
        started = client.post("/v1/verifications", json={"to": TO}, headers=admin)
        # Not sane ids, replaced: one that is a number, one too long, one with a space.
        replaced = [client.get("/healthz", headers={"X-Request-Id": bad}) for bad in (NATIONAL, "a" * 65, "two words")]
        already = read_until(process, "DEVELOPMENT ONLY console SMS")
    log = stop(process, already)

    assert given.headers["x-request-id"] == "abc-123"
    assert (safelist.status_code, unknown.status_code, started.status_code) == (404, 404, 201)
    lines = [json.loads(line) for line in log.splitlines()]  # every line parses
    assert lines and all({"timestamp", "level", "logger", "message"} <= line.keys() for line in lines)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["timestamp"]) for line in lines)
    assert {"uvicorn.error", "otp", "otp.access", "otp.audit", "otp.sms"} <= {line["logger"] for line in lines}

    line = access_line(lines, "abc-123")
    assert (line["method"], line["route"], line["status"], line["client"]) == ("GET", "/healthz", 200, "127.0.0.1")
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    # No id given: a new one, the same in the answer and in the line.
    for response, route, status in ((safelist, "/v1/safelist/{entry}", 404), (unknown, "unmatched", 404)):
        request_id = response.headers["x-request-id"]
        assert GENERATED.fullmatch(request_id)
        assert (access_line(lines, request_id)["route"], access_line(lines, request_id)["status"]) == (route, status)
    for response in replaced:
        assert GENERATED.fullmatch(response.headers["x-request-id"])
        assert access_line(lines, response.headers["x-request-id"])["route"] == "/healthz"
    # Every line written while handling a request names it: the start's audit event too.
    start_id = started.headers["x-request-id"]
    audit = [line for line in lines if line["logger"] == "otp.audit" and line["audit"]["event"] == "started"]
    assert [line["request_id"] for line in audit] == [start_id]
    assert audit[0]["audit"]["to"] == "+1*********61" and audit[0]["audit"]["vid"] == started.json()["id"]
    # The development sender's line, code and all, is a JSON line as well.
    sms = [line for line in lines if line["logger"] == "otp.sms"]
    assert len(sms) == 1 and re.search(r"DEVELOPMENT ONLY console SMS .* to \+1\*+61: \d{6} ", sms[0]["message"])
    # One access line per request (uvicorn's own is off), and no number in any line.
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    assert NATIONAL not in log and "712-2661" not in log and "%2B1" not in log


def test_an_unknown_log_format_is_refused_naming_the_variable(tmp_path: Path) -> None:
    for command in ("serve", "worker"):
        result = subprocess.run(
            otp_command(command),
            env=clean_env(OTP_LOG_FORMAT="bogus", OTP_DATA_DIR=str(tmp_path)),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
        assert result.returncode == 2, (command, result.stderr)
        assert "OTP_LOG_FORMAT='bogus' must be one of: json, text" in result.stderr
        assert "Traceback" not in result.stderr


def test_the_log_format_setting_reads_json_or_text_and_leaves_the_default_to_the_shell() -> None:
    assert Settings.from_env({}).log_format == ""
    assert Settings.from_env({"OTP_LOG_FORMAT": " Text "}).log_format == "text"
    assert Settings.from_env({"OTP_LOG_FORMAT": "json"}).log_format == "json"


def test_otp_worker_writes_the_same_json_lines(redis_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        otp_command("worker", "--burst"),
        # No Twilio here: the console sender, chosen on purpose (without OTP_SMS the worker refuses).
        env=clean_env(OTP_REDIS_URL=redis_url, OTP_SECRET_KEY=SECRET, OTP_DATA_DIR=str(tmp_path), OTP_SMS="console"),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(line["logger"] == "otp" and line["message"].startswith("worker stopped after") for line in lines)


# Lines as otp serve writes them, from one process: an access line inside a request, an audit
# event, a warning whose arguments hold a path with a number, and an error with its traceback.
SCRIPT = """
import logging
from otp import logs
from otp.core import events
from otp.web import access_log
logs.setup("INFO", FORMAT)
token = access_log.REQUEST_ID.set("req-7")
logging.getLogger("otp.access").info("request", extra={"method": "GET", "route": "/v1/safelist/{entry}",
    "status": 404, "duration_ms": 1.5, "client": "127.0.0.1", "request_id": "req-7"})
events.emit("started", 1700000000.0, vid="VE" + "0" * 32, to="+1*********61", country="US")
access_log.REQUEST_ID.reset(token)
logging.getLogger("otp").warning("storage error on %s %s", "GET", "/v1/safelist/+15017122661")
logging.getLogger("otp").warning("a field", extra={"target": "/v2/Attempts/501-712-2661", "to": "+15017122661"})
try:
    raise RuntimeError("no route to +1 501 712 2661")
except RuntimeError:
    logging.getLogger("otp").exception("unhandled error")
logging.getLogger("twilio.http_client").info("Headers: To=+15017122661")
"""


def run_script(fmt: str, tmp_path: Path, **run: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*otp_command()[:1], "-c", f"FORMAT = {fmt!r}\n" + SCRIPT],
        env=clean_env(),
        text=True,
        timeout=30,
        cwd=tmp_path,
        **run,
    )


def test_text_mode_writes_readable_lines_with_their_fields_and_masks_them(tmp_path: Path) -> None:
    result = run_script("text", tmp_path, capture_output=True)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(
        stamp + r" INFO otp\.access request method=GET route=/v1/safelist/\{entry\} status=404 duration_ms=1\.5 "
        r"client=127\.0\.0\.1 request_id=req-7",
        lines[0],
    ), lines[0]
    assert re.fullmatch(
        stamp + r" INFO otp\.audit audit ts=1700000000\.0 event=started vid=VE0{32} to=\+1\*{9}61 country=US "
        r"request_id=req-7",
        lines[1],
    ), lines[1]
    assert lines[2].endswith(" WARNING otp storage error on GET /v1/safelist/+1*******2661")
    assert lines[3].endswith(" WARNING otp a field target=/v2/Attempts/*******2661 to=+1*******2661")
    assert lines[4].endswith(" ERROR otp unhandled error") and lines[5] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: no route to +1*******2661"
    assert "twilio" not in result.stderr  # the SDK's INFO lines (headers, parameters) are off
    assert "501" not in "\n".join(line.split(" ", 1)[-1] for line in lines)


def test_json_mode_masks_every_field_and_keeps_the_traceback_in_the_line(tmp_path: Path) -> None:
    result = run_script("json", tmp_path, capture_output=True)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["logger"] for line in lines] == ["otp.access", "otp.audit", "otp", "otp", "otp"]
    assert lines[0]["route"] == "/v1/safelist/{entry}" and lines[0]["request_id"] == "req-7"
    assert lines[1]["audit"]["event"] == "started" and lines[1]["request_id"] == "req-7"
    assert "request_id" not in lines[2]  # outside any request
    assert (lines[3]["target"], lines[3]["to"]) == ("/v2/Attempts/*******2661", "+1*******2661")
    assert lines[4]["exc_info"].endswith("RuntimeError: no route to +1*******2661")
    assert "501" not in json.dumps([{k: v for k, v in line.items() if k != "timestamp"} for line in lines])


def test_at_a_terminal_the_log_is_text_by_default(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        result = run_script("", tmp_path, stderr=follower, stdout=subprocess.DEVNULL)
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert result.returncode == 0
    assert " INFO otp.access request method=GET " in out.decode()
    assert not out.lstrip().startswith(b"{")


async def boom(request: Request) -> Response:
    raise RuntimeError("a bug")


async def test_a_500_carries_its_request_id_and_its_error_line_names_it(caplog: pytest.LogCaptureFixture) -> None:
    """The access log sits outside Starlette's ServerErrorMiddleware, which writes the 500."""
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestIds())
    app = App(routes=[Route("/boom", boom)], exception_handlers=web_errors.HANDLERS)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://otp.test") as http:
        answer = await http.get("/boom", headers={"X-Request-Id": "trace-500"})
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal"
    assert answer.headers["x-request-id"] == "trace-500"
    error = [r for r in caplog.records if r.name == "otp" and r.getMessage() == "unhandled error on GET /boom"]
    assert [getattr(r, "request_id", None) for r in error] == ["trace-500"]
    access = [r for r in caplog.records if r.name == "otp.access"]
    assert [(getattr(r, "status", None), getattr(r, "route", None)) for r in access] == [(500, "/boom")]


async def test_unknown_paths_share_one_unmatched_series_in_the_metrics(redis_url: str) -> None:
    settings = make_settings(redis_url, metrics_token=METRICS_TOKEN)
    async with running_service(settings, Clock(), RecordingSender()) as service:
        scrape = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        series = re.compile(
            r'^otp_request_duration_seconds_count\{method="GET",route="unmatched",status="404"\} (\S+)$'
        )

        async def unmatched() -> list[float]:
            text = (await service.http.get("/metrics", headers=scrape)).text
            return [float(m.group(1)) for line in text.splitlines() if (m := series.match(line))]

        before = sum(await unmatched())
        paths = [f"/{secrets.token_hex(6)}/{n}/+1202555{n:04d}" for n in range(100)]
        for path in paths:
            assert (await service.http.get(path)).status_code == 404
        text = (await service.http.get("/metrics", headers=scrape)).text
        assert len(await unmatched()) == 1
        assert sum(await unmatched()) == before + 100
        assert 'route="unmatched"' in text
        for path in paths:
            assert path.split("/")[1] not in text
        assert "+1202555" not in text


def test_an_unknown_log_level_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTP_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError, match=r"OTP_LOG_LEVEL='loud' must be one of: debug, info"):
        Settings.from_env()
