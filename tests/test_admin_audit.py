"""Admin actions are audited in one place (otp.core.admin_audit): from the command line, the admin
API and the dashboard, each change is an ``admin`` event naming who made it, and one line on the
``otp.admin`` log; no record holds a token, a secret or a whole phone number."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from conftest import SECRET, Service
from test_dashboard_sessions import attempt, client_from, csrf_of, sign_in

from otp import cli
from otp.audit_fields import AdminAction
from otp.core import audit, optouts
from otp.core.admin_audit import recordable
from otp.core.keyring import Keyring
from otp.core.phone import mask_in_record
from otp.storage.client import connect
from otp.storage.store import Store

NUMBER = "+15017122661"
MASKED = mask_in_record(NUMBER)


async def _admin_events(store: Store) -> list[audit.AuditEvent]:
    """The admin events, oldest first."""
    events, _ = await audit.read(store, audit.AuditFilter(event="admin"), limit=1000)
    return events[::-1]


def _admin_events_at(redis_url: str) -> list[audit.AuditEvent]:
    async def read() -> list[audit.AuditEvent]:
        client = connect(redis_url)
        try:
            return await _admin_events(Store(client, partitions=16))
        finally:
            await client.aclose()

    return asyncio.run(read())


def _leaks(events: list[audit.AuditEvent] | str, *secrets: str) -> list[str]:
    """What of the number, the service's secret and ``secrets`` the events (or a page) spell."""
    text = events if isinstance(events, str) else json.dumps([e.as_dict() for e in events])
    return [s for s in (NUMBER, NUMBER[1:], SECRET, *secrets) if s in text]


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture
def command_env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OTP_REDIS_URL", redis_url)
    monkeypatch.setenv("OTP_SECRET_KEY", SECRET)
    monkeypatch.setenv("OTP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LOGNAME", "night-operator")  # what getpass.getuser() reads first
    return redis_url


