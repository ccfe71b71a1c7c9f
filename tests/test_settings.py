"""Settings come from OTP_* variables and a bad one is named at startup."""

from __future__ import annotations

import pytest

from otp.core.validators import parse_duration
from otp.errors import ConfigError
from otp.settings import Settings


def test_defaults_match_the_documented_ones() -> None:
    settings = Settings.from_env({})
    assert (settings.code_length, settings.code_ttl, settings.max_check_attempts) == (6, 600.0, 5)
    assert (settings.max_sends, settings.codes_kept, settings.retention) == (5, 3, 86400.0)
    assert (settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism) == (2, 19456, 1)


def test_durations_accept_units() -> None:
    assert parse_duration("600") == 600
    assert parse_duration("10m") == 600
    assert parse_duration("24h") == 86400
    assert parse_duration("250ms") == 0.25


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTP_CODE_LENGTH", "3"),
        ("OTP_CODE_LENGTH", "11"),
        ("OTP_CODE_LENGTH", "six"),
        ("OTP_CODE_TTL", "forever"),
        ("OTP_MAX_CHECK_ATTEMPTS", "0"),
        ("OTP_PORT", "70000"),
        ("OTP_SECRET_KEY", "short"),
        ("OTP_PARTITIONS", "12"),
        ("OTP_WORKER", "maybe"),
        ("OTP_DEFAULT_REGION", "USA"),
        ("OTP_TWILIO_MESSAGING_SERVICES", "MG123"),
    ],
)
def test_a_bad_variable_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({name: value})
    assert name in str(error.value)


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("OTP_OPT_OUT_TTL", "0", "OTP_OPT_OUT_TTL='0' is out of range (1m..3650d)"),
        ("OTP_LOOKUP_TIMEOUT", "99", "OTP_LOOKUP_TIMEOUT='99' is out of range (0.1s..30s)"),
        ("OTP_HEADER_TIMEOUT", "1h", "OTP_HEADER_TIMEOUT='1h' is out of range (0.1s..5m)"),
    ],
)
def test_a_duration_out_of_range_shows_its_bounds_in_the_units_one_writes(name: str, value: str, shown: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({name: value})
    assert shown in str(error.value)


def test_messaging_services_tenants_may_name_are_a_list() -> None:
    one, two = "MG" + "1" * 32, "MG" + "2" * 32
    assert Settings.from_env({}).twilio_messaging_services == frozenset()
    listed = Settings.from_env({"OTP_TWILIO_MESSAGING_SERVICES": f"{one}, {two},"})
    assert listed.twilio_messaging_services == {one, two}
    with pytest.raises(ConfigError, match="MG123 is not a Messaging Service SID"):
        Settings.from_env({"OTP_TWILIO_MESSAGING_SERVICES": f"{one},MG123"})


def test_secret_keys_are_a_list_newest_first() -> None:
    settings = Settings.from_env({"OTP_SECRET_KEY": "n" * 40 + "," + "o" * 40})
    assert settings.secret_keys == ("n" * 40, "o" * 40)
