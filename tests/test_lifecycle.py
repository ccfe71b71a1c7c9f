"""The verification lifecycle through the /v1 API, on real Redis, with injected time."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable
from dataclasses import replace

from conftest import RecordingSender, Service, default_worker_options, hash_fields

from otp.edge.worker import Worker
from otp.storage import keys

TO = "+15017122661"


async def test_start_answers_pending_with_a_masked_number_and_a_queued_send(service: Service) -> None:
    response = await service.start(TO, channel="sms", locale="en", ip="203.0.113.7")
    assert response.status_code == 201
    body = response.json()
    assert re.fullmatch(r"VE[0-9a-f]{32}", body["id"])
    assert body["status"] == "pending"
    assert body["to"] == "+1*******2661"
    assert body["channel"] == "sms"
    assert body["expires_at"].endswith("Z")
    assert len(body["send_attempts"]) == 1
    assert body["send_attempts"][0]["delivery"]["status"] == "queued"
    assert body["send_attempts"][0]["channel"] == "sms"


async def test_national_format_is_accepted_in_the_default_region(service: Service) -> None:
    response = await service.start("(501) 712-2661")
    assert response.status_code == 201
    assert response.json()["to"] == "+1*******2661"


async def test_right_code_approves_instantly_with_a_token(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    response = await service.check(code, id=vid)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "approved"
    assert body["approved"] is True
    assert body["token"]
    assert (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json()["status"] == "approved"


async def test_right_code_by_number_approves(service: Service) -> None:
    await service.start(TO)
    code = await service.last_code()
    assert (await service.check(code, to=TO)).json()["approved"] is True


async def test_right_code_in_the_last_second_approves(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    service.clock.advance(600 - 0.001)
    assert (await service.check(code, id=vid)).json()["status"] == "approved"


async def test_right_code_one_second_late_never_approves(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    service.clock.advance(601)
    body = (await service.check(code, id=vid)).json()
    assert body["status"] == "expired"
    assert body["approved"] is False
    assert "token" not in body


async def test_an_approved_code_never_approves_again(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    first = (await service.check(code, id=vid)).json()
    assert first["approved"] is True
    # The same right code by the same key shortly after: the same approval and token again (a
    # client that lost the answer recovers), never a second approval.
    retried = await service.check(code, id=vid)
    assert retried.status_code == 200
    assert retried.json()["token"] == first["token"]
    wrong = await service.check("000000" if code != "000000" else "111111", id=vid)
    # A 409, not a 200 saying "approved": a client reading the status alone would let anything in.
    assert wrong.status_code == 409
    assert wrong.json()["error"]["code"] == "already_approved"
    assert "token" not in wrong.json()
    service.clock.advance(61)
    again = await service.check(code, id=vid)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_approved"
    assert "token" not in again.json()


async def test_another_verifications_code_does_not_approve(service: Service) -> None:
    first = (await service.start(TO)).json()["id"]
    first_code = await service.last_code()
    second = (await service.start("+14155552671")).json()["id"]
    second_code = await service.last_code("+14155552671")
    if first_code == second_code:  # one chance in a million; the point is the hash, not the digits
        return
    assert (await service.check(second_code, id=first)).json()["approved"] is False
    assert (await service.check(first_code, id=second)).json()["approved"] is False


async def test_wrong_code_counts_an_attempt(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    wrong = "000000" if code != "000000" else "111111"
    body = (await service.check(wrong, id=vid)).json()
    assert body == {**body, "status": "pending", "approved": False, "attempts_left": 4}
    fetched = (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json()
    assert fetched["attempts"] == 1


async def test_five_wrong_codes_lock_the_verification_even_for_the_right_code(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    wrong = "000000" if code != "000000" else "111111"
    statuses = [(await service.check(wrong, id=vid)).json() for _ in range(5)]
    assert [s["attempts_left"] for s in statuses] == [4, 3, 2, 1, 0]
    assert statuses[-1]["status"] == "max_attempts_reached"
    after = (await service.check(code, id=vid)).json()
    assert after["status"] == "max_attempts_reached"
    assert after["approved"] is False


async def test_resend_keeps_the_same_verification_and_the_last_three_codes_valid(no_cooldown: Service) -> None:

    vid = (await no_cooldown.start(TO)).json()["id"]
    codes = [await no_cooldown.last_code()]
    for _ in range(3):
        resent = await no_cooldown.start(TO)
        assert resent.status_code == 201
        assert resent.json()["id"] == vid
        codes.append(await no_cooldown.last_code())
    assert (
        len(
            (await no_cooldown.http.get(f"/v1/verifications/{vid}", headers=no_cooldown.auth())).json()["send_attempts"]
        )
        == 4
    )
    oldest = codes[0]
    if oldest not in codes[1:]:
        assert (await no_cooldown.check(oldest, id=vid)).json()["approved"] is False
    assert (await no_cooldown.check(codes[1], id=vid)).json()["approved"] is True


async def test_sixth_send_on_one_verification_is_refused(no_cooldown: Service) -> None:

    for _ in range(5):
        assert (await no_cooldown.start(TO)).status_code == 201
    refused = await no_cooldown.start(TO)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "max_sends_reached"
    assert int(refused.headers["Retry-After"]) > 0


async def test_cancel_makes_the_code_useless(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    canceled = await service.http.post(f"/v1/verifications/{vid}/cancel", headers=service.auth())
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    body = (await service.check(code, id=vid)).json()
    assert body["status"] == "canceled"
    assert body["approved"] is False
    again = await service.http.post(f"/v1/verifications/{vid}/cancel", headers=service.auth())
    assert again.status_code == 409


async def test_a_new_start_after_approval_is_a_new_verification(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    await service.check(await service.last_code(), id=vid)
    service.clock.advance(31)  # past the resend cooldown of the number
    assert (await service.start(TO)).json()["id"] != vid


async def test_completed_verification_stays_readable_until_retention_then_404(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    service.clock.advance(601)
    fetched = await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())
    assert fetched.status_code == 200
    assert fetched.json()["status"] == "expired"
    # Retention is enforced by Redis TTLs on real time; shorten the key's life to see it go.
    keys = [k async for k in service.redis.scan_iter(f"*v:{vid}")]
    await service.redis.pexpire(keys[0], 1)
    await service.redis.delete(keys[0])
    assert (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).status_code == 404


async def record_of(service: Service, vid: str) -> dict[bytes, bytes]:
    [key] = [k async for k in service.redis.scan_iter(f"*v:{vid}")]
    return dict(await hash_fields(service.redis, key))


async def test_completed_verification_holds_no_code_material(no_cooldown: Service) -> None:
    service = no_cooldown
    approved = (await service.start(TO)).json()["id"]
    await service.start(TO)  # two codes, both hashed on the record
    assert {b"h:1", b"h:2"} <= set(await record_of(service, approved))
    await service.check(await service.last_code(), id=approved)
    canceled = (await service.start("+14155552671")).json()["id"]
    await service.http.post(f"/v1/verifications/{canceled}/cancel", headers=service.auth())
    expired = (await service.start("+14155550123")).json()["id"]
    service.clock.advance(601)
    await service.http.get(f"/v1/verifications/{expired}", headers=service.auth())
    for vid in (approved, canceled, expired):
        assert not [f for f in await record_of(service, vid) if f.startswith(b"h:")], vid


async def test_unknown_id_is_404(service: Service) -> None:
    response = await service.http.get("/v1/verifications/VE" + "0" * 32, headers=service.auth())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_check_for_a_number_without_verification_is_404(service: Service) -> None:
    response = await service.check("123456", to=TO)
    assert response.status_code == 404


async def test_another_key_cannot_see_or_check_a_verification(service: Service) -> None:
    from otp.core import apikeys

    _, other = await apikeys.create(service.app.state.store, "other-tenant")
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    assert (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth(other))).status_code == 404
    assert (await service.check(code, key=other, id=vid)).status_code == 404
    assert (await service.check(code, key=other, to=TO)).status_code == 404
    assert (await service.check(code, id=vid)).json()["approved"] is True


async def test_admin_key_reads_any_verification(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    response = await service.http.get(f"/v1/verifications/{vid}", headers=service.auth(service.admin_key))
    assert response.status_code == 200


async def test_token_from_approval_verifies(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    token = (await service.check(await service.last_code(), id=vid)).json()["token"]
    ok = await service.http.post("/v1/tokens/verify", json={"token": token}, headers=service.auth())
    assert ok.json()["valid"] is True
    assert ok.json()["verification_id"] == vid
    bad = await service.http.post("/v1/tokens/verify", json={"token": token + "x"}, headers=service.auth())
    assert bad.json() == {"valid": False, "reason": "token_invalid"}


async def test_sends_whose_codes_were_pushed_out_by_newer_resends_are_not_sent(no_cooldown: Service) -> None:
    service = no_cooldown
    for _ in range(5):
        vid = (await service.start(TO)).json()["id"]
    await service.deliver()
    assert len(service.sender.messages) == 3  # only the three codes that still work go out
    attempts = (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json()["send_attempts"]
    assert [a["delivery"]["status"] for a in attempts[:2]] == ["canceled", "canceled"]


async def test_a_start_for_a_number_whose_verification_ran_out_of_attempts_makes_a_new_one(
    service: Service,
) -> None:
    vid = (await service.start(TO)).json()["id"]
    # The moment between the last attempt being counted and the lock being written.
    [key] = [k async for k in service.redis.scan_iter(f"*v:{vid}")]
    await service.redis.hset(key, "a", 5)
    service.clock.advance(31)
    assert (await service.start(TO)).json()["id"] != vid


async def test_a_partition_whose_claim_fails_does_not_hold_back_the_other_partitions_sms(
    service: Service, sender: RecordingSender
) -> None:
    """The worker claims every partition in one pipelined round trip; an error in one partition's
    reply (here a key of the wrong type where its outbox should be) is logged, and the SMS of the
    others still go out."""
    to = "+15017122662"
    broken = (keys.partition_of_number(to, 16) + 1) % 16
    await service.redis.set(keys.outbox(broken), "not a sorted set")
    assert (await service.start(to)).status_code == 201
    assert await service.deliver() == 1
    assert [m.to for m in sender.messages] == [to]


def worker_for(service: Service) -> Worker:
    state = service.app.state
    return Worker(state.store, state.verifier.keyring, service.sender, default_worker_options(), clock=service.clock)


async def test_a_worker_whose_lease_ran_out_before_the_send_leaves_the_sms_to_the_one_that_took_it_over(
    service: Service,
) -> None:
    assert (await service.start(TO)).status_code == 201
    slow, other = worker_for(service), worker_for(service)
    [job], _ = await slow.claim()
    service.clock.advance(default_worker_options().lease + 1)
    [taken], _ = await other.claim()
    assert taken.job_id == job.job_id
    await slow.process(job)
    assert service.sender.messages == []
    await other.process(taken)
    assert [m.to for m in service.sender.messages] == [TO]


async def script_calls_of(service: Service, work: Awaitable[object]) -> int:
    await service.redis.config_set("slowlog-log-slower-than", 0)
    await service.redis.slowlog_reset()
    await work
    calls = [e for e in await service.redis.slowlog_get(128) if e["command"].startswith(b"EVALSHA")]
    await service.redis.config_set("slowlog-log-slower-than", 10_000)
    return len(calls)


async def test_a_job_sent_right_after_its_claim_skips_the_lease_renewal_one_that_waited_is_renewed(
    service: Service,
) -> None:
    """A renewal gives a lease that has barely begun nothing: the send right after the claim costs
    one script call fewer. A job that waited for a send slot (past a tenth of its lease, at most a
    second) is renewed first, so a lease that ran out meanwhile is seen (the test above)."""
    first, second = "+15017122663", "+15017122664"
    for to in (first, second):
        assert (await service.start(to)).status_code == 201
    worker = worker_for(service)
    jobs, _ = await worker.claim()
    fresh, waited = sorted(jobs, key=lambda j: j.to)
    service.clock.advance(0.5)
    right_after = await script_calls_of(service, worker.process(fresh))
    service.clock.advance(1.0)
    after_a_wait = await script_calls_of(service, worker.process(waited))
    assert after_a_wait == right_after + 1
    assert sorted(m.to for m in service.sender.messages) == [first, second]


def same_partition_numbers(count: int, partitions: int) -> list[str]:
    """``count`` valid numbers of one partition, and one of another partition last."""
    candidates = [f"+1501712{n:04d}" for n in range(2660, 2760)]
    by_partition: dict[int, list[str]] = {}
    for number in candidates:
        by_partition.setdefault(keys.partition_of_number(number, partitions), []).append(number)
    crowded = next(found for found in by_partition.values() if len(found) >= count)
    other = next(n for n in candidates if n not in crowded)
    return [*crowded[:count], other]


async def test_a_partition_with_more_than_a_batch_due_is_claimed_again_at_once_an_emptied_one_is_not(
    service: Service,
) -> None:
    """A claim takes at most a batch: a partition that filled one is claimed again the next round,
    so a backlog drains without waiting for a sweep; one that took less has nothing due, and the
    worker leaves it to the next announcement or sweep (no round trip for nothing)."""
    options = replace(default_worker_options(), batch=2, sweep_interval=60.0)
    state = service.app.state
    worker = Worker(state.store, state.verifier.keyring, service.sender, options, clock=service.clock)
    *crowded, other = same_partition_numbers(3, state.store.partitions)
    for to in (*crowded, other):
        assert (await service.start(to)).status_code == 201
    swept, _ = await worker.claim()  # the first round sweeps every partition
    assert sorted(j.to for j in swept) == sorted([*crowded[:2], other])
    worker._listening = True  # the wake-up channel is heard (test_worker_wakeups runs it for real)
    again, _ = await worker.claim()
    assert [j.to for j in again] == [crowded[2]]
    assert await script_calls_of(service, worker.claim()) == 0


async def _cancel(service: Service, vid: str) -> None:
    response = await service.http.post(f"/v1/verifications/{vid}/cancel", headers=service.auth())
    assert response.status_code == 200, response.text


async def test_a_due_job_behind_a_dropped_one_is_claimed_the_next_round(no_cooldown: Service) -> None:
    """A batch short of a whole one because claim.lua dropped a canceled job: the job behind it
    in the same partition is due now, announced, yet the next round claims nothing."""
    service = no_cooldown
    options = replace(default_worker_options(), batch=2, sweep_interval=60.0)
    state = service.app.state
    worker = Worker(state.store, state.verifier.keyring, service.sender, options, clock=service.clock)
    worker._listening = True  # the wake-up channel is heard
    worker._swept_at = time.monotonic()  # just swept
    a, b, c, _ = same_partition_numbers(3, state.store.partitions)
    dropped = (await service.start(a)).json()["id"]
    await service.start(b)
    await service.start(c)
    await _cancel(service, dropped)
    worker._woken = {keys.partition_of_number(a, state.store.partitions)}  # the starts' announcements
    first, _ = await worker.claim()
    assert [j.to for j in first] == [b]  # a dropped, b claimed: 1 row of a batch of 2
    second, _ = await worker.claim()
    assert [j.to for j in second] == [c], "c is due, yet left until the next sweep (60 s here)"


async def test_one_canceled_start_per_batch_delays_a_partitions_backlog_by_a_sweep_per_batch(
    no_cooldown: Service,
) -> None:
    """A hostile tenant cancels one of its starts per batch: every claim of the partition is then
    short of a batch and the rest of the backlog (other tenants' codes too) waits for sweeps."""
    service = no_cooldown
    options = replace(default_worker_options(), batch=2, sweep_interval=60.0)
    state = service.app.state
    worker = Worker(state.store, state.verifier.keyring, service.sender, options, clock=service.clock)
    worker._listening = True
    worker._swept_at = time.monotonic()
    *numbers, _ = same_partition_numbers(6, state.store.partitions)
    partition = keys.partition_of_number(numbers[0], state.store.partitions)
    for i, to in enumerate(numbers):
        vid = (await service.start(to)).json()["id"]
        if i % 2 == 0:
            await _cancel(service, vid)  # jobs: X V X V X V
    worker._woken = {partition}
    claimed: list[str] = []
    for _ in range(6):  # six rounds between two sweeps
        jobs, _ = await worker.claim()
        claimed += [j.to for j in jobs]
    assert claimed == numbers[1::2], f"only {claimed} of {numbers[1::2]} claimed before the next sweep"
