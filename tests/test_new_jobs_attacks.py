"""Attacks on a queued SMS as issue 18 keeps it: its sealed code a field of the verification's
record (jc/jn/jp), the job in its partition's list (outq) until its first claim, and the worker's
lease renewal skipped right after a claim. (A claim that fails midway: test_record_forms.py.)"""

from __future__ import annotations

import pytest
from conftest import Service, default_worker_options, hash_fields
from test_lifecycle import worker_for
from test_v18_attacks import in_partition

from otp.core import apikeys
from otp.edge.worker import freshly_claimed
from otp.storage import keys as keyspace
from otp.storage.store import Store

TO = "+15017122661"
PARTITIONS = 16


def record_key(vid: str) -> str:
    return keyspace.verification(keyspace.partition_of_id(vid, PARTITIONS), vid)


def job_fields(record: dict[bytes, bytes]) -> set[bytes]:
    return {f for f in record if f.split(b":")[0] in (b"jc", b"jn", b"jp")}


async def queued_anywhere(service: Service, job_id: str) -> bool:
    partition = keyspace.partition_of_id(job_id.split(":")[0], PARTITIONS)
    in_list = await service.redis.lpos(keyspace.new_jobs(partition), job_id) is not None
    in_outbox = await service.redis.zscore(keyspace.outbox(partition), job_id) is not None
    return in_list or in_outbox


@pytest.mark.parametrize("ending", ["cancel", "lock", "expiry"])
async def test_a_verification_ended_while_its_job_waits_in_the_list_drops_the_sealed_code_and_sends_nothing(
    service: Service, ending: str
) -> None:
    vid = (await service.start(TO)).json()["id"]
    if ending == "cancel":
        assert (await service.http.post(f"/v1/verifications/{vid}/cancel", headers=service.auth())).status_code == 200
    elif ending == "lock":
        for _ in range(5):
            await service.check("000000", id=vid)
        assert (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json()["status"] != (
            "pending"
        )
    else:
        service.clock.advance(601)
        await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())  # the read that settles it
    assert not job_fields(await hash_fields(service.redis, record_key(vid)))
    await service.deliver()
    assert service.sender.messages == []
    assert not await queued_anywhere(service, f"{vid}:1")
    assert not await service.redis.exists(keyspace.job(keyspace.partition_of_id(vid, PARTITIONS), f"{vid}:1"))


async def test_an_approval_while_a_resend_waits_in_the_list_drops_its_sealed_code_and_sends_nothing(
    no_cooldown: Service,
) -> None:
    service = no_cooldown
    vid = (await service.start(TO)).json()["id"]
    code = await service.last_code()
    assert (await service.start(TO)).json()["id"] == vid  # resend 2 waits in the list
    assert b"jc:2" in await hash_fields(service.redis, record_key(vid))
    assert (await service.check(code, id=vid)).json()["status"] == "approved"
    assert not job_fields(await hash_fields(service.redis, record_key(vid)))
    await service.deliver()
    assert len(service.sender.messages) == 1
    assert not await queued_anywhere(service, f"{vid}:2")


async def test_superseded_resends_are_dropped_at_claim_with_their_sealed_codes(no_cooldown: Service) -> None:
    service = no_cooldown
    for _ in range(5):
        vid = (await service.start(TO)).json()["id"]
    await service.deliver()
    assert len(service.sender.messages) == 3
    assert not job_fields(await hash_fields(service.redis, record_key(vid)))
    assert not [n for n in range(1, 6) if await queued_anywhere(service, f"{vid}:{n}")]


async def test_a_worker_killed_after_its_claim_leaves_the_job_to_the_next_one_exactly_once(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    dead = worker_for(service)
    [job], _ = await dead.claim()  # LPOP'd and ZADDed in one script; the worker dies here
    assert not await service.redis.lpos(keyspace.new_jobs(job.partition), job.job_id)
    assert await service.redis.zscore(keyspace.outbox(job.partition), job.job_id) == job.lease_deadline_ms
    await service.deliver()
    assert service.sender.messages == []  # still under the dead worker's lease
    service.clock.advance(default_worker_options().lease + 1)
    await service.deliver()
    await service.deliver()
    assert [m.to for m in service.sender.messages] == [TO]
    assert not job_fields(await hash_fields(service.redis, record_key(vid)))


async def test_one_claim_pops_at_most_a_batch_from_the_list(no_cooldown: Service) -> None:
    service = no_cooldown
    batch = default_worker_options().batch
    numbers = [in_partition(5, n) for n in range(batch + 7)]
    for to in numbers:
        assert (await service.start(to)).status_code == 201
    store = service.app.state.store
    jobs = await store.claim_jobs(
        partition=5, now_ms=service.clock.now_ms(), lease_ms=30_000, limit=batch, retention_ms=86_400_000
    )
    assert len(jobs) == batch
    assert await service.redis.llen(keyspace.new_jobs(5)) == 7
    assert await store.outbox_depth() == batch + 7


async def test_a_code_that_expires_between_the_claim_and_a_fresh_send_is_not_sent(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    service.clock.advance(600 - 0.3)
    worker = worker_for(service)
    [job], _ = await worker.claim()
    service.clock.advance(0.5)  # still "fresh" (no renewal), but the code is dead
    assert freshly_claimed(job, now_ms=service.clock.now_ms(), lease_ms=30_000)
    await worker.process(job)
    assert service.sender.messages == []
    assert not job_fields(await hash_fields(service.redis, record_key(vid)))


async def test_another_tenant_cannot_cancel_a_queued_job(service: Service) -> None:
    _, other_key = await apikeys.create(Store(service.redis, partitions=PARTITIONS), "other-tenant")
    vid = (await service.start(TO)).json()["id"]
    refused = await service.http.post(f"/v1/verifications/{vid}/cancel", headers=service.auth(other_key))
    assert refused.status_code == 404
    assert b"jc:1" in await hash_fields(service.redis, record_key(vid))
    await service.deliver()
    assert [m.to for m in service.sender.messages] == [TO]


async def test_an_old_form_job_of_a_verification_approved_before_its_first_claim_leaves_no_sealed_code(
    service: Service,
) -> None:
    """The migration at first claim copies an old job's code onto the record: for a finished
    verification it must drop it again at once, not leave a sealed code on the retained record."""
    vid = (await service.start(TO)).json()["id"]
    partition = keyspace.partition_of_id(vid, PARTITIONS)
    record = await hash_fields(service.redis, record_key(vid))
    job_key = keyspace.job(partition, f"{vid}:1")
    # The earlier form: the job in the outbox (a due member), its sealed code and tries in the job hash.
    await service.redis.lrem(keyspace.new_jobs(partition), 0, f"{vid}:1")
    await service.redis.zadd(keyspace.outbox(partition), {f"{vid}:1": int(record[b"c"])})
    await service.redis.hdel(record_key(vid), "jc:1")
    await service.redis.hset(job_key, mapping={"code": record[b"jc:1"], "tries": 0})
    assert (await service.http.post(f"/v1/verifications/{vid}/cancel", headers=service.auth())).status_code == 200
    await service.deliver()
    assert service.sender.messages == []
    assert not job_fields(await hash_fields(service.redis, record_key(vid)))
    assert not await service.redis.exists(job_key)
    assert not await queued_anywhere(service, f"{vid}:1")