def _otp(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert cli.main(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out.strip().split("\n")


def test_every_admin_command_is_audited_as_the_command_line_and_its_os_user(
    command_env: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otp.admin")
    token = _otp(capsys, "keys", "create", "billing-app")[-1]
    key_id, secret = token.split("_")[1:]
    _otp(capsys, "keys", "budget", key_id, "2.50")
    _otp(capsys, "keys", "budget", key_id, "--remove")
    _otp(capsys, "safelist", "add", NUMBER)
    _otp(capsys, "safelist", "remove", NUMBER)
    _otp(capsys, "safelist", "add", "+1415555")

    async def opt_out() -> None:
        client = connect(command_env)
        try:
            await optouts.record(
                Store(client, partitions=16), Keyring((SECRET,)), NUMBER, now_ms=0, ttl=3600, source="send"
            )
        finally:
            await client.aclose()

    asyncio.run(opt_out())
    _otp(capsys, "optouts", "clear", NUMBER)
    _otp(capsys, "keys", "revoke", key_id)

    events = _admin_events_at(command_env)
    assert [(e.get("action"), e.get("entry")) for e in events] == [
        (AdminAction.KEY_CREATE, key_id),
        (AdminAction.BUDGET_SET, f"{key_id}=2.50"),
        (AdminAction.BUDGET_REMOVE, key_id),
        (AdminAction.SAFELIST_ADD, MASKED),
        (AdminAction.SAFELIST_REMOVE, MASKED),
        (AdminAction.SAFELIST_ADD, "+1415555"),  # a prefix is not a number: kept as typed
        (AdminAction.OPT_OUT_CLEAR, MASKED),
        (AdminAction.KEY_REVOKE, key_id),
    ]
    assert {(e.get("key"), e.get("key_name"), e.get("via"), e.get("user")) for e in events} == {
        ("cli", "otp (command line)", "cli", "night-operator")
    }
    assert (events[0].get("label"), events[0].get("role")) == ("billing-app", "client")
    assert _leaks(events, token, secret) == []
    # One log line per action, its fields on the record for a structured formatter.
    lines = [r for r in caplog.records if r.name == "otp.admin"]
    assert [getattr(r, "action", None) for r in lines] == [e.get("action") for e in events]
    assert lines[3].getMessage() == f"admin action safelist_add {MASKED} by otp (command line) via cli"
    assert all(NUMBER not in r.getMessage() and token not in r.getMessage() for r in lines)


def test_a_refused_command_changes_nothing_and_audits_nothing(
    command_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["keys", "revoke", "0123456789abcdef"]) == 1
    assert cli.main(["safelist", "remove", "+1415555"]) == 1
    capsys.readouterr()
    assert _admin_events_at(command_env) == []


# -- the admin API -------------------------------------------------------------------------------


async def test_every_admin_api_change_is_audited_with_the_admin_key_that_made_it(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otp.admin")
    http, admin = service.http, service.auth(service.admin_key)
    client_id = service.key.split("_")[1]
    assert (await http.post("/v1/safelist", json={"entry": NUMBER}, headers=admin)).status_code == 201
    assert (await http.delete(f"/v1/safelist/{NUMBER}", headers=admin)).status_code == 200
    assert (await http.delete("/v1/blocks", params={"prefix": "+1415555"}, headers=admin)).status_code == 200
    budget = f"/v1/budgets/keys/{client_id}"
    assert (await http.put(budget, json={"amount": "1.00"}, headers=admin)).status_code == 200
    assert (await http.delete(budget, headers=admin)).status_code == 200
    state = service.app.state
    await optouts.record(
        state.store, state.verifier.keyring, NUMBER, now_ms=service.clock.now_ms(), ttl=3600, source="send"
    )
    assert (await http.delete(f"/v1/optouts/{NUMBER}", headers=admin)).status_code == 200
    # A client key is refused, and its attempt is no admin action.
    assert (await http.post("/v1/safelist", json={"entry": "+1415"}, headers=service.auth())).status_code == 403

    page = await http.get("/v1/audit", params={"event": "admin", "limit": 100}, headers=admin)
    events = page.json()["events"][::-1]
    assert [(e["action"], e["entry"]) for e in events] == [
        ("safelist_add", MASKED),
        ("safelist_remove", MASKED),
        ("unblock", "+1415555"),
        ("budget_set", f"{client_id}=1.00"),
        ("budget_remove", client_id),
        ("opt_out_clear", MASKED),
    ]
    admin_id = service.admin_key.split("_")[1]
    assert {(e["key"], e["key_name"], e["via"], e["client_ip"]) for e in events} == {
        (admin_id, "test-admin", "api", "127.0.0.1")
    }
    assert all(e["ts"] == service.clock.now_ms() for e in events)  # the service's clock
    assert _leaks(page.text, service.admin_key, service.admin_key.split("_")[2]) == []
    lines = [r.getMessage() for r in caplog.records if r.name == "otp.admin"]
    assert lines[0] == f"admin action safelist_add {MASKED} by test-admin via api" and len(lines) == 6


# -- the dashboard -------------------------------------------------------------------------------


async def test_dashboard_sign_ins_failures_and_sign_outs_are_audited_by_key_and_address(service: Service) -> None:
    client_id = service.key.split("_")[1]
    admin_id = service.admin_key.split("_")[1]
    wrong = "otpk_" + "0" * 16 + "_" + "s" * 64
    async with client_from(service, "198.51.100.9") as http:
        assert (await attempt(http, wrong)).status_code == 401
        assert (await attempt(http, service.key)).status_code == 403  # not an admin key
        csrf = await sign_in(http, service.admin_key)
        assert (await http.post("/admin/signout", data={"csrf": csrf})).status_code == 303
        # Signing out again ends no session: nothing to record.
        form = await http.get("/admin/signin")
        assert (await http.post("/admin/signout", data={"csrf": csrf_of(form.text)})).status_code == 303

    events = await _admin_events(service.app.state.store)
    assert [(e.get("action"), e.get("key"), e.get("reason")) for e in events] == [
        ("dashboard_sign_in_failed", "", "unknown_key"),
        ("dashboard_sign_in_failed", client_id, "not_admin"),
        ("dashboard_sign_in", admin_id, ""),
        ("dashboard_sign_out", admin_id, ""),
    ]
    assert {(e.get("via"), e.get("client_ip")) for e in events} == {("dashboard", "198.51.100.9")}
    assert events[2].get("key_name") == "test-admin"
    assert _leaks(events, wrong, "s" * 64, service.key, service.admin_key) == []


async def test_guesses_past_the_sign_in_throttle_write_no_more_audit_events(service: Service) -> None:
    """The throttle bounds what one address can write into the (capped) audit log."""
    async with client_from(service, "203.0.113.50") as http:
        answers = [(await attempt(http, f"otpk_{i:016x}_{'x' * 64}")).status_code for i in range(13)]
    assert answers == [401] * 10 + [429] * 3
    events = await _admin_events(service.app.state.store)
    assert [e.get("action") for e in events] == ["dashboard_sign_in_failed"] * 10


async def test_dashboard_changes_are_audited_as_the_sessions_key_via_the_dashboard(service: Service) -> None:
    csrf = await sign_in(service.http, service.admin_key)
    response = await service.http.post("/admin/fraud/safelist", data={"csrf": csrf, "entry": NUMBER, "confirm": "yes"})
    assert response.status_code == 303
    events = await _admin_events(service.app.state.store)
    assert [(e.get("action"), e.get("entry"), e.get("via")) for e in events] == [
        ("dashboard_sign_in", "", "dashboard"),
        ("safelist_add", MASKED, "dashboard"),
    ]
    page = (await service.http.get("/admin/audit", params={"event": "admin"})).text
    assert f"safelist_add {MASKED} by test-admin" in page and NUMBER not in page


# -- the target ----------------------------------------------------------------------------------


def test_a_whole_number_is_masked_and_prefixes_countries_and_ids_are_kept() -> None:
    assert recordable(NUMBER) == MASKED
    assert recordable("+447700900123") == mask_in_record("+447700900123")
    # Prefixes, even long ones a country's local numbers could be, are not numbers.
    assert [recordable(t) for t in ("+1415555", "+14155550", "US", "0123456789abcdef", MASKED, "")] == [
        "+1415555",
        "+14155550",
        "US",
        "0123456789abcdef",
        MASKED,
        "",
    ]
