"""What a pending verification keeps in Redis (issue 18: bytes per pending verification), and that
records and SMS jobs written by the previous version, still pending at an upgrade, send and
verify as before."""

from __future__ import annotations

import pytest
from conftest import Service, default_worker_options, hash_fields
from test_v18_attacks import in_partition

from otp.storage import keys as keyspace

TO = "+15017122661"


def _keys(vid: str) -> tuple[str, str]:
    partition = keyspace.partition_of_id(vid, 16)
    return keyspace.verification(partition, vid), keyspace.job(partition, f"{vid}:1")


async def test_a_pending_sms_job_is_the_sealed_code_on_the_record_and_goes_with_the_send(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    record_key, job_key = _keys(vid)
    record = await hash_fields(service.redis, record_key)
    # The id is the key's, the channel the default: neither is stored. A send that makes no choices
    # of its own has no job hash: its sealed code is a field of the record.
    assert not {b"id", b"ch"} & set(record)
    assert not await service.redis.exists(job_key)
    assert TO.encode() not in record[b"jc:1"] and b"jc:1" in record
    await service.deliver()
    assert [m.to for m in service.sender.messages] == [TO]
    assert not {b"jc:1", b"jn:1", b"jp:1"} & set(await hash_fields(service.redis, record_key))
    fetched = (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json()
    assert (fetched["id"], fetched["channel"]) == (vid, "sms")


async def test_a_queued_sms_waits_in_the_new_jobs_list_and_once_claimed_only_under_its_lease(
    service: Service,
) -> None:
    vid = (await service.start(TO)).json()["id"]
    partition = keyspace.partition_of_id(vid, 16)
    new_jobs, outbox = keyspace.new_jobs(partition), keyspace.outbox(partition)
    assert await service.redis.lrange(new_jobs, 0, -1) == [f"{vid}:1".encode()]
    assert await service.redis.zcard(outbox) == 0
    await service.deliver()
    assert [m.to for m in service.sender.messages] == [TO]
    assert await service.redis.llen(new_jobs) == 0 and await service.redis.zcard(outbox) == 0


async def test_a_broken_record_among_new_jobs_loses_none_of_the_sms_popped_behind_it(no_cooldown: Service) -> None:
    """A claim that fails midway keeps what it wrote: the new jobs it took off the list must be in
    the outbox by then, due, or they would be in no queue and never sent."""
    service = no_cooldown
    broken, *others = [in_partition(3, n) for n in range(4)]
    broken_vid = (await service.start(broken)).json()["id"]
    for to in others:
        assert (await service.start(to)).status_code == 201
    record_key, _ = _keys(broken_vid)
    await service.redis.hset(record_key, "x", "not a time")
    await service.deliver()  # the partition's claim fails (logged); the others' go on
    assert service.sender.messages == []
    await service.redis.delete(record_key)  # the operator removes the broken record
    service.clock.advance(default_worker_options().lease + 1)
    await service.deliver()
    assert sorted(m.to for m in service.sender.messages) == sorted(others)


async def test_a_cancel_before_the_send_drops_the_sealed_code_and_the_sms(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    record_key, _ = _keys(vid)
    canceled = await service.http.post(f"/v1/verifications/{vid}/cancel", headers=service.auth())
    assert canceled.status_code == 200, canceled.text
    assert b"jc:1" not in await hash_fields(service.redis, record_key)
    await service.deliver()
    assert service.sender.messages == []


async def test_a_resend_in_another_locale_keeps_that_locale_on_its_own_job(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    await service.deliver()
    await service.start(TO, locale="fr")
    partition = keyspace.partition_of_id(vid, 16)
    job = await hash_fields(service.redis, keyspace.job(partition, f"{vid}:2"))
    assert job[b"loc"] == b"fr"
    await service.deliver()
    first, resent = service.sender.messages
    assert "est votre code" in resent.body and "est votre code" not in first.body


@pytest.mark.parametrize("version", ["record with its id", "job with its code"])
async def test_a_verification_and_job_of_an_earlier_version_still_send_and_verify(
    service: Service, version: str
) -> None:
    vid = (await service.start(TO)).json()["id"]
    record_key, job_key = _keys(vid)
    record = await hash_fields(service.redis, record_key)
    # The earlier forms queued the job in the outbox and kept its sealed code in the job hash, not
    # on the record. The oldest: the
    # record held its id, channel and locale; the job the verification, the send, the number, the
    # locale, the expiry, the tries and the app name.
    partition = keyspace.partition_of_id(vid, 16)
    await service.redis.lrem(keyspace.new_jobs(partition), 0, f"{vid}:1")
    await service.redis.zadd(keyspace.outbox(partition), {f"{vid}:1": int(record[b"c"])})
    await service.redis.hdel(record_key, "jc:1")
    await service.redis.hset(job_key, mapping={"code": record[b"jc:1"], "tries": 0})
    if version == "record with its id":
        await service.redis.hset(record_key, mapping={"id": vid, "ch": "sms", "loc": ""})
        await service.redis.hset(
            job_key, mapping={"vid": vid, "n": 1, "to": TO, "loc": "", "x": record[b"x"], "app": ""}
        )
    code = await service.last_code()
    assert [m.to for m in service.sender.messages] == [TO]
    assert not await service.redis.exists(job_key)
    checked = await service.check(code, id=vid)
    assert checked.status_code == 200 and checked.json()["status"] == "approved"
    assert checked.json()["id"] == vid
