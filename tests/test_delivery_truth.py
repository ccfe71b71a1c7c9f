"""Delivery truth a person can act on: every Twilio error code explained on the send attempt, an
opt-out (21610) that refuses later starts before any cost, each send's timeline, and the dashboard's
delivery rate, p50/p95 and 30034 alert -- through the real twilio SDK and the stand-in."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from test_audit import cli_env
from test_twilio_compat import V2, new_number, refused, serve, service

from otp import delivery_errors
from otp.core import apikeys
from otp.core.phone import mask_in_record
from otp.storage.store import Store

SENDER = "+15005550006"  # delivery_fixtures.twilio_options' OTP_TWILIO_FROM
SEND_TIME = (21211, 21408, 21610)  # what Twilio refuses at the create


@pytest.fixture
def v2(redis_url: str) -> Iterator[V2]:
    with serve(redis_url) as live:
        yield live


@pytest.fixture
def v1(v2: V2) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=v2.base, headers={"Authorization": f"Bearer {v2.v1_key}"}, timeout=10) as http:
        yield http


@pytest.fixture
def admin(v2: V2, redis_url: str) -> Iterator[httpx.Client]:
    async def create() -> str:
        client = aioredis.Redis.from_url(redis_url)
        _, token = await apikeys.create(Store(client, partitions=16), "ops", admin=True)
        await client.aclose()
        return token

    token = asyncio.run(create())
    with httpx.Client(base_url=v2.base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        http.headers["X-Admin-Token"] = token  # kept for the dashboard sign-in below
        yield http


def start(v1: httpx.Client, to: str) -> dict[str, Any]:
    response = v1.post("/v1/verifications", json={"to": to})
    assert response.status_code == 201, response.text
    return dict(response.json())


def settled(v1: httpx.Client, vid: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
    """The verification's last send attempt once its delivery status is ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        attempt = v1.get(f"/v1/verifications/{vid}").json()["send_attempts"][-1]
        if attempt["delivery"]["status"] == status:
            return dict(attempt)
        assert time.monotonic() < deadline, attempt
        time.sleep(0.03)


def meaning(code: int) -> dict[str, Any]:
    return dict(delivery_errors.CATALOGUE[code].as_dict())


def test_every_catalogued_error_from_the_carrier_lands_on_the_attempt_with_its_meaning(
    v2: V2, v1: httpx.Client
) -> None:
    sends = {}
    for code in delivery_errors.CATALOGUE:
        to = new_number()
        v2.stub.script(to, "undelivered" if code >= 30000 else "failed", error_code=code)
        sends[code] = start(v1, to)["id"]
    for code, vid in sends.items():
        status = "undelivered" if code >= 30000 else "failed"
        attempt = settled(v1, vid, status)
        assert attempt["delivery"]["error_code"] == code
        assert attempt["delivery"]["error"] == meaning(code), code


def test_an_unknown_code_gets_a_generic_entry_pointing_to_twilios_page(v2: V2, v1: httpx.Client) -> None:
    to = new_number()
    v2.stub.script(to, "undelivered", error_code=30999)
    error = settled(v1, start(v1, to)["id"], "undelivered")["delivery"]["error"]
    assert error["title"] == "Twilio error 30999" and error["more_info"] == "https://www.twilio.com/docs/errors/30999"
    assert error["retry_helps"] is False


@pytest.mark.parametrize("code", SEND_TIME)
def test_a_create_twilio_refuses_fails_at_once_with_its_meaning_and_is_not_retried(
    v2: V2, v1: httpx.Client, code: int
) -> None:
    to = new_number()
    v2.stub.script(to, "reject", code=code)
    attempt = settled(v1, start(v1, to)["id"], "failed")
    assert attempt["delivery"]["error_code"] == code
    assert attempt["delivery"]["error"] == meaning(code)
    assert attempt["tries"] == 1  # the catalogue says retrying can't help: no second create
    assert attempt["timeline"]["failed"] >= attempt["timeline"]["queued"]


