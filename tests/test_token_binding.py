"""Approval tokens are bound to the API key that earned them, capped in age by OTP_TOKEN_MAX_AGE,
and single use on request (``"consume": true``), on real Redis with injected time.

Each test here reproduced a finding of issue 11 before the fix: the same token accepted three
times, by another tenant's key, and with ``max_age=86400``.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import jwt
import pytest
from conftest import SECRET, Service

from otp.core import apikeys, tokens
from otp.errors import InvalidInput

TO = "+15017122661"
CAP = 300  # OTP_TOKEN_MAX_AGE of the test settings (its default)


async def approved_token(service: Service, key: str | None = None) -> tuple[str, str]:
    response = await service.http.post("/v1/verifications", json={"to": TO}, headers=service.auth(key))
    vid = response.json()["id"]
    body = (await service.check(await service.last_code(), key=key, id=vid)).json()
    assert body["approved"] is True
    return vid, body["token"]


async def verify(service: Service, token: str, key: str | None = None, **body: object) -> httpx.Response:
    return await service.http.post("/v1/tokens/verify", json={"token": token, **body}, headers=service.auth(key))


# -- single use ---------------------------------------------------------------------------------


async def test_a_consumed_token_is_refused_the_second_time_and_on_any_later_verify(service: Service) -> None:
    vid, token = await approved_token(service)
    first = await verify(service, token, consume=True)
    assert first.status_code == 200 and first.json()["valid"] is True and first.json()["verification_id"] == vid
    assert (await verify(service, token, consume=True)).json() == {"valid": False, "reason": "token_used"}
    assert (await verify(service, token)).json() == {"valid": False, "reason": "token_used"}
    # Admin keys see that it was used too: the mark is the token's, not the caller's.
    assert (await verify(service, token, service.admin_key)).json() == {"valid": False, "reason": "token_used"}


async def test_verify_without_consume_leaves_the_token_usable(service: Service) -> None:
    _, token = await approved_token(service)
    for _ in range(3):
        assert (await verify(service, token)).json()["valid"] is True
    assert (await verify(service, token, consume=True)).json()["valid"] is True
    assert (await verify(service, token)).json()["reason"] == "token_used"


async def test_concurrent_consumes_let_exactly_one_through(service: Service) -> None:
    _, token = await approved_token(service)
    answers = await asyncio.gather(*(verify(service, token, consume=True) for _ in range(12)))
    assert sorted(a.json()["valid"] for a in answers) == [False] * 11 + [True]
    assert {a.json().get("reason") for a in answers if not a.json()["valid"]} == {"token_used"}


async def test_the_used_mark_lives_exactly_as_long_as_the_token_could_still_verify(service: Service) -> None:
    _, token = await approved_token(service)
    service.clock.advance(100)
    assert (await verify(service, token, consume=True, max_age=120)).json()["valid"] is True
    marks = [k async for k in service.redis.scan_iter(match="otp:*tok:*")]
    assert len(marks) == 1
    ttl_ms = await service.redis.pttl(marks[0])
    # The cap (not this caller's smaller max_age) bounds how long another verify could accept it.
    assert (CAP - 100 - 1) * 1000 < ttl_ms <= (CAP - 100) * 1000
    assert b"." not in marks[0].split(b"tok:")[1]  # named by the verification, not by the token text


async def test_consume_of_a_bad_token_marks_nothing(service: Service) -> None:
    _, token = await approved_token(service)
    assert (await verify(service, token + "x", consume=True)).json() == {"valid": False, "reason": "token_invalid"}
    other = await apikeys.create(service.app.state.store, "other-tenant")
    assert (await verify(service, token, other[1], consume=True)).json()["valid"] is False
    service.clock.advance(CAP + 1)
    assert (await verify(service, token, consume=True)).json()["reason"] == "token_expired"
    assert [k async for k in service.redis.scan_iter(match="otp:*tok:*")] == []


async def test_consume_must_be_a_boolean(service: Service) -> None:
    _, token = await approved_token(service)
    response = await verify(service, token, consume="yes")
    assert response.status_code == 400 and response.json()["error"]["field"] == "consume"


# -- bound to the key -----------------------------------------------------------------------------


async def test_another_tenants_key_cannot_verify_the_token_but_an_admin_key_can(service: Service) -> None:
    _, other = await apikeys.create(service.app.state.store, "other-tenant")
    vid, token = await approved_token(service)
    assert (await verify(service, token, other)).json() == {"valid": False, "reason": "token_invalid"}
    assert (await verify(service, token, other, consume=True)).json() == {"valid": False, "reason": "token_invalid"}
    admin = (await verify(service, token, service.admin_key)).json()
    assert admin["valid"] is True and admin["verification_id"] == vid
    # The other tenant's failed consume did not burn the owner's token.
    assert (await verify(service, token, consume=True)).json()["valid"] is True


async def test_another_tenant_learns_nothing_from_an_expired_token(service: Service) -> None:
    _, other = await apikeys.create(service.app.state.store, "other-tenant")
    _, token = await approved_token(service)
    service.clock.advance(CAP + 1)
    assert (await verify(service, token)).json()["reason"] == "token_expired"
    # Not "token_expired": that would tell the other tenant the token is genuine.
    assert (await verify(service, token, other)).json() == {"valid": False, "reason": "token_invalid"}


async def test_the_token_names_its_key_by_the_public_id_and_carries_no_secret_or_number(service: Service) -> None:
    _, token = await approved_token(service)
    key = apikeys.split(service.key)
    assert key is not None
    key_id, key_secret = key
    # What anyone holding the token can read: its claims, unverified. The audience is the key's
    # public id (as OIDC's aud is a client id), so an app checks "aud" offline; never the secret.
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == key_id
    assert key_secret not in token and key_secret not in json.dumps(claims)
    assert TO not in json.dumps(claims) and TO.lstrip("+") not in json.dumps(claims)
    assert set(claims) == {"iss", "aud", "sub", "vid", "iat", "exp", "jti"}


async def test_a_token_an_admin_key_earned_is_the_admin_keys(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    token = (await service.check(await service.last_code(), key=service.admin_key, id=vid)).json()["token"]
    assert (await verify(service, token)).json() == {"valid": False, "reason": "token_invalid"}
    assert (await verify(service, token, service.admin_key)).json()["valid"] is True


# -- age capped by OTP_TOKEN_MAX_AGE --------------------------------------------------------------


@pytest.mark.parametrize("max_age", [CAP + 1, 86400])
async def test_max_age_above_the_configured_cap_is_a_400_naming_max_age(service: Service, max_age: int) -> None:
    _, token = await approved_token(service)
    response = await verify(service, token, max_age=max_age)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "max_age" and str(CAP) in error["message"]


async def test_the_token_expires_at_the_cap_by_the_injected_clock(service: Service) -> None:
    _, token = await approved_token(service)
    service.clock.advance(CAP)
    assert (await verify(service, token)).json()["valid"] is True
    assert (await verify(service, token, max_age=CAP)).json()["valid"] is True
    assert (await verify(service, token, max_age=CAP - 1)).json()["reason"] == "token_expired"
    service.clock.advance(1)
    assert (await verify(service, token)).json() == {"valid": False, "reason": "token_expired"}


# -- the Python function for embedders ------------------------------------------------------------


def approval(at: int = 1_800_000_000) -> tokens.Approval:
    return tokens.Approval("VE" + "b" * 32, "abcd", at)


def test_verify_with_a_key_id_accepts_only_the_issuing_key() -> None:
    token = tokens.issue(approval(), [SECRET], key_id="key-a")
    now = 1_800_000_010
    assert tokens.verify(token, max_age=60, secret_keys=[SECRET], key_id="key-a", now=now) == approval()
    with pytest.raises(InvalidInput) as error:
        tokens.verify(token, max_age=60, secret_keys=[SECRET], key_id="key-b", now=now)
    assert error.value.code == "token_invalid"
    # Without key_id (an embedder holding OTP_SECRET_KEY, like an admin) any key's token verifies.
    assert tokens.verify(token, max_age=60, secret_keys=[SECRET], now=now) == approval()


def test_the_binding_survives_secret_rotation() -> None:
    old, new = "old-" + SECRET, "new-" + SECRET
    token = tokens.issue(approval(), [old], key_id="key-a")
    assert tokens.verify(token, max_age=60, secret_keys=[new, old], key_id="key-a", now=1_800_000_001)


def test_an_unbound_token_is_refused_when_a_key_id_is_asked_for() -> None:
    token = tokens.issue(approval(), [SECRET])
    with pytest.raises(InvalidInput) as error:
        tokens.verify(token, max_age=60, secret_keys=[SECRET], key_id="key-a", now=1_800_000_001)
    assert error.value.code == "token_invalid"
