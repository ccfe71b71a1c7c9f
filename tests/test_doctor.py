"""`otp doctor` against a real Redis and the Twilio stand-in: a ready deployment passes and exits 0;
each broken part (a sender the account lacks, a suspended account, a refused auth token, an
evicting Redis, the console sender in production, a bad variable) fails with its fix and exits 1;
nothing printed holds a secret, a token or a full phone number."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from delivery_fixtures import ACCOUNT_SID, AUTH_TOKEN

from otp import cli
from otp.core.deployment import Finding, Level
from otp.core.setup_checks import clock_findings, public_url_finding, secret_findings
from otp.core.urlguard import Resolve
from otp.devtools.twilio_stub import TwilioStub
from otp.edge.embedded_redis import free_port
from otp.storage.server_config import ClockOffset

SECRET = secrets.token_urlsafe(48)  # as `otp keys secret` makes one
METRICS_TOKEN = secrets.token_urlsafe(32)
SENDER = "+15005550006"  # the stand-in's account owns it: the From of the delivery tests
SERVICE = "MG" + "3" * 32
KEPT = {"OTP_ALLOW_SKIPS"}  # conftest's switch, not a setting


@pytest.fixture
def durable_redis(redis_url: str) -> Iterator[str]:
    """The test Redis with AOF on, as production runs it."""
    client = redis.Redis.from_url(redis_url)
    client.config_set("appendonly", "yes")
    try:
        yield redis_url
    finally:
        client.config_set("appendonly", "no")
        client.close()


@pytest.fixture
def stub() -> Iterator[TwilioStub]:
    with TwilioStub(ACCOUNT_SID, AUTH_TOKEN) as running:
        running.account.add_messaging_service(SERVICE, "Login codes")
        yield running


def ready(redis_url: str, stub: TwilioStub, **changes: str) -> dict[str, str]:
    env = {
        "OTP_REDIS_URL": redis_url,
        "OTP_SECRET_KEY": SECRET,
        "OTP_METRICS_TOKEN": METRICS_TOKEN,
        "OTP_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "OTP_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "OTP_TWILIO_FROM": f"{SENDER}:long_code:10,{SERVICE}:messaging_service:50",
        "OTP_TWILIO_API_URL": stub.url,
        # .invalid never resolves (RFC 2606): the one check left to a warning, whatever the network.
        "OTP_PUBLIC_URL": "https://otp.example.invalid",
    }
    return {**env, **changes}


def doctor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str], *args: str
) -> tuple[int, str]:
    for name in [n for n in os.environ if n.startswith("OTP_") and n not in KEPT]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status = cli.main(["doctor", *args])
    out = capsys.readouterr().out
    assert_private(out, env)
    return status, out


def findings(out: str) -> dict[str, dict[str, Any]]:
    parsed = json.loads(out)
    assert isinstance(parsed, list)
    return {f["check"]: f for f in parsed}


def assert_private(out: str, env: dict[str, str]) -> None:
    """No secret, token or full number in what the doctor printed."""
    for name in ("OTP_SECRET_KEY", "OTP_METRICS_TOKEN", "OTP_TWILIO_AUTH_TOKEN"):
        if env.get(name):
            assert env[name] not in out, name
    for entry in env.get("OTP_TWILIO_FROM", "").split(","):
        number = entry.split(":")[0]
        if number.startswith("+"):
            assert number not in out and number[1:] not in out


def failed(found: dict[str, dict[str, Any]]) -> list[str]:
    return [check for check, f in found.items() if f["level"] == "fail"]


def test_a_ready_deployment_passes_every_check_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], durable_redis: str, stub: TwilioStub
) -> None:
    status, out = doctor(monkeypatch, capsys, ready(durable_redis, stub), "--json")
    found = findings(out)
    assert status == 0
    expected = {
        "settings",
        "sms sender",
        "secret keys",
        "redis connection",
        "redis version (primary)",
        "redis eviction policy (primary)",
        "redis persistence (primary)",
        "clock skew (primary)",
        "public url",
        "metrics token",
        "twilio api url",
        "twilio account",
        "sender +1*******0006",
        "sender MG3333…3333",
    }
    assert set(found) == expected
    warned = {check for check, f in found.items() if f["level"] == "warn"}
    assert warned == {"public url", "twilio api url"}  # a name that never resolves; the stand-in's URL
    assert all(f["fix"] == "" for f in found.values() if f["level"] == "pass")
    assert "production-looking" in found["settings"]["detail"]
    assert "long_code, 10 MPS" in found["sender +1*******0006"]["detail"]
    assert "'Login codes'" in found["sender MG3333…3333"]["detail"]


def test_the_table_fits_120_columns_and_ends_with_a_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], durable_redis: str, stub: TwilioStub
) -> None:
    status, out = doctor(monkeypatch, capsys, ready(durable_redis, stub, OTP_TWILIO_FROM="+14155550100"))
    lines = out.splitlines()
    assert status == 1
    assert lines[0].split() == ["check", "result", "detail", "fix"]
    assert max(len(line) for line in lines) <= 120
    assert any(line.startswith("sender +1*******0100") and "  fail  " in line for line in lines)
    # A US local number without a Messaging Service: the A2P 10DLC warning too.
    assert any(line.startswith("sender pool (US 10DLC)") and "  warn  " in line for line in lines)
    assert lines[-1] == "14 checks: 10 pass, 3 warn, 1 fail — fix the failures above"


def test_a_from_number_the_account_does_not_own_fails_with_its_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], durable_redis: str, stub: TwilioStub
) -> None:
    pool = f"{SENDER}:long_code:10,+18005550199:toll_free"
    status, out = doctor(monkeypatch, capsys, ready(durable_redis, stub, OTP_TWILIO_FROM=pool), "--json")
    found = findings(out)
    assert status == 1
    assert failed(found) == ["sender +1*******0199"]
    bad = found["sender +1*******0199"]
    assert "toll_free, 3 MPS (Twilio's default for the type)" in bad["detail"]
    assert "not one of the account's phone numbers" in bad["detail"]
    assert "buy or port the number into this account or remove it from OTP_TWILIO_FROM" in bad["fix"]
    assert found["sender +1*******0006"]["level"] == "pass"


def test_a_number_without_sms_and_a_missing_messaging_service_fail(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], durable_redis: str, stub: TwilioStub
) -> None:
    stub.account.add_number(SENDER, ["voice"])
    missing = "MG" + "4" * 32
    env = ready(durable_redis, stub, OTP_TWILIO_MESSAGING_SERVICES=f"{SERVICE},{missing}")
    status, out = doctor(monkeypatch, capsys, env, "--json")
    found = findings(out)
    assert status == 1
    assert failed(found) == ["sender +1*******0006", "messaging service MG4444…4444"]
    assert "no SMS capability" in found["sender +1*******0006"]["detail"]
    assert "OTP_TWILIO_MESSAGING_SERVICES" in found["messaging service MG4444…4444"]["fix"]
    assert found["messaging service MG3333…3333"]["level"] == "pass"


def test_a_suspended_account_fails_and_its_senders_are_not_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], durable_redis: str, stub: TwilioStub
) -> None:
    stub.account.set_status("suspended")
    status, out = doctor(monkeypatch, capsys, ready(durable_redis, stub), "--json")
    found = findings(out)
    assert status == 1
    assert failed(found) == ["twilio account"]
    assert "is suspended" in found["twilio account"]["detail"]
    assert "reactivate it in the Twilio console" in found["twilio account"]["fix"]
    assert not [check for check in found if check.startswith("sender")]


def test_a_refused_auth_token_fails_naming_otp_twilio_auth_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], durable_redis: str, stub: TwilioStub
) -> None:
    wrong = "not-the-auth-token-" + secrets.token_hex(8)
    status, out = doctor(monkeypatch, capsys, ready(durable_redis, stub, OTP_TWILIO_AUTH_TOKEN=wrong), "--json")
    found = findings(out)
    assert status == 1
    assert failed(found) == ["twilio account"]
    assert "OTP_TWILIO_AUTH_TOKEN" in found["twilio account"]["detail"]
    assert "OTP_TWILIO_AUTH_TOKEN" in found["twilio account"]["fix"]
    assert AUTH_TOKEN not in out  # the stand-in's Account resource carries the real one


def test_an_evicting_redis_fails_the_eviction_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], durable_redis: str, stub: TwilioStub
) -> None:
    client = redis.Redis.from_url(durable_redis)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        status, out = doctor(monkeypatch, capsys, ready(durable_redis, stub), "--json")
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        client.close()
    found = findings(out)
    assert status == 1
    assert failed(found) == ["redis eviction policy (primary)"]
    assert "allkeys-lru" in found["redis eviction policy (primary)"]["detail"]
    assert "maxmemory-policy noeviction" in found["redis eviction policy (primary)"]["fix"]


def test_an_unreachable_redis_fails_and_its_password_is_not_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stub: TwilioStub
) -> None:
    password = secrets.token_hex(12)
    url = f"redis://:{password}@127.0.0.1:{free_port()}/0"
    status, out = doctor(monkeypatch, capsys, ready(url, stub), "--json")
    found = findings(out)
    assert status == 1
    assert failed(found) == ["redis connection"]
    assert "127.0.0.1" in found["redis connection"]["detail"]
    assert "OTP_REDIS_URL" in found["redis connection"]["fix"]
    assert password not in out


def test_the_console_sender_in_a_production_looking_setup_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], durable_redis: str
) -> None:
    env = {"OTP_REDIS_URL": durable_redis, "OTP_SECRET_KEY": SECRET, "OTP_PUBLIC_URL": "http://127.0.0.1:8000"}
    status, out = doctor(monkeypatch, capsys, env, "--json")
    found = findings(out)
    assert status == 1
    assert failed(found) == ["sms sender", "public url"]
    assert "console sender" in found["sms sender"]["detail"]
    assert "OTP_TWILIO_ACCOUNT_SID" in found["sms sender"]["fix"]
    assert "plain http" in found["public url"]["detail"] and "loopback" in found["public url"]["detail"]
    assert found["metrics token"]["level"] == "warn"


def test_a_development_setup_warns_instead_of_failing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = doctor(monkeypatch, capsys, {"OTP_PUBLIC_URL": "http://127.0.0.1:8000"}, "--json")
    found = findings(out)
    assert status == 0
    assert {found[c]["level"] for c in ("sms sender", "secret keys", "redis", "public url")} == {"warn"}


def test_twilio_without_a_public_url_fails_as_startup_would(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], redis_url: str, stub: TwilioStub
) -> None:
    """README's table: unset with Twilio is a failure (`otp serve` refuses it), not the warning an
    unset OTP_PUBLIC_URL is without Twilio."""
    env = {k: v for k, v in ready(redis_url, stub).items() if k != "OTP_PUBLIC_URL"}
    status, out = doctor(monkeypatch, capsys, env, "--json")
    assert status == 1
    assert json.loads(out) == [
        {
            "check": "settings",
            "level": "fail",
            "detail": "OTP_PUBLIC_URL must be set with Twilio: it is where delivery reports come back",
            "fix": "fix OTP_PUBLIC_URL (README, Configuration)",
        }
    ]


def test_a_bad_setting_fails_naming_the_variable_without_the_numbers_in_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], durable_redis: str, stub: TwilioStub
) -> None:
    env = ready(durable_redis, stub, OTP_CODE_LENGTH="99", OTP_TWILIO_FROM="+14155550123:short_code")
    status, out = doctor(monkeypatch, capsys, env, "--json")
    parsed = json.loads(out)
    assert status == 1
    assert {f["level"] for f in parsed} == {"fail"}
    details = " | ".join(f["detail"] for f in parsed)
    assert "OTP_CODE_LENGTH=99 is out of range" in details and "OTP_TWILIO_FROM" in details
    assert any("fix OTP_CODE_LENGTH" in f["fix"] for f in parsed)
    assert "+14155550123" not in out


# -- the rules on their own -------------------------------------------------------------------


def test_clock_skew_warns_past_a_second_and_fails_past_thirty() -> None:
    readings = [ClockOffset("primary", offset, 0.002) for offset in (0.2, -4.0, 45.0)]
    levels = [f.level for f in clock_findings(readings)]
    assert levels == [Level.PASS, Level.WARN, Level.FAIL]
    failing = clock_findings([ClockOffset("primary", 45.0, 0.002)])[0]
    assert "45.000 s ahead" in failing.detail and "NTP" in failing.fix and "OTP_CODE_TTL" in failing.fix


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("a" * 40, "one character repeated"),
        ("Tr0ub4dor&3" * 4, "block repeated"),
        ("abcdefghijklmnopqrstuvwxyz0123456789", "consecutive characters"),
        ("our-production-otp-secret-38bef31c", "placeholder word"),
    ],
)
def test_an_obviously_guessable_secret_key_fails_and_is_never_shown(key: str, why: str) -> None:
    found = secret_findings((SECRET, key), required=True, elsewhere={})
    assert [f.level for f in found] == [Level.FAIL]
    assert why in found[0].detail and "key 2" in found[0].detail
    assert key not in found[0].detail and "otp keys secret" in found[0].fix


def test_random_keys_pass_and_a_key_reused_as_the_metrics_token_fails() -> None:
    keys = (secrets.token_urlsafe(48), secrets.token_urlsafe(48), secrets.token_hex(16))
    assert [f.level for f in secret_findings(keys, required=True, elsewhere={})] == [Level.PASS]
    reused = secret_findings((SECRET,), required=True, elsewhere={"OTP_METRICS_TOKEN": SECRET})
    assert [f.level for f in reused] == [Level.FAIL]
    assert "key 1" in reused[0].detail and "OTP_METRICS_TOKEN" in reused[0].detail


def resolves_to(*addresses: str) -> Resolve:
    """A resolver with fixed answers (the public URL's host is never looked up for real here)."""

    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    ("url", "production", "addresses", "level", "says"),
    [
        ("", True, (), Level.WARN, "no delivery callbacks"),
        ("https://otp.example.com", True, ("93.184.215.14",), Level.PASS, "https, public"),
        ("http://otp.example.com", False, ("93.184.215.14",), Level.WARN, "plain http"),
        ("http://otp.example.com", True, ("93.184.215.14",), Level.FAIL, "plain http"),
        ("https://10.0.0.7", True, (), Level.FAIL, "private address"),
        ("https://localhost:8443", False, (), Level.WARN, "loopback"),
        ("https://otp.internal.example", True, ("10.1.2.3",), Level.WARN, "private addresses only"),
        ("https://otp.example.com:99999", True, (), Level.FAIL, "not an http(s) URL"),
        ("otp.example.com", False, (), Level.FAIL, "not an http(s) URL"),
    ],
)
async def test_the_public_url_must_be_https_and_reachable_by_twilio(
    url: str, production: bool, addresses: tuple[str, ...], level: Level, says: str
) -> None:
    found: Finding = await public_url_finding(url, production=production, resolve=resolves_to(*addresses))
    assert found.level is level
    assert says in found.detail
