"""Approval tokens are standard JWTs: EdDSA (Ed25519) signed, verified by any JWT library against
the JWKS otp serves at /.well-known/jwks.json, with no shared secret.

Tokens come from real checks (the app on real Redis, or `otp`'s app under uvicorn sending through
the Twilio stand-in); they are verified with plain PyJWT and with the Node ``jose`` package (from
npm, pinned by tests/node_jose/package-lock.json), and forged ones are refused by /v1/tokens/verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from conftest import SECRET, Service, make_settings, repo_root, running_service
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from itsdangerous import URLSafeTimedSerializer
from test_twilio_compat import new_number, serve

from otp.clock import SettableClock
from otp.core import apikeys

TO = "+15017122661"
OLD = "old-" + SECRET
NEW = "new-" + SECRET
JOSE = repo_root() / "tests" / "node_jose"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def key_id(key: str) -> str:
    found = apikeys.split(key)
    assert found is not None
    return found[0]


async def approved(service: Service, to: str = TO, key: str | None = None) -> tuple[str, str]:
    """A verification approved by a right code: its id and the token the check answered."""
    started = await service.http.post("/v1/verifications", json={"to": to}, headers=service.auth(key))
    assert started.status_code == 201, started.text
    vid = started.json()["id"]
    checked = await service.check(await service.last_code(to), key=key, id=vid)
    assert checked.json()["approved"] is True
    return vid, checked.json()["token"]


async def verified(service: Service, token: str, key: str | None = None, **body: object) -> dict[str, Any]:
    response = await service.http.post("/v1/tokens/verify", json={"token": token, **body}, headers=service.auth(key))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def served_jwks(service: Service) -> dict[str, Any]:
    response = await service.http.get("/.well-known/jwks.json")  # no Authorization header
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture
async def real_time(settings: Any, sender: Any) -> AsyncIterator[Service]:
    """The service on today's clock: plain PyJWT checks exp and iat against the system clock."""
    async with running_service(settings, SettableClock(float(int(time.time()))), sender) as svc:
        yield svc


# -- any JWT library, the served JWKS ------------------------------------------------------------


async def test_a_checked_token_verifies_with_plain_pyjwt_against_the_served_jwks(real_time: Service) -> None:
    service = real_time
    vid, token = await approved(service)
    keys = jwt.PyJWKSet.from_dict(await served_jwks(service))
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == keys.keys[0].key_id
    claims = jwt.decode(token, keys[header["kid"]], algorithms=["EdDSA"], audience=key_id(service.key), issuer="otp")
    assert set(claims) == {"iss", "aud", "sub", "vid", "iat", "exp", "jti"}
    assert claims["vid"] == vid and claims["aud"] == key_id(service.key)
    assert claims["sub"] == service.app.state.verifier.keyring.number_hash(TO)
    assert TO.lstrip("+") not in json.dumps(claims)  # the number only as its keyed hash
    assert claims["iat"] == int(service.clock.now()) and claims["exp"] == claims["iat"] + 300
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    # What /v1/tokens/verify answers names the same approval.
    answer = await verified(service, token)
    assert answer["valid"] is True and answer["verification_id"] == vid and answer["number_hash"] == claims["sub"]


async def test_the_jwks_is_public_and_holds_public_ed25519_keys_named_by_their_thumbprint(service: Service) -> None:
    (jwk,) = (await served_jwks(service))["keys"]
    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}  # no "d": nothing private
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    # RFC 7638: SHA-256 of the required members, lexicographic, no whitespace.
    members = f'{{"crv":"Ed25519","kty":"OKP","x":"{jwk["x"]}"}}'
    assert jwk["kid"] == b64(hashlib.sha256(members.encode()).digest())
    assert SECRET not in json.dumps(jwk)


async def test_each_token_has_its_own_jti_and_the_approval_replay_gets_the_same_token(service: Service) -> None:
    vid, token = await approved(service)
    # The client lost the answer: the same right code again by id gets the same token back.
    retried = await service.check(service.sender.codes_for(TO)[-1], id=vid)
    assert retried.json()["token"] == token
    _, other = await approved(service, "+15017122662")
    jtis = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in (token, other)}
    assert len(jtis) == 2


async def test_the_issuer_is_otp_public_url_when_it_is_set(redis_url: str, clock: SettableClock, sender: Any) -> None:
    settings = make_settings(redis_url, public_url="https://otp.example.com")
    async with running_service(settings, clock, sender) as service:
        _, token = await approved(service)
        assert jwt.decode(token, options={"verify_signature": False})["iss"] == "https://otp.example.com"
        assert (await verified(service, token))["valid"] is True


