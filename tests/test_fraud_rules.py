"""Pumping rules of the fraud engine (issue 12) that don't need a replay: what counts as a
conversion, and numbers of no country."""

from __future__ import annotations

from conftest import Clock, RecordingSender, Service, hash_fields, make_settings, policy, running_service

from otp.core.phone import parse_e164
from otp.core.verification import Caller, StartOptions
from otp.storage import keys as keyspace

NON_GEOGRAPHIC = ("+870301234567", "+881612345678", "+883510012345")


async def _approvals(service: Service, kind: str, value: str) -> int:
    window = await hash_fields(service.redis, keyspace.scope_window(kind, value))
    return sum(int(count) for name, count in window.items() if name.startswith(b"vh:"))


async def test_numbers_of_no_country_are_refused_by_default_like_premium_rate(service: Service) -> None:
    for number in NON_GEOGRAPHIC:
        refused = await service.start(number)
        assert refused.status_code == 403, number
        assert refused.json()["error"]["code"] == "number_type_not_allowed"
        assert refused.json()["error"]["field"] == "to"


async def test_allowed_numbers_of_no_country_count_in_a_scope_of_their_own(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    settings = make_settings(redis_url, policy=policy(blocked_number_types=frozenset({"premium_rate"})))
    async with running_service(settings, clock, sender) as service:
        answers = [(await service.start(f"+88161234{n:04d}")).status_code for n in range(60)]
        # The +881 scope stops them like a country's, where before nothing did.
        assert answers.count(201) < 60
        assert await service.redis.exists(keyspace.scope_window("cc", "+881"))


async def test_a_custom_code_approval_is_not_a_conversion(service: Service) -> None:
    admin = service.auth(service.admin_key)
    started = await service.http.post("/v1/verifications", json={"to": "+15017122661"}, headers=admin)
    assert started.status_code == 201
    vid = started.json()["id"]
    code = await service.last_code()
    # /v1 has no CustomCode: drive the Verifier as /v2 does.
    verifier = service.app.state.verifier
    custom = await verifier.start(parse_e164("+14155552671"), Caller("svc"), StartOptions(code="4242"))
    assert (await verifier.check("4242", Caller("svc"), verification_id=custom.verification.id)).approved
    assert await _approvals(service, "rng", "+14155") == 0
    assert (await service.http.post("/v1/verifications/check", json={"id": vid, "code": code}, headers=admin)).json()[
        "approved"
    ]
    assert await _approvals(service, "rng", "+15017") == 1


async def test_an_out_of_band_approval_is_not_a_conversion(service: Service) -> None:
    vid = (await service.start("+15017122661")).json()["id"]
    approved = await service.app.state.verifier.approve(vid, Caller("operator", admin=True))
    assert approved.status == "approved"
    assert await _approvals(service, "rng", "+15017") == 0
