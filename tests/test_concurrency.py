"""Limits hold under concurrency: counted in Lua before any comparison, approval by compare-and-set."""

from __future__ import annotations

import asyncio

from conftest import Service, stream_entries

TO = "+15017122661"


async def test_fifty_parallel_wrong_guesses_count_fifty_and_lock_after_five(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    wrong = "000000" if code != "000000" else "111111"
    answers = await asyncio.gather(*(service.check(wrong, id=vid) for _ in range(50)))
    bodies = [a.json() for a in answers]
    assert all(a.status_code == 200 for a in answers)
    assert not any(b["approved"] for b in bodies)
    # Exactly five guesses were compared; the other 45 were refused without a comparison.
    fetched = (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json()
    assert fetched["attempts"] == 5
    assert fetched["status"] == "max_attempts_reached"
    assert sum(1 for b in bodies if b["status"] == "max_attempts_reached") >= 45
    # The right code no longer works.
    assert (await service.check(code, id=vid)).json()["approved"] is False


async def test_twenty_parallel_right_answers_approve_exactly_once(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    responses = await asyncio.gather(*(service.check(code, id=vid) for _ in range(20)))
    answers = [r.json() for r in responses if r.status_code == 200]
    approvals = [a for a in answers if a["approved"]]
    # One approval: answers that came after it was committed repeat it (same token), never a second.
    assert len({a["token"] for a in approvals}) == 1
    assert sum(1 for a in answers if "token" in a) == len(approvals)
    events = []
    for partition in range(16):
        stream = await stream_entries(service.redis, f"otp:{{p{partition:02x}}}:audit")
        events += [f for _, f in stream if f[b"event"] == b"approved"]
    assert len(events) == 1
    # The others: refused uncompared once the five attempts were taken (200 max_attempts_reached),
    # or told it was already approved (409).
    assert {a["status"] for a in answers} <= {"approved", "max_attempts_reached"}
    assert {r.status_code for r in responses} <= {200, 409}
    fetched = (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json()
    assert fetched["status"] == "approved"


async def test_parallel_starts_for_one_number_share_one_verification_within_the_send_cap(
    no_cooldown: Service,
) -> None:
    service = no_cooldown
    answers = await asyncio.gather(*(service.start(TO) for _ in range(20)))
    created = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code == 429]
    assert len(created) == 5
    assert len(refused) == 15
    assert len({a.json()["id"] for a in created}) == 1