# -- rotation --------------------------------------------------------------------------------------


async def test_a_token_signed_before_a_rotation_verifies_after_it_and_the_jwks_lists_both_keys(
    redis_url: str, sender: Any
) -> None:
    clock = SettableClock(float(int(time.time())))
    async with running_service(make_settings(redis_url, secret_keys=(OLD,)), clock, sender) as before:
        _, old_token = await approved(before)
        (old_jwk,) = (await served_jwks(before))["keys"]
        key = before.key
    # A new key prepended (the documented OTP_SECRET_KEY rotation): it signs, the old one still verifies.
    async with running_service(make_settings(redis_url, secret_keys=(NEW, OLD)), clock, sender) as after:
        document = await served_jwks(after)
        assert [jwk["kid"] for jwk in document["keys"]][1:] == [old_jwk["kid"]]
        new_kid = document["keys"][0]["kid"]
        assert new_kid != old_jwk["kid"]
        assert (await verified(after, old_token, key))["valid"] is True
        keys = jwt.PyJWKSet.from_dict(document)
        claims = jwt.decode(old_token, keys[old_jwk["kid"]], algorithms=["EdDSA"], audience=key_id(key), issuer="otp")
        assert claims["aud"] == key_id(key)
        _, new_token = await approved(after, "+15017122662")
        assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    # The old key dropped: its tokens are no longer ours.
    async with running_service(make_settings(redis_url, secret_keys=(NEW,)), clock, sender) as dropped:
        assert [jwk["kid"] for jwk in (await served_jwks(dropped))["keys"]] == [new_kid]
        assert await verified(dropped, old_token, key) == {"valid": False, "reason": "token_invalid"}


# -- forgeries, other tenants, replays --------------------------------------------------------------


def unsigned_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token by hand: PyJWT refuses to use a public key as an HMAC secret, an attacker doesn't."""
    signing_input = ".".join(b64(json.dumps(part).encode()) for part in ({**header, "alg": "HS256"}, claims))
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def forgeries(token: str, jwk: dict[str, str]) -> dict[str, str]:
    header, claims = unsigned_parts(token)
    stranger = Ed25519PrivateKey.generate()
    stranger_x = b64(stranger.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    public_raw = base64.urlsafe_b64decode(jwk["x"] + "=")
    head, body, signature = token.split(".")
    altered = {**claims, "vid": "VE" + "0" * 32}
    return {
        # Signed by another Ed25519 key that claims our kid, or names its own.
        "another key, our kid": jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": jwk["kid"]}),
        "another key, its kid": jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": stranger_x[:43]}),
        # No signature at all.
        "alg none": ".".join(b64(json.dumps(p).encode()) for p in ({"alg": "none", "kid": jwk["kid"]}, claims)) + ".",
        # The classic alg confusion: HMAC keyed with the public key, in each form a verifier might hold it.
        "HS256, raw public key": hs256(header, claims, public_raw),
        "HS256, public key x": hs256(header, claims, jwk["x"].encode()),
        "HS256, public key JWK": hs256(header, claims, json.dumps(jwk).encode()),
        # Our signature over other claims.
        "claims changed": f"{head}.{b64(json.dumps(altered).encode())}.{signature}",
        "signature cut": f"{head}.{body}.",
    }


async def test_forged_tokens_are_refused_by_tokens_verify(service: Service) -> None:
    _, token = await approved(service)
    (jwk,) = (await served_jwks(service))["keys"]
    for name, forged in forgeries(token, jwk).items():
        for key in (service.key, service.admin_key):
            answer = await verified(service, forged, key, consume=True)
            assert answer == {"valid": False, "reason": "token_invalid"}, name
    # None of them burnt the real token.
    assert (await verified(service, token, consume=True))["valid"] is True


async def test_a_token_of_key_a_presented_by_key_b_is_refused(service: Service) -> None:
    _, other = await apikeys.create(service.app.state.store, "tenant-b")
    _, token = await approved(service)
    assert await verified(service, token, other) == {"valid": False, "reason": "token_invalid"}
    # Offline the same: B's backend pins its own key id as the audience.
    keys = jwt.PyJWKSet.from_dict(await served_jwks(service))
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            token,
            keys[jwt.get_unverified_header(token)["kid"]],
            algorithms=["EdDSA"],
            audience=key_id(other),
            issuer="otp",
            options={"verify_exp": False, "verify_iat": False},
        )


