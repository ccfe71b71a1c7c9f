"""Approval tokens: signed, timed, and verifiable after the signing key has been rotated out."""

from __future__ import annotations

import pytest

from otp.clock import SettableClock
from otp.core import tokens
from otp.errors import InvalidInput
from otp.settings import Settings

OLD = "old-secret-0123456789abcdefghijklmnopqrstuvwxyz"
NEW = "new-secret-0123456789abcdefghijklmnopqrstuvwxyz"

# Injected time: every token here is approved, signed and checked at this clock's "now", so no
# test depends on which second the system clock is in.
CLOCK = SettableClock()


def approval() -> tokens.Approval:
    return tokens.Approval("VE" + "a" * 32, "abcd", int(CLOCK.now()))


def test_token_round_trips() -> None:
    token = tokens.issue(approval(), [NEW])
    assert tokens.verify(token, max_age=60, secret_keys=[NEW], now=CLOCK.now()) == approval()


def test_token_signed_with_the_old_key_verifies_after_rotation() -> None:
    token = tokens.issue(approval(), [OLD])
    verified = tokens.verify(token, max_age=60, secret_keys=[NEW, OLD], now=CLOCK.now())
    assert verified.verification_id == "VE" + "a" * 32


def test_token_from_an_unknown_key_is_refused() -> None:
    token = tokens.issue(approval(), [OLD])
    with pytest.raises(InvalidInput) as error:
        tokens.verify(token, max_age=60, secret_keys=[NEW], now=CLOCK.now())
    assert error.value.code == "token_invalid"


def test_expired_token_is_refused() -> None:
    # The token is signed at its approval's time and checked at a given "now".
    issued = approval()
    token = tokens.issue(issued, [NEW])
    assert tokens.verify(token, max_age=60, secret_keys=[NEW], now=issued.approved_at + 60) == issued
    with pytest.raises(InvalidInput) as error:
        tokens.verify(token, max_age=60, secret_keys=[NEW], now=issued.approved_at + 61)
    assert error.value.code == "token_expired"
    with pytest.raises(InvalidInput) as error:
        tokens.verify(token, max_age=0, secret_keys=[NEW], now=issued.approved_at + 1.1)
    assert error.value.code == "token_expired"


def test_verify_with_the_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # An embedder's path: the shell's settings read OTP_SECRET_KEY (newest first), tokens gets the list.
    monkeypatch.setenv("OTP_SECRET_KEY", f"{NEW},{OLD}")
    token = tokens.issue(approval(), [OLD])
    keys = Settings.from_env().secret_keys
    assert tokens.verify(token, max_age=60, secret_keys=keys, now=CLOCK.now()).number_hash == "abcd"
