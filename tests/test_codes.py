"""Codes: random digits, peppered argon2id hashes, rotation-safe, sealed for the outbox."""

from __future__ import annotations

from otp.core import codes, sealing
from otp.core.codes import Argon2Params, CodeHasher
from otp.core.keyring import Keyring
from otp.settings import Settings

OLD = "old-secret-0123456789abcdefghijklmnopqrstuvwxyz"
NEW = "new-secret-0123456789abcdefghijklmnopqrstuvwxyz"
LIGHT = Argon2Params(time_cost=1, memory_kib=1024, parallelism=1)
DEFAULTS = Settings()
SHIPPED = Argon2Params(DEFAULTS.argon2_time_cost, DEFAULTS.argon2_memory_kib, DEFAULTS.argon2_parallelism)


def test_codes_have_the_asked_length_and_only_digits() -> None:
    for length in (4, 6, 10):
        code = codes.generate(length)
        assert len(code) == length and code.isdigit()
    assert len({codes.generate(6) for _ in range(200)}) > 190


def test_shipped_argon2_parameters_make_an_argon2id_hash_that_verifies() -> None:
    hasher = CodeHasher(Keyring((NEW,)), SHIPPED)
    stored = hasher.hash_now("123456")
    assert stored.split("$")[1] == "2,19456,1"  # argon2id, t=2, m=19 MiB, p=1
    assert len(stored) <= 64  # fits Redis's compact hash encoding
    assert "123456" not in stored
    assert hasher.matches_now(stored, "123456")
    assert not hasher.matches_now(stored, "123457")


def test_hashes_in_argon2s_own_encoding_still_verify() -> None:
    from argon2 import PasswordHasher

    keyring = Keyring((NEW,))
    legacy = PasswordHasher(time_cost=1, memory_cost=1024).hash(keyring.current("code-pepper") + b"123456")
    hasher = CodeHasher(keyring, LIGHT)
    assert hasher.matches_now(f"{keyring.current_id}${legacy}", "123456")
    assert not hasher.matches_now(f"{keyring.current_id}${legacy}", "654321")


def test_the_pepper_matters_a_redis_dump_alone_is_useless() -> None:
    stored = CodeHasher(Keyring((NEW,)), LIGHT).hash_now("123456")
    assert not CodeHasher(Keyring((OLD,)), LIGHT).matches_now(stored, "123456")


def test_a_code_hashed_before_rotation_still_verifies_after() -> None:
    stored = CodeHasher(Keyring((OLD,)), LIGHT).hash_now("123456")
    assert CodeHasher(Keyring((NEW, OLD)), LIGHT).matches_now(stored, "123456")


def test_sealed_code_opens_only_with_the_secret() -> None:
    sealed = sealing.seal(Keyring((NEW,)), "123456")
    assert "123456" not in sealed
    assert sealing.unseal(Keyring((OLD, NEW)), sealed) == "123456"
    assert sealing.unseal(Keyring((OLD,)), sealed) is None
    assert sealing.unseal(Keyring((NEW,)), sealed[:-4] + "AAAA") is None


def test_a_code_hashed_with_its_context_stores_no_salt_and_verifies_only_with_that_context() -> None:
    hasher = CodeHasher(Keyring((NEW,)), LIGHT)
    stored = hasher.hash_now("123456", "key1|+15017122661")
    assert len(stored) < len(hasher.hash_now("123456")) - 20  # the 16-byte salt isn't there
    assert hasher.matches_now(stored, "123456", "key1|+15017122661")
    assert not hasher.matches_now(stored, "123457", "key1|+15017122661")
    assert not hasher.matches_now(stored, "123456", "key2|+15017122661")
    assert not hasher.matches_now(stored, "123456")
    # After a rotation its salt still comes from the secret that hashed it.
    before = CodeHasher(Keyring((OLD,)), LIGHT).hash_now("123456", "key1|+15017122661")
    assert CodeHasher(Keyring((NEW, OLD)), LIGHT).matches_now(before, "123456", "key1|+15017122661")


def test_codes_of_both_forms_match_in_one_check() -> None:
    hasher = CodeHasher(Keyring((NEW,)), LIGHT)
    context = "key1|+15017122661"
    salted = hasher.hash_now("111111")  # the previous form: the salt stored beside the hash
    derived = hasher.hash_now("222222", context)
    assert hasher.match_index([derived, salted], "111111", context) == 1
    assert hasher.match_index([derived, salted], "222222", context) == 0