async def test_a_redeemed_token_is_refused_on_replay(service: Service) -> None:
    _, token = await approved(service)
    assert (await verified(service, token, consume=True))["valid"] is True
    assert await verified(service, token, consume=True) == {"valid": False, "reason": "token_used"}
    assert await verified(service, token) == {"valid": False, "reason": "token_used"}


async def test_a_token_in_the_format_before_jwts_is_refused(service: Service) -> None:
    # What otp issued before the upgrade (itsdangerous, signed with OTP_SECRET_KEY): such a token
    # outstanding at the upgrade answers token_invalid; it would have expired by OTP_TOKEN_MAX_AGE.
    vid, _ = await approved(service)
    payload = {"vid": vid, "nh": "abcd", "at": int(service.clock.now())}
    legacy = URLSafeTimedSerializer([SECRET], salt="otp.approval-token").dumps(payload)
    assert await verified(service, str(legacy)) == {"valid": False, "reason": "token_invalid"}


# -- over HTTP: PyJWKClient and Node's jose fetch the JWKS themselves ------------------------------


def live_token(base: str, v1_key: str, to: str, code_of: Any) -> str:
    auth = {"Authorization": f"Bearer {v1_key}"}
    started = httpx.post(f"{base}/v1/verifications", json={"to": to}, headers=auth, timeout=10)
    assert started.status_code == 201, started.text
    checked = httpx.post(
        f"{base}/v1/verifications/check",
        json={"id": started.json()["id"], "code": code_of(to)},
        headers=auth,
        timeout=10,
    )
    assert checked.json()["approved"] is True, checked.text
    token: str = checked.json()["token"]
    return token


def test_a_served_token_verifies_with_pyjwt_fetching_the_jwks_url(redis_url: str) -> None:
    with serve(redis_url) as live:
        token = live_token(live.base, live.v1_key, new_number(), live.code)
        client = jwt.PyJWKClient(f"{live.base}/.well-known/jwks.json")
        claims = jwt.decode(
            token,
            client.get_signing_key_from_jwt(token),
            algorithms=["EdDSA"],
            audience=key_id(live.v1_key),
            issuer=live.base,  # OTP_PUBLIC_URL
        )
        assert claims["vid"].startswith("VE") and claims["aud"] == key_id(live.v1_key)


@pytest.fixture(scope="module")
def jose(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/node_jose installed (``npm ci``: exactly the committed lock) in a temporary copy."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed to verify a token with jose (scripts/bootstrap test installs them)")
    folder = tmp_path_factory.mktemp("jose") / "node_jose"
    shutil.copytree(JOSE, folder, ignore=shutil.ignore_patterns("node_modules"))
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"npm ci of tests/node_jose failed (is the npm registry reachable?):\n{result}"
    return folder


def jose_verify(folder: Path, url: str, issuer: str, audience: str, token: str) -> dict[str, Any]:
    result = subprocess.run(
        ["node", "verify.mjs", url, issuer, audience, token], cwd=folder, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_a_served_token_verifies_with_node_jose_against_the_served_jwks(redis_url: str, jose: Path) -> None:
    with serve(redis_url) as live:
        to = new_number()
        token = live_token(live.base, live.v1_key, to, live.code)
        url, audience = f"{live.base}/.well-known/jwks.json", key_id(live.v1_key)
        answer = jose_verify(jose, url, live.base, audience, token)
        assert answer["valid"] is True, answer
        assert answer["header"]["alg"] == "EdDSA" and answer["header"]["kid"] in answer["kids"]
        assert answer["payload"]["aud"] == audience and answer["payload"]["vid"].startswith("VE")
        assert to.lstrip("+") not in json.dumps(answer["payload"])
        # jose's own RFC 7638 thumbprint of each served key is its kid.
        assert answer["thumbprints"] == answer["kids"]
        # jose refuses what otp refuses: another tenant's audience, and a key that isn't otp's.
        assert jose_verify(jose, url, live.base, "someone-else", token)["code"] == "ERR_JWT_CLAIM_VALIDATION_FAILED"
        _, claims = unsigned_parts(token)
        forged = jwt.encode(
            claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers=jwt.get_unverified_header(token)
        )
        assert jose_verify(jose, url, live.base, audience, forged)["valid"] is False