def test_a_stop_at_send_refuses_the_next_start_before_any_send_until_an_admin_clears_it(
    v2: V2, v1: httpx.Client, admin: httpx.Client
) -> None:
    to = new_number()
    v2.stub.script(to, "reject", code=21610, message="Attempt to send to unsubscribed recipient")
    settled(v1, start(v1, to)["id"], "failed")
    v2.stub.script(to, "delivered")  # were anything sent now, the stand-in would record it
    assert admin.post("/v1/safelist", json={"entry": to}).status_code == 201  # the safe list doesn't waive it

    refused_start = v1.post("/v1/verifications", json={"to": to})
    assert refused_start.status_code == 403, refused_start.text
    error = refused_start.json()["error"]
    assert (error["code"], error["field"], error["rule"]) == ("recipient_opted_out", "to", "opt_out")
    assert "STOP" in error["message"]
    assert [m for m in v2.stub.messages if m.to == to] == []  # no SMS, no cost

    events = admin.get("/v1/audit", params={"event": "opted_out"}).json()["events"]
    assert [(e["source"], e["error_code"]) for e in events] == [("send", "21610")]
    assert to not in str(events)  # masked and hashed only
    status = admin.get(f"/v1/optouts/{to}").json()
    assert status["opted_out"] is True and status["since"] and to not in status["to"]

    cleared = admin.delete(f"/v1/optouts/{to}")
    assert cleared.status_code == 200 and cleared.json()["cleared"] is True
    assert admin.delete(f"/v1/optouts/{to}").status_code == 404
    settled(v1, start(v1, to)["id"], "delivered")
    assert len([m for m in v2.stub.messages if m.to == to]) == 1


