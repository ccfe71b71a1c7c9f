"""The ``otp`` command as an operator reads it: listings with a header row and ``--json``, an audit
table that fits 120 columns (``--wide`` for every column) with no control character from any
stored value, ``otp twilio-stub --help`` and its startup lines, and the safe list's rules (no
whole country by accident, national numbers read as ``otp audit --number`` reads them).

The CLI runs in process (``otp.cli.main``) against the test Redis, its output read with capsys;
where a running service writes the events, in a thread beside the service's event loop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import NO_PUMPING, SECRET, Clock, Service, make_settings, policy
from delivery_fixtures import ACCOUNT_SID, AUTH_TOKEN

from otp import cli
from otp.app import build_sender, create_app, worker_options
from otp.core import apikeys, audit, terminal_text
from otp.core.keyring import Keyring
from otp.devtools.twilio_stub import OUTCOMES, TwilioStub
from otp.devtools.twilio_stub.cli import build_parser
from otp.edge.worker import Worker
from otp.settings import Settings
from otp.storage.client import connect
from otp.storage.safelist import SafeList
from otp.storage.store import Store

# What a hostile key name carries: colour, cursor moves, a screen clear, a window title, a bell,
# a carriage return and a newline (a forged line), a bidirectional override, a zero-width space,
# and the 8-bit CSI.
HOSTILE = "\x1b[31mred\x1b[0m\x1b[2J\x1b]0;pwned\x07\a\rfake line\nnext\u202eevil\u200b\x9b1Aend"
# The test clock runs in 2027; the CLI's own admin events are written at the real time.
SINCE = ("--since", "2020-01-01T00:00:00Z")


@pytest.fixture
def otp_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, tmp_path: Path) -> str:
    """The environment a command reads: this test's Redis and secret, nothing else of OTP_*."""
    for name in [n for n in os.environ if n.startswith("OTP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTP_REDIS_URL", redis_url)
    monkeypatch.setenv("OTP_SECRET_KEY", SECRET)
    monkeypatch.setenv("OTP_DATA_DIR", str(tmp_path))
    return redis_url


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def json(self) -> Any:
        return json.loads(self.out)


def otp(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """``otp ARGS``, in process; argparse's exits (--help, a bad option) give their status."""
    capsys.readouterr()
    try:
        code = cli.main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


async def otp_async(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """The same beside a running service: the command runs its own event loop, in a thread."""
    return await asyncio.to_thread(otp, capsys, *args)


def unprintable(text: str) -> list[str]:
    """The characters of printed text that a terminal would act on rather than show."""
    return [c for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")]


# -- listings: a header row, and --json --------------------------------------------------------------


def test_keys_list_has_a_header_and_json_round_trips_what_keys_create_printed(
    otp_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    created = otp(capsys, "keys", "create", "checkout-app", "--json")
    assert created.code == 0, created.err
    client_key = created.json()
    assert set(client_key) == {"id", "name", "admin", "twilio", "key"}
    assert (client_key["name"], client_key["admin"], client_key["twilio"]) == ("checkout-app", False, False)
    assert apikeys.split(client_key["key"]) == (client_key["id"], client_key["key"].rsplit("_", 1)[1])
    sdk = otp(capsys, "keys", "create", "sdk-app", "--twilio", "--admin", "--json").json()
    assert sdk["id"].startswith("AC") and sdk["account_sid"] == sdk["id"] and sdk["key"].endswith(sdk["auth_token"])

    listed = otp(capsys, "keys", "list")
    assert listed.code == 0
    assert listed.lines[0].split() == ["id", "role", "credentials", "name"]
    rows = {line.split()[0]: line.split()[1:] for line in listed.lines[1:]}
    assert rows == {client_key["id"]: ["client", "bearer", "checkout-app"], sdk["id"]: ["admin", "twilio", "sdk-app"]}

    as_json = otp(capsys, "keys", "list", "--json").json()
    assert sorted(as_json, key=lambda k: k["name"]) == [
        {k: client_key[k] for k in ("id", "name", "admin", "twilio")},
        {k: sdk[k] for k in ("id", "name", "admin", "twilio")},
    ]

    assert otp(capsys, "keys", "revoke", client_key["id"], "--json").json() == {"id": client_key["id"], "revoked": True}
    again = otp(capsys, "keys", "revoke", client_key["id"], "--json")
    assert again.code == 1 and again.json() == {"id": client_key["id"], "revoked": False}
    assert [k["id"] for k in otp(capsys, "keys", "list", "--json").json()] == [sdk["id"]]


def test_an_empty_listing_still_prints_its_header_and_an_empty_json_array(
    otp_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert otp(capsys, "keys", "list").lines == ["id  role  credentials  name"]
    assert otp(capsys, "keys", "list", "--json").json() == []
    assert otp(capsys, "safelist", "list").lines == ["entry  matches"]
    assert otp(capsys, "safelist", "list", "--json").json() == []


def test_safelist_list_has_a_header_and_json_round_trips_both_kinds_of_entry(
    otp_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    added = otp(capsys, "safelist", "add", "+1501712", "--json")
    assert added.code == 0 and added.json() == {"entry": "+1501712"}

    async def v2_number() -> None:  # as /v2/SafeList/Numbers adds one: a whole number, matched exactly
        client = connect(otp_env)
        await SafeList(Store(client, partitions=16)).add("+14155550100", exact=True)
        await client.aclose()

    asyncio.run(v2_number())
    listed = otp(capsys, "safelist", "list")
    assert [line.split() for line in listed.lines] == [
        ["entry", "matches"],
        ["+1501712", "prefix"],
        ["+14155550100", "exact"],
    ]
    assert otp(capsys, "safelist", "list", "--json").json() == [
        {"entry": "+1501712", "matches": "prefix"},
        {"entry": "+14155550100", "matches": "exact"},
    ]
    assert otp(capsys, "safelist", "remove", "+1501712", "--json").json() == {"entry": "+1501712", "removed": True}
    gone = otp(capsys, "safelist", "remove", "+1501712", "--json")
    assert gone.code == 1 and gone.json() == {"entry": "+1501712", "removed": False}


def test_keys_budget_prints_json(otp_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    key = otp(capsys, "keys", "create", "shop", "--json").json()
    shown = otp(capsys, "keys", "budget", key["id"], "2.50", "--json")
    assert shown.code == 0, shown.err
    figures = shown.json()
    assert (figures["scope"], figures["budget"], figures["spent"]) == (f"key:{key['id']}", "2.5", "0")


# -- the safe list's rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "covers"),
    [("+44", "GB"), ("+1", "US"), ("+353", "IE"), ("+4", "+41 (CH)")],
)
def test_safelist_add_refuses_a_whole_country_calling_code_unless_country_is_given(
    otp_env: str, capsys: pytest.CaptureFixture[str], entry: str, covers: str
) -> None:
    refused = otp(capsys, "safelist", "add", entry)
    assert refused.code == 2
    assert f"'{entry}'" in refused.err and covers in refused.err
    assert "every number there from the fraud rules" in refused.err and "--country" in refused.err
    assert otp(capsys, "safelist", "list", "--json").json() == []

    accepted = otp(capsys, "safelist", "add", entry, "--country")
    assert accepted.code == 0, accepted.err
    assert otp(capsys, "safelist", "list", "--json").json() == [{"entry": entry, "matches": "prefix"}]
    assert otp(capsys, "safelist", "remove", entry).code == 0  # taking one off needs no --country


def test_safelist_add_still_takes_a_prefix_inside_a_country(otp_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    for entry in ("+4420", "+1501712", "+35312"):
        assert otp(capsys, "safelist", "add", entry).code == 0


def test_safelist_reads_a_national_number_as_audit_number_does(
    otp_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    added = otp(capsys, "safelist", "add", "5017122661")
    assert added.code == 0, added.err
    assert added.out == "added +15017122661\n"
    assert otp(capsys, "safelist", "remove", "(501) 712-2661").out == "removed +15017122661\n"
    # The number `otp audit --number 5017122661` searches for (otp.core.phone.parse, OTP_DEFAULT_REGION).
    keyring = Keyring((SECRET,))
    searched = audit.filter_from_params({"number": "5017122661"}, now=0, default_region="US", keyring=keyring)
    assert searched.number_hash == keyring.number_hash("+15017122661")
    assert otp(capsys, "audit", "--number", "5017122661", *SINCE).code == 0
    monkeypatch.setenv("OTP_DEFAULT_REGION", "GB")
    assert otp(capsys, "safelist", "add", "07911 123456").out == "added +447911123456\n"
    bad = otp(capsys, "safelist", "add", "not-a-number")
    assert bad.code == 2 and "E.164" in bad.err and "national format (GB)" in bad.err


async def test_the_api_and_the_dashboard_refuse_a_whole_country_the_same_way(service: Service) -> None:
    from test_dashboard import sign_in

    admin = service.auth(service.admin_key)
    refused = await service.http.post("/v1/safelist", json={"entry": "+44"}, headers=admin)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["field"] == "entry" and "GB" in error["message"] and '"country": true' in error["message"]
    accepted = await service.http.post("/v1/safelist", json={"entry": "+44", "country": True}, headers=admin)
    assert accepted.status_code == 201 and accepted.json() == {"entry": "+44"}
    csrf = await sign_in(service)
    page = await service.http.post("/admin/fraud/safelist", data={"csrf": csrf, "entry": "+353"})
    assert page.status_code == 400 and "IE" in page.text
    assert await service.app.state.policy.safe_list.entries() == frozenset({"+44"})


# -- otp audit: every kind of event, 120 columns, nothing unprintable ---------------------------------------

SENDER = "+14155550177"
STOP = "+14155559901"  # the stand-in refuses its sends with 21610: opted out


@dataclass
class Everything:
    http: httpx.AsyncClient
    store: Store
    stub: TwilioStub
    clock: Clock
    worker: Worker
    key: str
    hostile_admin: str

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def start(self, to: str, **body: str) -> httpx.Response:
        return await self.http.post("/v1/verifications", json={"to": to, **body}, headers=self.auth())

    async def check(self, vid: str, code: str = "000000") -> httpx.Response:
        return await self.http.post("/v1/verifications/check", json={"id": vid, "code": code}, headers=self.auth())

    async def drain(self) -> None:
        """Worker rounds until the outbox is empty, the clock a second on each time (one sender at
        1 MPS: each send waits its turn)."""
        for _ in range(60):
            await self.worker.run_once()
            if await self.store.outbox_depth() == 0:
                return
            self.clock.advance(1)
        raise AssertionError("the outbox never drained")

    def code_for(self, to: str) -> str:
        body = [m.body for m in self.stub.messages if m.to == to][-1]
        return "".join(c for c in body if c.isdigit())[:6]


@contextlib.asynccontextmanager
async def everything(redis_url: str, clock: Clock, capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Everything]:
    """The app sending through the stand-in (one 1-MPS sender, a wait bound of 1 s, a daily budget
    of twenty sends) with an admin key whose name is hostile, made by `otp keys create`."""
    with TwilioStub(ACCOUNT_SID, AUTH_TOKEN, clock=clock.now) as stub:
        stub.script(STOP, "reject", code=21610)
        settings = make_settings(
            redis_url,
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_from=f"{SENDER}:long_code:1",
            twilio_api_url=stub.url,
            twilio_timeout=2.0,
            sender_max_wait=1.0,
            sms_prices="US=0.01,*=0.05",
            budget_daily=Decimal("0.20"),
            policy=policy(**NO_PUMPING),
        )
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            state = app.state
            worker = Worker(
                state.store, state.verifier.keyring, build_sender(settings), worker_options(settings), clock=clock
            )
            client = connect(redis_url)
            _, key = await apikeys.create(Store(client, partitions=16), "audit-test")
            await client.aclose()
            made = await otp_async(capsys, "keys", "create", HOSTILE, "--admin", "--json")
            assert made.code == 0, made.err
            transport = httpx.ASGITransport(app=app)
            async with (
                contextlib.aclosing(worker),
                httpx.AsyncClient(transport=transport, base_url="http://otp.test") as http,
            ):
                yield Everything(http, state.store, stub, clock, worker, key, made.json()["key"])


async def every_kind_of_event(env: Everything, capsys: pytest.CaptureFixture[str]) -> None:
    """Writes each kind of audit event the service has, through the API, the worker and the CLI."""
    to = "+15017122661"
    first = (await env.start(to, ip="203.0.113.7")).json()["id"]  # started
    assert (await env.start(to)).status_code == 201  # resent (a verification's first resend is free)
    assert (await env.start(to)).status_code == 429  # refused: resend_too_soon
    for n in range(2, 5):  # queued behind each other at 1 MPS: waits past the 1 s bound
        assert (await env.start(f"+1501712266{n}")).status_code == 201
    assert (await env.start(STOP)).status_code == 201
    await env.drain()  # delivery (sent, failed 21610), opted_out, sender_queued
    assert (await env.check(first)).json()["approved"] is False  # check_failed
    assert (await env.check(first, env.code_for(to))).json()["approved"] is True  # approved
    exhaust = (await env.start("+15017122671")).json()["id"]
    for _ in range(5):
        await env.check(exhaust)  # … max_attempts
    cancel = (await env.start("+15017122672")).json()["id"]
    assert (await env.http.post(f"/v1/verifications/{cancel}/cancel", headers=env.auth())).status_code == 200
    expire = (await env.start("+15017122673")).json()["id"]
    await env.drain()
    env.clock.advance(601)
    await env.check(expire)  # expired
    for n in range(30):  # budget: 80 % and 100 % of the day's 0.20, then refused
        if (await env.start(f"+1415555{n:04d}")).status_code != 201:
            break
    await env.drain()
    # Admin actions: the API with the hostile key, and the CLI.
    added = await env.http.post("/v1/safelist", json={"entry": "+1501712"}, headers=env.auth(env.hostile_admin))
    assert added.status_code == 201, added.text
    cleared = await otp_async(capsys, "optouts", "clear", STOP)
    assert cleared.code == 0, cleared.err


def kinds(run: Run) -> Counter[str]:
    """The events of a table, by kind (header and summary line left out)."""
    return Counter(line.split()[1] for line in run.lines[1:-1])


async def test_the_audit_table_fits_120_columns_with_every_kind_of_event_and_wide_shows_all(
    otp_env: str, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with everything(otp_env, clock, capsys) as env:
        await every_kind_of_event(env, capsys)
        table = await otp_async(capsys, "audit", *SINCE)
        wide = await otp_async(capsys, "audit", *SINCE, "--wide")
        lines = await otp_async(capsys, "audit", *SINCE, "--json")
    assert table.code == wide.code == lines.code == 0, table.err + wide.err + lines.err
    assert set(kinds(table)) == set(audit.EVENTS), kinds(table)
    assert max(terminal_text.width(line) for line in table.lines) <= audit.TABLE_WIDTH
    assert table.lines[0].split() == ["time", "event", "to", "country", "key", "detail"]
    assert table.lines[-1] == "58 events, 2 refused: budget_exhausted ×1, resend_too_soon ×1"
    rows: dict[str, list[str]] = {}
    for line in table.lines[1:-1]:
        rows.setdefault(line.split()[1], []).append(line)
    # What each kind says in the narrow table: a refusal's reason and rule, a delivery's status and
    # error, an admin action with its entry and who took it.
    assert any("resend_too_soon (resend_cooldown)" in row for row in rows["refused"])
    assert any("budget_exhausted (budget)" in row for row in rows["refused"])
    assert any(row.endswith("  delivered") for row in rows["delivery"])
    assert any("failed 21610 Attempt to send" in row for row in rows["delivery"])
    assert any("safelist_add +1501712 by" in row for row in rows["admin"])
    assert any("opt_out_clear +1*********01 by" in row for row in rows["admin"])
    assert any("global at 100 %: spent 0.2 of 0.2" in row for row in rows["budget"])

    assert wide.lines[0].split() == [name for name, _ in audit.WIDE_COLUMNS]
    assert max(terminal_text.width(line) for line in wide.lines) > audit.TABLE_WIDTH
    assert "failed 21610 Attempt to send to unsubscribed recipient" in wide.out  # uncut
    assert "retry after 10 s" in wide.out and "203.0.113.7" in wide.out
    events = [json.loads(line) for line in lines.lines]
    assert kinds(wide) == kinds(table) == Counter(e["event"] for e in events)
    # The hostile key's name: in no printed table, and as stored in the JSON.
    for run in (table, wide):
        assert unprintable(run.out) == [] and "pwned" not in run.out
    assert HOSTILE in {e.get("key_name") for e in events}


async def test_no_control_character_of_any_stored_value_reaches_the_printed_tables(
    otp_env: str, service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    made = await otp_async(capsys, "keys", "create", HOSTILE, "--admin", "--json")
    assert made.code == 0 and unprintable(made.out) == []  # JSON escapes it
    token = made.json()["key"]
    assert made.json()["name"] == HOSTILE
    answer = await service.http.post("/v1/safelist", json={"entry": "+1501712"}, headers=service.auth(token))
    assert answer.status_code == 201
    # Belt and braces: every column of one record hostile, as a writer that checked nothing would leave it.
    await service.app.state.store.audit_event(
        0, int(service.clock() * 1000), {name: HOSTILE for name, _ in audit.WIDE_COLUMNS if name != "time"}
    )
    printed = [
        await otp_async(capsys, "audit", *SINCE),
        await otp_async(capsys, "audit", *SINCE, "--wide"),
        await otp_async(capsys, "keys", "list"),
        await otp_async(capsys, "keys", "create", HOSTILE),
    ]
    for run in printed:
        assert run.code == 0, run.err
        assert unprintable(run.out) == [], run.out
        assert "\x1b" not in run.out and "pwned" not in run.out and "red" in run.out
    table = printed[0]
    assert max(terminal_text.width(line) for line in table.lines) <= audit.TABLE_WIDTH
    events = [json.loads(line) for line in (await otp_async(capsys, "audit", *SINCE, "--json")).lines]
    # JSON keeps the stored value, escaped (the CLI's own admin events name the command line).
    assert HOSTILE in [e["key_name"] for e in events if e["event"] == "admin"]


def test_audit_refuses_json_together_with_csv(otp_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert otp(capsys, "safelist", "add", "+1501712").code == 0
    both = otp(capsys, "audit", *SINCE, "--json", "--format", "csv")
    assert both.code == 2 and "--json" in both.err


def test_terminal_text_cuts_wide_characters_by_the_columns_they_take() -> None:
    assert terminal_text.width("検証コード") == 10
    assert terminal_text.fit("検証コード", 7) == "検証コ…"
    assert terminal_text.width(terminal_text.fit("検証コード", 6)) <= 6
    assert terminal_text.fit("e\u0301" * 5, 5) == "e\u0301" * 5  # combining accents take no column
    assert terminal_text.clean("a\x1b[1;31mb\x1b[0m\x07c") == "a\ufffdb\ufffdc"


# -- otp twilio-stub ---------------------------------------------------------------------------------------


PASTED = re.compile(r"\s*export OTP_[A-Z_]+=\S+")


def pasted_into_a_shell(lines: list[str]) -> dict[str, str]:
    """What a program started after ``lines`` were pasted into ``sh`` sees of them: the OTP_ variables
    of its environment (a bare NAME=value would be a shell variable, not among them)."""
    script = "\n".join([*lines, f"exec {sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))'"])
    shown = subprocess.run(["sh", "-c", script], env={"PATH": os.defpath}, capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    return {name: value for name, value in json.loads(shown.stdout).items() if name.startswith("OTP_")}


def test_twilio_stub_help_documents_every_option_and_the_settings_to_paste(capsys: pytest.CaptureFixture[str]) -> None:
    shown = otp(capsys, "twilio-stub", "--help")
    assert shown.code == 0
    flat = " ".join(shown.out.split())
    for action in build_parser()._actions:
        for option in action.option_strings:
            assert option in shown.out, option
        assert action.help and action.help != argparse.SUPPRESS
    for outcome in OUTCOMES:
        assert f"  {outcome} " in shown.out, outcome  # each --script outcome explained
    pasted = [line.strip() for line in shown.out.splitlines() if PASTED.fullmatch(line)]
    assert pasted[0] == "export OTP_TWILIO_API_URL=http://127.0.0.1:8099"
    assert "OTP_TWILIO_API_URL" in flat
    # What it says to paste reaches the otp started next from that shell: a Twilio setup that passes
    # its checks (so otp sends through the stand-in rather than stay on the console sender).
    environment = pasted_into_a_shell(pasted)
    assert environment["OTP_TWILIO_ACCOUNT_SID"] == "AC00000000000000000000000000000000"
    assert environment["OTP_TWILIO_AUTH_TOKEN"] == "stub-auth-token"
    settings = Settings.from_env(environment)
    assert settings.twilio_configured and settings.twilio_api_url == "http://127.0.0.1:8099"
    assert settings.twilio_from and settings.public_url
    assert set(environment) >= {
        "OTP_TWILIO_API_URL",
        "OTP_TWILIO_ACCOUNT_SID",
        "OTP_TWILIO_AUTH_TOKEN",
        "OTP_TWILIO_FROM",
    }


def test_twilio_stub_prints_the_settings_for_its_actual_port_at_startup() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "otp", "twilio-stub", "--port", "0", "--auth-token", "demo-token"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        url = first.split(" listening on ")[1].split()[0]
        lines: list[str] = []
        while len(lines) < 10 and not (lines and lines[-1].startswith("export OTP_PUBLIC_URL=")):
            lines.append(process.stdout.readline().strip())
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
    assert f"export OTP_TWILIO_API_URL={url}" in lines
    settings = Settings.from_env(pasted_into_a_shell([line for line in lines if PASTED.fullmatch(line)]))
    assert settings.twilio_api_url == url and settings.twilio_auth_token == "demo-token"