def test_a_stop_reported_by_a_callback_opts_the_number_out_too_and_v2_answers_twilios_21610(
    v2: V2, v1: httpx.Client, admin: httpx.Client
) -> None:
    to = new_number()
    v2.stub.script(to, "failed", error_code=21610)
    settled(v1, start(v1, to)["id"], "failed")
    # The callback's handler records the opt-out after the state it shows (two round trips
    # later): wait for it, as a start racing that window would be refused by Twilio anyway.
    deadline = time.monotonic() + 5
    while not admin.get(f"/v1/optouts/{to}").json()["opted_out"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert v1.post("/v1/verifications", json={"to": to}).json()["error"]["code"] == "recipient_opted_out"
    client = v2.client()
    sid = service(client).sid
    error = refused(lambda: client.verify.v2.services(sid).verifications.create(to=to, channel="sms"))
    assert (error.status, error.code) == (403, 21610)
    assert "unsubscribed" in error.msg


def _delivered_count(country: str) -> float:
    return REGISTRY.get_sample_value("otp_sms_time_to_delivered_seconds_count", {"country": country}) or 0.0


def test_each_send_carries_its_timeline_and_the_time_to_delivered_is_observed_per_country(
    v2: V2, v1: httpx.Client
) -> None:
    before = _delivered_count("US")
    attempt = settled(v1, start(v1, new_number())["id"], "delivered")
    line = attempt["timeline"]
    assert list(line) == ["queued", "accepted", "sent", "delivered", "time_to_delivered_ms"]
    moments = [line[k] for k in ("queued", "accepted", "sent", "delivered")]
    assert moments == sorted(moments) and all(re.fullmatch(r"\S+T\S+\.\d{3}Z", m) for m in moments)
    assert 0 <= line["time_to_delivered_ms"] < 10_000
    assert (attempt["country"], attempt["sender"]) == ("US", SENDER)
    assert _delivered_count("US") == before + 1


def test_v2_attempts_explain_the_error_and_carry_the_timeline(v2: V2) -> None:
    client = v2.client()
    sid = service(client).sid
    to = new_number()
    v2.stub.script(to, "undelivered", error_code=30034)
    started = client.verify.v2.services(sid).verifications.create(to=to, channel="sms")
    attempts = client.verify.v2.verification_attempts
    deadline = time.monotonic() + 10
    while (found := attempts.list(verification_sid=started.sid)[0]).channel_data["message_status"] != "undelivered":
        assert time.monotonic() < deadline, found.channel_data
        time.sleep(0.05)
    data = found.channel_data
    assert data["error_code"] == "30034" and data["error"] == meaning(30034)
    assert list(data["timeline"]) == ["queued", "accepted", "sent", "undelivered"]
    assert data["sender"] == SENDER


def _sign_in(v2: V2, admin: httpx.Client) -> httpx.Client:
    http = httpx.Client(base_url=v2.base, timeout=10)
    form = http.get("/admin/signin").text
    found = re.search(r'name="csrf" value="([^"]+)"', form)
    assert found
    signed = http.post("/admin/signin", data={"csrf": found.group(1), "key": admin.headers["X-Admin-Token"]})
    assert signed.status_code == 303, signed.text
    return http


def test_dashboard_explains_errors_shows_rate_and_p50_p95_per_country_and_sender_and_alerts_on_30034(
    v2: V2, v1: httpx.Client, admin: httpx.Client
) -> None:
    outcomes = [("undelivered", 30034)] * delivery_errors.UNREGISTERED_10DLC_ALERT + [("delivered", 0)] * 2
    sends = []
    for outcome, code in outcomes:
        to = new_number()
        v2.stub.script(to, outcome, **({"error_code": code} if code else {}))
        sends.append((start(v1, to)["id"], outcome))
    for vid, outcome in sends:
        settled(v1, vid, outcome)

    data = admin.get("/v1/stats/overview", params={"since": "1h"}).json()
    [alert] = data["alerts"]
    assert (alert["alert"], alert["error_code"], alert["count"]) == ("unregistered_10dlc", 30034, 5)
    [row] = [e for e in data["delivery"]["errors"] if e["error_code"] == "30034"]
    assert (row["count"], row["title"], row["retry_helps"]) == (5, meaning(30034)["title"], False)
    [us] = data["delivery"]["by_country"]
    assert (us["country"], us["delivered"], us["undelivered"], us["failed"]) == ("US", 2, 5, 0)
    assert us["delivery_rate"] == round(2 / 7, 4)
    assert 0 < us["p50_seconds"] <= us["p95_seconds"] <= 10
    [sender] = data["delivery"]["by_sender"]
    assert (sender["sender"], sender["delivered"], sender["p95_seconds"]) == (SENDER, 2, us["p95_seconds"])

    dashboard = _sign_in(v2, admin)
    try:
        page = dashboard.get("/admin/", params={"since": "1h"}).text
    finally:
        dashboard.close()
    assert 'role="alert"' in page and "US carriers are rejecting unregistered A2P 10DLC traffic" in page
    assert "Message from an Unregistered Number" in page and "Register a Brand and Campaign" in page
    assert "Delivery by country" in page and "Delivery by sender" in page and SENDER in page
    assert "28.6 %" in page  # 2 of 7 delivered


def test_no_alert_below_the_burst(v2: V2, v1: httpx.Client, admin: httpx.Client) -> None:
    to = new_number()
    v2.stub.script(to, "undelivered", error_code=30034)
    settled(v1, start(v1, to)["id"], "undelivered")
    assert admin.get("/v1/stats/overview", params={"since": "1h"}).json()["alerts"] == []


def test_a_stop_to_one_tenants_own_messaging_service_does_not_refuse_other_tenants(
    v2: V2, v1: httpx.Client, admin: httpx.Client
) -> None:
    """A STOP holds for the sender it was sent to: tenant A's service sends US codes through its
    own Messaging Service; a user who STOPs it must not be cut off from tenant B (and /v1), who
    send from the operator's number -- nor may B learn about A's traffic from a refusal."""
    own = "MG" + "a" * 32
    a, b = v2.client(), v2.client(v2.other)
    a_service, b_service = service(a).sid, service(b).sid
    a.verify.v2.services(a_service).messaging_configurations.create(country="US", messaging_service_sid=own)
    to = new_number()
    v2.stub.script(to, "reject", code=21610)
    started = a.verify.v2.services(a_service).verifications.create(to=to, channel="sms")
    deadline = time.monotonic() + 10
    while admin.get(f"/v1/optouts/{to}", params={"messaging_service_sid": own}).json()["opted_out"] is not True:
        assert time.monotonic() < deadline, started.sid
        time.sleep(0.03)
    v2.stub.script(to, "delivered")

    assert b.verify.v2.services(b_service).verifications.create(to=to, channel="sms").status == "pending"
    assert admin.get(f"/v1/optouts/{to}").json()["opted_out"] is False  # the operator's sender: not opted out
    error = refused(lambda: a.verify.v2.services(a_service).verifications.create(to=to, channel="sms"))
    assert (error.status, error.code) == (403, 21610)

    assert admin.delete(f"/v1/optouts/{to}", params={"messaging_service_sid": own}).json()["cleared"] is True
    assert a.verify.v2.services(a_service).verifications.create(to=to, channel="sms").status == "pending"
    assert admin.get(f"/v1/optouts/{to}", params={"messaging_service_sid": "MG1"}).status_code == 400


def _us_delivered(admin: httpx.Client) -> int:
    rows = admin.get("/v1/stats/overview", params={"since": "1h"}).json()["delivery"]["by_country"]
    return sum(int(row["delivered"]) for row in rows if row["country"] == "US")


def test_a_delivered_callback_that_overtakes_the_create_answer_still_counts_for_its_country(
    v2: V2, v1: httpx.Client, admin: httpx.Client
) -> None:
    """Twilio may call back before its create answer reaches the worker, so before the worker has
    recorded where the send went: the delivery still counts, once, in the per-country figures."""
    before = _us_delivered(admin)
    to = new_number()
    v2.stub.script(to, "early", count=3)  # queued, sent and delivered posted before the create answers
    settled(v1, start(v1, to)["id"], "delivered")
    deadline = time.monotonic() + 10
    while _us_delivered(admin) != before + 1:
        assert time.monotonic() < deadline, (before, _us_delivered(admin))
        time.sleep(0.03)
    assert _us_delivered(admin) == before + 1


def test_a_stop_reported_before_the_create_answer_marks_the_tenants_messaging_service_only(
    v2: V2, admin: httpx.Client
) -> None:
    """A 21610 callback that overtakes the create answer is still a STOP to the Messaging Service
    the send went through, never to the operator's own senders that every tenant shares."""
    own = "MG" + "b" * 32
    a = v2.client()
    a_service = service(a).sid
    a.verify.v2.services(a_service).messaging_configurations.create(country="US", messaging_service_sid=own)
    to = new_number()
    v2.stub.script(to, "early", count=3, error_code=21610)
    started = a.verify.v2.services(a_service).verifications.create(to=to, channel="sms")
    deadline = time.monotonic() + 10
    while admin.get(f"/v1/optouts/{to}", params={"messaging_service_sid": own}).json()["opted_out"] is not True:
        assert time.monotonic() < deadline, started.sid
        time.sleep(0.03)
    assert admin.get(f"/v1/optouts/{to}").json()["opted_out"] is False


def _optouts_cli(redis_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otp", "optouts", *args],
        env=cli_env(redis_url, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_otp_optouts_checks_and_clears_a_stop_from_the_command_line(
    v2: V2, v1: httpx.Client, admin: httpx.Client, redis_url: str, tmp_path: Path
) -> None:
    to = new_number()
    v2.stub.script(to, "reject", code=21610)
    settled(v1, start(v1, to)["id"], "failed")
    checked = _optouts_cli(redis_url, tmp_path, "check", to)
    assert checked.returncode == 0 and "opted out since" in checked.stdout, checked.stderr
    assert to not in checked.stdout  # masked
    as_json = _optouts_cli(
        redis_url, tmp_path, "check", to.removeprefix("+1"), "--json"
    )  # national, OTP_DEFAULT_REGION US
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == admin.get(f"/v1/optouts/{to}").json()  # the API's answer
    assert _optouts_cli(redis_url, tmp_path, "clear", to).returncode == 0
    assert _optouts_cli(redis_url, tmp_path, "check", to).returncode == 1
    again = _optouts_cli(redis_url, tmp_path, "clear", to, "--json")
    assert again.returncode == 1 and json.loads(again.stdout)["cleared"] is False
    assert v1.post("/v1/verifications", json={"to": to}).status_code == 201
    # The clear is an admin action in the audit log, as the admin API's is (masked, never the number).
    cleared = [
        e
        for e in admin.get("/v1/audit", params={"event": "admin"}).json()["events"]
        if e.get("action") == "opt_out_clear"
    ]
    assert [(e["entry"], e["key"]) for e in cleared] == [(mask_in_record(to), "cli")]
